"""Put trained weights into the package: fp16 (or ``--int8``) safetensors + a manifest entry.

    python scripts/ship_weights.py RUN_DIR NAME [--weights FILE] --benchmark results.json [--hardware TEXT]
    python scripts/ship_weights.py ../shared/runs/x2_lr8e-4 kxnet_x2.setting2 --weights ../shared/runs/x2_lr8e-4/best.safetensors \
        --recipe configs/cpu_setting2_x2.yaml --override train.lr=8e-4 --prior-iterations 700 --benchmark …
    python scripts/ship_weights.py --record NAME --benchmark set14/results.json b100/results.json

Replaces ``src/kxnet/weights/<NAME>.safetensors`` (never piles up versions) and the entry
``NAME`` of ``src/kxnet/weights/manifest.json`` with: SHA-256, the model config, the recipe
(the run's resolved config), iterations, hardware, training data, what is reduced compared
with the paper, and — given ``--benchmark`` (a ``kxnet benchmark`` results.json) — the
measured cells of this model. Also records the PSNR cost of fp16 storage if measured
(``--fp16-cost-db``). With ``--int8`` the large convolution weights are stored as int8
(``save_model(storage="int8")``); benchmark the int8 file itself, since that is what ships.

Weights are replaced only when complete benchmark cells improve: of the complete-set cells
(every image of the set) that both the new results and the shipped entry have, the mean PSNR
must rise, unless ``--force``. A run folder without ``config.yaml`` (a run made elsewhere) names
its recipe with ``--recipe`` and ``--override``.

``--record NAME`` leaves the weights alone and adds the cells that ``kxnet benchmark --models NAME``
measured on the shipped file to its manifest entry (a cell measured again replaces the old one).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import yaml

from kxnet.io import atomic_write_json, file_sha256
from kxnet.models import architecture_of, load_model, save_model
from kxnet.train import load_config
from kxnet.train.checkpoint import list_checkpoints

WEIGHTS = Path(__file__).resolve().parent.parent / "src" / "kxnet" / "weights"
CONFIGS = WEIGHTS.parents[2] / "configs"
TRAINING_DATA = ("shared/data/train: BSDS300 train (199), Kodak24, McMaster18, T91 (90), 17 Debian wallpapers "
                 "— 348 images, ≈66 MP, ≈3% of DIV2K+Flickr2K")


def _same_tensors(path: Path, model, storage: str = "fp16") -> bool:
    """Whether ``path`` already holds ``model`` as ``storage`` (fp16 or int8) keeps it:
    compared after a round trip through ``save_model``, the one place that rounds."""
    if not path.is_file():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        stored = load_model(save_model(model, Path(tmp) / "w.safetensors", storage=storage)).state_dict()
    shipped = load_model(path).state_dict()
    return shipped.keys() == stored.keys() and all(torch.equal(shipped[k], v) for k, v in stored.items())


def _cells(results: Path, name: str) -> dict:
    """The cells of model ``name`` in a ``kxnet benchmark`` results.json, as manifest entries."""
    out = {}
    for c in json.loads(results.read_text())["cells"]:
        if c["model"] != name:
            continue
        out[c["key"]] = {
            "psnr": round(c["psnr"], 4), "ssim": round(c["ssim"], 4), "bicubic_psnr": round(c["bicubic_psnr"], 4),
            "bicubic_ssim": round(c["bicubic_ssim"], 4), "images": c["images"], "pairs": c["pairs"], "full": c["full"],
            "paper_psnr": c["paper"][0] if c.get("paper") else None,
            "oracle_psnr": round(c["oracle_psnr"], 4) if c.get("oracle_psnr") is not None else None,
            "stage_psnr": [round(v, 3) for v in c["stage_psnr"]],
            "kernel": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in (c.get("kernel") or {}).items()},
        }
    if not out:
        raise SystemExit(f"{results}: no cells of model {name!r} (give --benchmark-name)")
    return out


def _improved(new: dict, old: dict) -> list[str]:
    """The complete-set cells that improve, if the new weights are better overall: of the
    complete cells both have measured, the mean PSNR must rise (one better cell does not excuse
    worse ones). Empty when they are not better."""
    shared = [k for k, c in new.items()
              if c.get("full", True) and k in old and old[k].get("images") == c["images"]]
    if not shared or sum(new[k]["psnr"] - old[k]["psnr"] for k in shared) <= 0:
        return []
    return sorted(k for k in shared if new[k]["psnr"] > old[k]["psnr"])


def _reduced(recipe: dict, config, iterations: int) -> str | None:
    """How KXNet weights and their (last) recipe fall short of the paper's; None when they do not
    (or when the model has no stages: the other methods' papers train differently)."""
    stages = getattr(config, "stages", None)
    if stages is None:
        return None
    paper = load_config(CONFIGS / f"paper_setting{config.setting}_x{config.scale}.yaml")
    paper_used = {"LR patch": paper.data.lr_patch, "batch": paper.train.batch, "iterations": paper.train.iterations}
    used = {"LR patch": recipe["data"]["lr_patch"], "batch": recipe["train"]["batch"], "iterations": iterations}
    short = [f"{stages} stages instead of {paper.model.stages}"] if stages < paper.model.stages else []
    short += [f"{k} {v:,} instead of {paper_used[k]:,}" for k, v in used.items() if v < paper_used[k]]
    return "reduced configuration: " + ", ".join(short) if short else None


def _grown(recipe: dict, config) -> str | None:
    """What the recipe does not say about weights grown after training (``kxnet convert
    --stages``): which stages were added untrained. None when the stages are the recipe's."""
    trained = (recipe.get("model") or {}).get("stages")
    stages = getattr(config, "stages", None)
    if not trained or not stages or stages <= trained:
        return None
    added = f"stage {stages} is a copy" if stages == trained + 1 else f"stages {trained + 1}–{stages} are copies"
    return (f"trained with {trained} stages; {added} of stage {trained} added after training "
            f"(kxnet convert --stages {stages}), untrained")


def record(name: str, results: list[Path]) -> None:
    manifest_path = WEIGHTS / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if name not in manifest:
        raise SystemExit(f"{manifest_path}: no entry {name!r}")
    cells = {}
    for r in results:
        cells.update(_cells(r, name))
    manifest[name].setdefault("benchmarks", {}).update(cells)
    manifest[name]["benchmarks"] = dict(sorted(manifest[name]["benchmarks"].items()))
    atomic_write_json(manifest_path, manifest)
    print(f"{name}: recorded {len(cells)} cells ({', '.join(sorted(cells))})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, nargs="?")
    ap.add_argument("name", nargs="?", help="manifest name, e.g. kxnet_x4.setting2")
    ap.add_argument("--record", metavar="NAME", help="only add benchmark cells of the shipped NAME to the manifest")
    ap.add_argument("--weights", type=Path, default=None, help="default: the run's model.safetensors, else its last checkpoint")
    ap.add_argument("--benchmark", type=Path, nargs="+", default=None, help="results.json of `kxnet benchmark`")
    ap.add_argument("--benchmark-name", default=None, help="model name used in results.json (default: NAME)")
    ap.add_argument("--hardware", default="2-core x86_64 CPU (no GPU), torch 2.13.0 CPU build, 1 thread")
    ap.add_argument("--hours", type=float, default=None, help="wall-clock training time")
    ap.add_argument("--training-data", default=TRAINING_DATA, help="the photos trained on, in words")
    ap.add_argument("--fp16-cost-db", type=float, default=None, help="measured PSNR change from fp16 storage")
    ap.add_argument("--int8", dest="storage", action="store_const", const="int8", default="fp16",
                    help="store the large convolution weights as int8 (half of fp16)")
    ap.add_argument("--recipe", type=Path, default=None, help="the recipe, when RUN_DIR has no config.yaml")
    ap.add_argument("--override", nargs="*", default=[], metavar="key=value", help="overrides of --recipe")
    ap.add_argument("--prior-iterations", type=int, default=0,
                    help="iterations of the weights the run started from (its train.init_weights)")
    ap.add_argument("--step", type=int, default=None, help="the run's step of --weights (default: from the run)")
    ap.add_argument("--force", action="store_true", help="replace even if no complete cell improves")
    args = ap.parse_args()
    if args.record:
        if not args.benchmark:
            ap.error("--record needs --benchmark")
        return record(args.record, args.benchmark)
    if args.run_dir is None or args.name is None:
        ap.error("give RUN_DIR and NAME (or --record NAME)")

    run = args.run_dir
    weights = args.weights
    step = None
    if weights is None:
        ckpts = list_checkpoints(run / "checkpoints")
        final = run / "model.safetensors"
        if final.is_file():
            weights = final
            step = json.loads((run / "summary.json").read_text()).get("step") if (run / "summary.json").is_file() else None
        elif ckpts:
            step, state = ckpts[-1]
            weights = state.with_suffix(".safetensors")
    model = load_model(weights)
    # the run's config holds absolute paths; keep the manifest free of this machine's layout
    repo = WEIGHTS.parents[2]
    if (run / "config.yaml").is_file():
        text = (run / "config.yaml").read_text()
    elif args.recipe:
        text = yaml.safe_dump(load_config(args.recipe, args.override).to_dict(), sort_keys=False)
    else:
        raise SystemExit(f"{run}: no config.yaml; name the recipe with --recipe (and --override)")
    recipe = yaml.safe_load(text.replace(f"{repo}/", "").replace(f"{repo.parent}/", "../"))
    if args.step is not None:
        step = args.step
    if step is None:
        raise SystemExit(f"{weights}: cannot tell the run's step of these weights; give --step")

    step += args.prior_iterations
    cells = {}
    for results in args.benchmark or []:
        cells.update(_cells(results, args.benchmark_name or args.name))
    manifest_path = WEIGHTS / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    better = _improved(cells, manifest.get(args.name, {}).get("benchmarks") or {})
    if args.name in manifest and not better and not args.force:
        raise SystemExit(f"{args.name}: no complete benchmark cell improves on the shipped weights; not replaced")
    file_name = args.name.replace(".", "_") + ".safetensors"
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    target = WEIGHTS / file_name
    if not _same_tensors(target, model, args.storage):  # re-shipping the same weights must not add a new blob to git
        save_model(model, target, storage=args.storage, extra_metadata={"name": args.name, "iterations": step})
    digest = file_sha256(target)

    cfg = model.config
    entry = {
        "arch": architecture_of(model).name,
        "file": file_name,
        "sha256": digest,
        "bytes": target.stat().st_size,
        "storage": "safetensors, " + ("int8 convolution weights (a float32 scale per output channel), the rest "
                                      if args.storage == "int8" else "") + "float16 (loaded as float32)",
        "config": cfg.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "iterations": step,
        "recipe": {k: recipe.get(k) for k in ("model", "data", "train")},
        "hardware": args.hardware,
        "training_hours": args.hours,
        "training_data": args.training_data,
        "reduced": _reduced(recipe, cfg, step),
        "fp16_psnr_cost_db": args.fp16_cost_db,
    }
    grown = _grown(recipe, cfg)
    if grown:
        entry["grown"] = grown
    if cells:
        entry["benchmarks"] = cells
        entry["improved_cells"] = better
    old = manifest.get(args.name, {}).get("file")
    if old and old != file_name:
        (WEIGHTS / old).unlink(missing_ok=True)
    manifest[args.name] = entry
    atomic_write_json(manifest_path, manifest)
    print(f"{args.name}: {target} ({entry['bytes'] / 2**20:.1f} MiB, sha256 {digest[:12]}…), step {step}")


if __name__ == "__main__":
    main()
