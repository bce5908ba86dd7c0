"""The shipped weights: one typed entry per file in ``kxnet/weights/manifest.json``.

Like timm's pretrained configs, every shipped file is described by a :class:`WeightsEntry`
(which architecture and config, its SHA-256, how it was trained, every benchmark cell it was
measured on). The manifest is read, checked and written only here — by the loader, by
``kxnet models`` and by the shipping rule (:func:`kxnet.models.shipping.ship`), which replaces a file only when the
complete benchmark cells it shares with the shipped one improve (docs/model-zoo.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path


from ..io import atomic_write_json
from .kxnet import PAPER_TRAINING
from .registry import Architecture, architectures

__all__ = ["MANIFEST", "PAPER_TRAINING", "WeightsEntry", "cells_of_results", "default_model", "fast_backend_close",
           "grown_note", "improved_cells", "model_zoo_markdown", "photo_default_shortfalls", "read_manifest",
           "record_cells", "reduced_note", "write_manifest"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"
# PAPER_TRAINING (imported above, kept here for its callers) is what every one of the KXNet
# paper's six recipes trains with: KXNet's descriptor's ``paper_training``, which the notes read.
# Photo models are what `kxnet sr` runs by default once they are shipped (docs/photo.md);
# evaluation and the benchmark keep the paper's models.
PHOTO_MODELS = {4: "kxnet_x4.photo", 3: "kxnet_x3.photo", 2: "kxnet_x2.photo"}


@dataclass
class WeightsEntry:
    """One shipped weights file and everything measured about it.

    ``benchmarks`` maps a cell key (``Set5/setting2/x4/noise0``; degradations beyond the paper
    append their tag, ``…/noise5_jpeg75``) to the cell as :func:`cells_of_results` stores it;
    ``improved_cells`` are the cells that rose when this file replaced the one before it.
    ``notes`` holds measured facts that only some files have (the fp16 cost, grown stages).
    ``int8`` names the file's int8 recipe and what it cost on complete cells (``file``,
    ``sha256``, ``cost_db``: cell → Δ dB against the float model; docs/speed.md).
    """

    name: str
    file: str
    sha256: str
    bytes: int
    arch: str
    config: dict
    parameters: int
    storage: str
    iterations: int
    hardware: str
    training_data: str
    recipe: dict = field(default_factory=dict)
    training_hours: float | None = None
    reduced: str | None = None
    benchmarks: dict = field(default_factory=dict)
    improved_cells: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)
    int8: dict | None = None
    folder: Path = field(default=WEIGHTS_DIR, repr=False, compare=False)   # the manifest's (not stored)

    @property
    def path(self) -> Path:
        return self.folder / self.file

    def cell(self, key: str) -> dict | None:
        """A complete cell by key, or None."""
        c = self.benchmarks.get(key)
        return c if isinstance(c, dict) and c.get("full", True) else None

    def reference_cell(self) -> dict | None:
        """The one cell every model has: complete Set5, σn 0, its own setting and scale."""
        return self.cell(f"Set5/setting{self.config.get('setting')}/x{self.config.get('scale')}/noise0")

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["name"], d["folder"]
        if d["int8"] is None:      # entries without one keep the manifest's shape
            del d["int8"]
        return d

    @classmethod
    def from_dict(cls, name: str, d: dict, source: str = "manifest", folder: Path = WEIGHTS_DIR) -> "WeightsEntry":
        known = {f.name for f in fields(cls)} - {"name", "folder"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{source}: entry {name!r} has unknown fields {unknown} (known: {sorted(known)})")
        required = [f.name for f in fields(cls)
                    if f.name not in ("name", "folder") and f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"{source}: entry {name!r} lacks {missing}")
        entry = cls(name=name, folder=Path(folder), **d)
        for key, kind in (("file", str), ("sha256", str), ("arch", str), ("bytes", int), ("parameters", int),
                          ("iterations", int), ("config", dict), ("benchmarks", dict), ("notes", dict)):
            if not isinstance(getattr(entry, key), kind):
                raise ValueError(f"{source}: entry {name!r}: {key} must be {kind.__name__}, "
                                 f"got {type(getattr(entry, key)).__name__}")
        return entry


def read_manifest(path: str | os.PathLike | None = None) -> dict[str, WeightsEntry]:
    """Every entry of the manifest (default: the package's; empty when no weights are
    installed); a malformed entry is a ``ValueError`` naming it."""
    path = Path(MANIFEST if path is None else path)
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {name: WeightsEntry.from_dict(name, d, str(path), path.parent) for name, d in raw.items()}


def write_manifest(entries: dict[str, WeightsEntry], path: str | os.PathLike | None = None) -> Path:
    """Write the manifest atomically, entries and their cells in sorted order."""
    out = {}
    for name in sorted(entries):
        d = entries[name].to_dict()
        d["benchmarks"] = dict(sorted(d["benchmarks"].items()))
        out[name] = d
    return atomic_write_json(MANIFEST if path is None else path, out)


def default_model(scale: int, photos: bool = True, entries: dict[str, WeightsEntry] | None = None) -> str:
    """The shipped name used when none is given: the photo model of the scale where one is
    shipped, ``photos`` (``kxnet sr``, ``super_resolve``) and its measured cells qualify it
    (:func:`photo_default_shortfalls`), else the setting-2 model (the paper's protocol:
    ``kxnet eval``, ``kxnet benchmark``)."""
    entries = read_manifest() if entries is None else entries
    paper = f"kxnet_x{scale}.setting2"
    photo = PHOTO_MODELS.get(scale)
    if photos and photo in entries and not photo_default_shortfalls(entries[photo], entries.get(paper)):
        return photo
    return paper


# What a photo model must show against the paper's model of its scale to become the default
# (docs/photo.md): this much more on JPEG 75, and no more than this much less on clean inputs.
PHOTO_JPEG_GAIN_DB = 1.0
PHOTO_CLEAN_LOSS_DB = 0.3
# The most a complete cell may move on the fast backend (OpenVINO bf16) for `kxnet benchmark
# --backend auto` to compute a model's cells there (notes["fast_backend_cost_db"]).
FAST_BACKEND_COST_DB = 0.01


# The most a complete cell may move on the int8 graphs for `--backend auto` to run them on a
# CPU without bf16 (entry.int8["cost_db"]).
INT8_COST_DB = 0.05


def _all_within(costs: dict | None, bound: float) -> bool:
    """Whether measured costs (cell → Δ dB) are all within ``bound``; nothing measured is not."""
    return bool(costs) and max(abs(v) for v in costs.values()) <= bound


def _costs_text(costs: dict) -> str:
    return ", ".join(f"{cell} {delta:+.4f} dB" for cell, delta in sorted(costs.items()))


def int8_close(entry: "WeightsEntry | None") -> bool:
    """Whether ``entry`` has an int8 recipe whose measured costs (cell → Δ dB) are all within
    ``INT8_COST_DB``; nothing measured is not close."""
    return _all_within((entry.int8 or {}).get("cost_db") if entry is not None else None, INT8_COST_DB)


def fast_backend_close(costs: dict | None) -> bool:
    """Whether measured fast-backend costs (cell → Δ dB) are all within ``FAST_BACKEND_COST_DB``;
    nothing measured is not close."""
    return _all_within(costs, FAST_BACKEND_COST_DB)


def photo_default_shortfalls(photo: WeightsEntry, paper: WeightsEntry | None) -> list[str]:
    """Why ``photo`` may not (yet) be the default, from the cells both entries carry: Set5 and
    Set14 at σn 5 + JPEG 75 at least ``PHOTO_JPEG_GAIN_DB`` above ``paper``, every cell beyond
    the paper above bicubic in PSNR and SSIM, and Set5 σn 0 within ``PHOTO_CLEAN_LOSS_DB`` of
    ``paper``. Empty when it qualifies; a missing cell is a shortfall."""
    if paper is None:
        return ["no setting-2 model to compare with"]
    s = photo.config.get("scale")
    out = []

    def pair(key):
        a, b = photo.cell(key), paper.cell(key)
        if a is None or b is None:
            out.append(f"{key}: not measured for both")
        return (a, b) if a is not None and b is not None else None

    for set_name in ("Set5", "Set14"):
        if p := pair(f"{set_name}/setting2/x{s}/noise5_jpeg75"):
            gain = p[0]["psnr"] - p[1]["psnr"]
            if gain < PHOTO_JPEG_GAIN_DB:
                out.append(f"{set_name} 5+jpeg75: {gain:+.2f} dB over {paper.name} (needs +{PHOTO_JPEG_GAIN_DB})")
    if p := pair(f"Set5/setting2/x{s}/noise0"):
        gain = p[0]["psnr"] - p[1]["psnr"]
        if gain < -PHOTO_CLEAN_LOSS_DB:
            out.append(f"Set5 σn 0: {gain:+.2f} dB against {paper.name} (may lose {PHOTO_CLEAN_LOSS_DB})")
    for key, c in sorted(photo.benchmarks.items()):
        if isinstance(c, dict) and c.get("degradation") and c.get("full", True) and \
                (c["psnr"] <= c["bicubic_psnr"] or c["ssim"] <= c["bicubic_ssim"]):
            out.append(f"{key}: not above bicubic in PSNR and SSIM")
    return out


# ------------------------------------------------------------------------ the shipping rule

def cells_of_results(results: str | os.PathLike, model_name: str) -> dict:
    """The cells of ``model_name`` in a ``kxnet benchmark`` results.json, as manifest cells."""
    out = {}
    for c in json.loads(Path(results).read_text())["cells"]:
        if c["model"] != model_name:
            continue
        out[c["key"]] = {
            "psnr": round(c["psnr"], 4), "ssim": round(c["ssim"], 4), "bicubic_psnr": round(c["bicubic_psnr"], 4),
            "bicubic_ssim": round(c["bicubic_ssim"], 4), "images": c["images"], "pairs": c["pairs"], "full": c["full"],
            "paper_psnr": c["paper"][0] if c.get("paper") else None,
            "oracle_psnr": round(c["oracle_psnr"], 4) if c.get("oracle_psnr") is not None else None,
            "stage_psnr": [round(v, 3) for v in c["stage_psnr"]],
            "kernel": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in (c.get("kernel") or {}).items()},
            **({"degradation": c["degradation"]} if c.get("degradation") else {}),
        }
    if not out:
        raise ValueError(f"{results}: no cells of model {model_name!r}")
    return out


def improved_cells(new: dict, old: dict) -> list[str]:
    """The complete cells that improve, if the new weights are better overall: of the complete
    cells both have measured on the same images, the mean PSNR must rise (one better cell does
    not excuse worse ones). Empty when they are not better, or share no complete cell."""
    shared = [k for k, c in new.items()
              if c.get("full", True) and k in old and old[k].get("images") == c["images"]]
    if not shared or sum(new[k]["psnr"] - old[k]["psnr"] for k in shared) <= 0:
        return []
    return sorted(k for k in shared if new[k]["psnr"] > old[k]["psnr"])


def _architecture_of_config(config) -> Architecture | None:
    return next((a for a in architectures() if type(config) is a.config_class), None)


def reduced_note(recipe: dict, config, iterations: int) -> str | None:
    """How weights and their (last) recipe fall short of their paper's training (the method's
    ``paper_training``: KXNet's); None when they do not, or for a method without one (the other
    methods' papers train otherwise)."""
    arch = _architecture_of_config(config)
    paper = arch.paper_training if arch is not None else None
    if not paper:
        return None
    used = {"LR patch": recipe["data"]["lr_patch"], "batch": recipe["train"]["batch"], "iterations": iterations}
    wanted = {"LR patch": paper["lr_patch"], "batch": paper["batch"], "iterations": paper["iterations"]}
    depth = getattr(config, arch.depth) if arch.depth in paper else None
    short = [f"{depth} {arch.depth} instead of {paper[arch.depth]}"] if depth is not None and depth < paper[arch.depth] else []
    short += [f"{k} {v:,} instead of {wanted[k]:,}" for k, v in used.items() if v < wanted[k]]
    return "reduced configuration: " + ", ".join(short) if short else None


def grown_note(recipe: dict, config) -> str | None:
    """What a recipe does not say about weights grown after training (``kxnet convert
    --stages``, the method's ``grow``): which stages were added untrained; None when the depth
    is the recipe's, or for a method that does not grow."""
    arch = _architecture_of_config(config)
    if arch is None or arch.depth is None:
        return None
    trained = (recipe.get("model") or {}).get(arch.depth)
    stages = getattr(config, arch.depth, None)
    if not trained or not stages or stages <= trained:
        return None
    added = f"stage {stages} is a copy" if stages == trained + 1 else f"stages {trained + 1}–{stages} are copies"
    return (f"trained with {trained} stages; {added} of stage {trained} added after training "
            f"(kxnet convert --stages {stages}), untrained")


def record_cells(name: str, cells: dict, manifest: str | os.PathLike | None = None) -> WeightsEntry:
    """Add cells measured on the shipped file ``name`` to its entry (a cell measured again
    replaces the old one); the weights stay as they are."""
    entries = read_manifest(manifest)
    if name not in entries:
        raise ValueError(f"{manifest}: no entry {name!r}")
    entries[name].benchmarks.update(cells)
    write_manifest(entries, manifest)
    return entries[name]


def _cell_rows(entry: WeightsEntry) -> list[str]:
    rows = []
    for key, c in sorted(entry.benchmarks.items()):
        if not c.get("full", True):
            continue
        set_name, _, _, cond = key.split("/")
        cond = c.get("degradation") or cond.replace("noise", "σn ")
        k = c.get("kernel") or {}
        kl1 = f"{k['kernel_l1']:.3f}" if k.get("kernel_l1") is not None else "–"
        paper = f"{c['paper_psnr']:.2f}" if c.get("paper_psnr") is not None else "–"
        oracle = f"{c['oracle_psnr']:.2f}" if c.get("oracle_psnr") is not None else "–"
        rows.append(f"| {set_name} | {cond} | {c['psnr']:.2f} / {c['ssim']:.4f} | {c['bicubic_psnr']:.2f} / "
                    f"{c['bicubic_ssim']:.4f} | {oracle} | {kl1} | {paper} |")
    return rows


def _note_text(key: str, note) -> str:
    if key == "fast_backend_cost_db":
        verdict = "within" if fast_backend_close(note) else "beyond"
        return (f"Fast backend (OpenVINO bf16) minus the exact path, complete cells: {_costs_text(note)}; {verdict} the "
                f"{FAST_BACKEND_COST_DB} dB `kxnet benchmark --backend auto` allows, so its cells are computed "
                + ("on OpenVINO where the CPU has bf16." if verdict == "within" else "on the exact path."))
    return f"Note ({key}): {note}"


def model_zoo_markdown(entries: dict[str, WeightsEntry] | None = None) -> str:
    """docs/model-zoo.md: every shipped file with what it is, how it was trained and every
    cell measured on it, generated from the manifest (``kxnet models --markdown``)."""
    entries = read_manifest() if entries is None else entries
    defaults = {default_model(s, entries=entries) for s in (2, 3, 4)}
    out = ["# Model zoo", "",
           "Generated from `src/kxnet/weights/manifest.json` by `kxnet models --markdown` (a test keeps the two "
           "in step). Every figure is a complete set — every image × the setting's 8 kernels — measured with "
           "`kxnet benchmark` on the stored file ([protocol.md](protocol.md), [benchmark.md](benchmark.md)); "
           "σn is the white-noise level, other conditions are degradations beyond the paper "
           "([photo.md](photo.md)). How each file came to be is in [history/study.md](history/study.md).", ""]
    for name in sorted(entries):
        e = entries[name]
        c = e.config
        routed = PHOTO_MODELS.get(c.get("scale")) in entries and name not in PHOTO_MODELS.values()
        role = (" — the default of `kxnet sr` at this scale" + (" for inputs without a JPEG history" if routed else "")
                if name in defaults else "")
        out += [f"## `{name}`{role}", "",
                f"{e.arch}, ×{c.get('scale')}, setting {c.get('setting')}"
                + (f", {c['stages']} stages" if c.get("stages") else "")
                + (", K⁰ read from the photo by a KENet" if c.get("estimator") else "")
                + f"; {e.parameters:,} parameters; {e.bytes / 2 ** 20:.1f} MiB ({e.storage}); SHA-256 `{e.sha256}`.", "",
                f"Trained: {e.iterations:,} iterations"
                + (f", {e.training_hours:g} h" if e.training_hours else "") + f". {e.hardware}.", "",
                f"Data: {e.training_data}.", ""]
        if e.reduced:
            out += [f"Against the paper: {e.reduced}.", ""]
        if name in PHOTO_MODELS.values() and name not in defaults:
            # routing (kxnet.inference.routing) sends it every input with a JPEG history; the rule
            # below is for it to serve every input, clean ones too
            paper = entries.get(f"kxnet_x{c.get('scale')}.setting2")
            out += ["What `kxnet sr` runs at this scale for inputs with a JPEG history (docs/photo.md, "
                    "\"Routing\"); not for clean inputs: " + "; ".join(photo_default_shortfalls(e, paper)) + ".", ""]
        for key, note in sorted(e.notes.items()):
            out += [_note_text(key, note), ""]
        if e.int8:
            verdict = "within" if int8_close(e) else "beyond"
            out += [f"int8 recipe `{e.int8['file']}` ({e.int8['made']}): int8 minus the exact path, complete "
                    f"cells: {_costs_text(e.int8['cost_db'])}; {verdict} the {INT8_COST_DB} dB that lets `--backend auto` run it on a CPU "
                    "without bf16 (docs/speed.md, \"int8 with accuracy control\").", ""]
        rows = _cell_rows(e)
        if rows:
            out += ["| set | condition | PSNR / SSIM | bicubic | oracle (true K) | kernel L1 | paper |",
                    "|---|---|---|---|---|---|---|", *rows, ""]
    return "\n".join(out).rstrip() + "\n"
