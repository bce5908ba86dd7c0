"""int8 for CPUs without bf16: the shipped setting-2 KXNets quantised with NNCF, plain and with
accuracy control, scored on complete Set5 cells and timed against float32.

    python benchmarks/int8_accuracy.py                      # ×2, ×3, ×4: about 30 minutes of one core
    python benchmarks/int8_accuracy.py --models kxnet_x2.setting2 --calibration 8 --validation 8

Needs the ``openvino`` and ``int8`` extras (NNCF). Everything runs on one thread
(``OMP_NUM_THREADS=1`` is set here, and every OpenVINO compile, NNCF's own included, gets
``INFERENCE_NUM_THREADS=1``).

Per model, with the engine's static-shape blind graph (:class:`kxnet.models.kxnet.engine.KXNetEngine`,
one graph per LR size, as :class:`kxnet.inference.openvino.OpenVINORunner` builds it):

1. **Calibration and validation data** come from the training photos (``--train``), never from
   Set5: random HR crops of s·h × s·w degraded by the setting-2 training kernels
   (:func:`kxnet.kernels.settings.sample_training_kernels`, noise-free) with the project's
   :func:`kxnet.degrade.degrade`, at the size of the graph they feed (``--calibration`` crops
   for the control graph; a larger graph gets as many LR pixels, but ``--min-calibration``
   crops at least).
2. **Plain post-training quantisation** (``nncf.quantize``, preset mixed, NNCF's defaults, no
   model type, fast bias correction), twice: the whole graph, and the X-steps' prox nets alone
   (everything else ignored: the physics, the K-steps and the KENet stay float32, as they stay
   float32 in bf16 — docs/speed.md, "Backends").
3. **Accuracy control** (``nncf.quantize_with_accuracy_control``) starting from the prox-net
   scope, on a ``--control-size`` graph: the validation function is the Y-PSNR of the protocol
   (:func:`kxnet.metrics.image_psnr`) on ``--validation`` crops, ``--max-drop`` dB absolute.
   The operations it gives back to float32 (those no longer fed by a quantiser: convolutions
   and residual additions) are read off the result and passed as ``ignored_scope`` names to
   plain ``nncf.quantize`` at every Set5 size (node names come from module paths, so they are
   the same at every size; NNCF refuses a name it cannot find). The same is done at the control
   size, to show that the names give the controlled model again.
4. **Set5** ×s, setting 2, σn 0, all 5 images × the 8 kernels, synthesised and scored by the
   code ``kxnet benchmark`` uses (:func:`kxnet.degrade.testsets.synthesise`,
   :func:`kxnet.inference.evaluate.evaluate`), for OpenVINO float32 and each int8 variant; the
   exact path's cell from the weights manifest is printed beside them.
5. **Speed**: each Set5 image (the first kernel's LR) through PyTorch's optimized path (what
   ``--backend auto`` runs on a CPU without bf16), OpenVINO float32, the prox-net int8 graph
   and the accuracy-controlled one, ``--repeats`` interleaved rounds after a warm-up, medians;
   natively and again in a child process with ``KXNET_HIDE_CPU_FLAGS=bf16
   ONEDNN_MAX_CPU_ISA=AVX2`` (a CPU with AVX2 only, emulated as in docs/speed.md). The child
   also scores the controlled int8 Set5 cell, since int8 arithmetic without VNNI differs
   (16-bit sums with saturation). The kernels OpenVINO chose for the convolutions, and any
   other layer still on an AVX-512 or AMX kernel, are printed for both, so whether OpenVINO
   honours the ISA cap can be read off.

The graphs (rebuilt every run) and the Set5 sets are kept under ``--work``.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from kxnet.inference.openvino import OpenVINORunner, _get_core

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
MODELS = ("kxnet_x2.setting2", "kxnet_x3.setting2", "kxnet_x4.setting2")
PROX = "__module.x_prox."                      # the X-steps' prox nets (KXNetEngine's bf16 scope)
NOT_PROX = r"^(?!__module\.x_prox\.).*"        # every other node
EMULATION = {"KXNET_HIDE_CPU_FLAGS": "bf16", "ONEDNN_MAX_CPU_ISA": "AVX2"}
VARIANTS = ("whole", "prox", "control")
LABELS = {"whole": "int8 whole graph", "prox": "int8 prox nets", "control": "int8 accuracy-controlled"}


def one_thread_openvino() -> None:
    """Every ``Core.compile_model`` (NNCF's statistics and validation compiles included) on one
    unpinned thread unless told otherwise."""
    from openvino import _ov_api

    original = _ov_api.Core.compile_model
    if getattr(original, "_one_thread", False):
        return

    def compile_model(self, model, device_name=None, config=None):
        config = dict(config or {})
        config.setdefault("INFERENCE_NUM_THREADS", 1)
        config.setdefault("ENABLE_CPU_PINNING", False)
        return original(self, model, device_name or "CPU", config)

    compile_model._one_thread = True
    _ov_api.Core.compile_model = compile_model


# -- data ---------------------------------------------------------------------------------------


def training_crops(photos: list[Path], scale: int, size: tuple[int, int], n: int, seed: int):
    """``n`` (LR 1×3×h×w float32 array, HR h·s×w·s×3 uint8) pairs: random crops of the training
    photos large enough for the graph's size, each degraded by its own setting-2 training kernel."""
    from kxnet.degrade import degrade
    from kxnet.degrade.testsets import load_hr
    from kxnet.io import from_tensor, to_uint8
    from kxnet.kernels.settings import sample_training_kernels

    gen = torch.Generator().manual_seed(seed)
    ch, cw = scale * size[0], scale * size[1]
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n:
            raise ValueError(f"too few training photos of at least {ch}×{cw}")
        hr = load_hr(photos[int(torch.randint(len(photos), (1,), generator=gen))], 1)
        if hr.shape[-2] < ch or hr.shape[-1] < cw:
            hr = hr.transpose(-1, -2)
            if hr.shape[-2] < ch or hr.shape[-1] < cw:
                continue
        top = int(torch.randint(hr.shape[-2] - ch + 1, (1,), generator=gen))
        left = int(torch.randint(hr.shape[-1] - cw + 1, (1,), generator=gen))
        hr = hr[:, top:top + ch, left:left + cw].contiguous()
        kernel = sample_training_kernels(2, scale, 1, gen).kernels
        lr = degrade(hr[None], kernel, scale)
        out.append((np.ascontiguousarray(lr.numpy()), to_uint8(from_tensor(hr))))
    return out


def set5(data: Path, work: Path, scale: int) -> Path:
    """Set5 ×scale, setting 2, σn 0, as ``kxnet benchmark`` synthesises it (seed 0)."""
    from kxnet.degrade.testsets import synthesise
    from kxnet.io import list_images

    set_dir = work / "sets" / f"setting2_x{scale}_noise0_Set5"
    if not (set_dir / "manifest.json").is_file():
        synthesise(list_images([data / "Set5"], recursive=False), set_dir, 2, scale, 0.0, seed=0,
                   overwrite=True, progress=False)
    return set_dir


def lr_sizes(set_dir: Path) -> list[tuple[str, tuple[int, int]]]:
    """(HR name, LR size) of each image of a set, from its first kernel's LR files."""
    from kxnet.degrade.testsets import load_manifest
    from kxnet.io import read_image

    manifest = load_manifest(set_dir)
    first = manifest["pairs"][0]["kernel_tag"]
    out = []
    for pair in manifest["pairs"]:
        if pair["kernel_tag"] == first:
            rgb = read_image(set_dir / pair["lr"]).rgb
            out.append((Path(pair["hr"]).stem, (rgb.shape[0], rgb.shape[1])))
    return out


# -- graphs -------------------------------------------------------------------------------------


class GraphRunner(OpenVINORunner):
    """An :class:`~kxnet.inference.openvino.OpenVINORunner` (same call, same config: f32
    arithmetic where not quantised, LATENCY, unpinned, one thread) whose blind graphs are read
    from ``folder/<h>x<w>.xml`` instead of converted."""

    def __init__(self, model, folder: Path):
        super().__init__(model, precision="f32", threads=1)
        self.folder = folder
        self._graphs: dict = {}

    def _entry(self, size, blind, p):
        if not blind:
            raise ValueError("only blind graphs are quantised here")
        entry = self._graphs.get(size)
        if entry is None:
            core = _get_core()
            compiled = core.compile_model(core.read_model(self.folder / f"{size[0]}x{size[1]}.xml"), "CPU",
                                          self._config())
            entry = self._graphs[size] = SimpleNamespace(compiled=compiled, request=compiled.create_infer_request())
        self._last = entry
        return entry


def float_graph(model, size: tuple[int, int]):
    """The engine's blind f32 graph for LR ``size`` (converted as OpenVINORunner converts it)."""
    runner = OpenVINORunner(model, precision="f32", threads=1)
    return runner._convert(size, True, runner.kernel_size)


def save(model, path: Path) -> None:
    import openvino as ov

    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, path, compress_to_fp16=False)


def prox_convs(model) -> list[str]:
    return [n.get_friendly_name() for n in model.get_ordered_ops()
            if n.get_type_name() == "Convolution" and n.get_friendly_name().startswith(PROX)]


def quantised_ops(model) -> set[str]:
    """Operations fed by a FakeQuantize: convolutions that run in int8 once compiled (NNCF
    stores their weights as int8 constants) and the residual additions whose inputs it rounds."""
    return {t.get_node().get_friendly_name() for n in model.get_ordered_ops() if n.get_type_name() == "FakeQuantize"
            for t in n.output(0).get_target_inputs()}


def fake_quantizes(model) -> int:
    """Activation quantisers (weights are not FakeQuantize nodes but int8 constants)."""
    return sum(n.get_type_name() == "FakeQuantize" for n in model.get_ordered_ops())


def short(name: str) -> str:
    """``__module.x_prox.2.convs.8/aten::_convolution/Convolution`` → ``x_prox.2.convs.8``,
    ``__module.x_prox.2/aten::add/Add_4`` → ``x_prox.2 add_4``."""
    return name.removeprefix("__module.").replace("/aten::_convolution/Convolution", "").replace("/aten::add/", " ")


def calibration_count(args, size) -> int:
    """Crops for a graph of LR ``size``: at least as many LR pixels as ``--calibration`` crops of
    the control graph, and never fewer than ``--min-calibration``."""
    budget = args.calibration * args.control_size ** 2
    return max(args.min_calibration, min(args.calibration, -(-budget // (size[0] * size[1]))))


def quantise(model, crops, ignored=None):
    import nncf

    return nncf.quantize(model, nncf.Dataset(crops, lambda item: item[0]), preset=nncf.QuantizationPreset.MIXED,
                         subset_size=len(crops), fast_bias_correction=True, ignored_scope=ignored)


def psnr_of(compiled, items, scale: int) -> tuple[float, list[float]]:
    """Mean and per-item Y-PSNR (the protocol's) of a compiled blind graph's SR."""
    from kxnet.io import from_tensor, to_uint8
    from kxnet.metrics import image_psnr

    request = compiled.create_infer_request()
    values = []
    for lr, hr in items:
        request.infer({0: lr})
        sr = torch.from_numpy(request.get_output_tensor(0).data.copy())[0]
        values.append(image_psnr(to_uint8(from_tensor(sr)), hr, scale))
    return float(np.mean(values)), values


def conv_kernels(compiled) -> dict[str, int]:
    """How many convolutions of a compiled model run on each kernel (``brgconv_avx2_f32``…), and,
    under an ISA cap (``$ONEDNN_MAX_CPU_ISA``), how many other layers still run on an AVX-512 or
    AMX kernel (``Reduce jit_avx512_f32``…)."""
    capped = bool(os.environ.get("ONEDNN_MAX_CPU_ISA"))
    counts = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer, kernel = info["layerType"].astype(str), info["primitiveType"].astype(str)
        if layer == "Convolution":
            counts[kernel] += 1
        elif capped and ("avx512" in kernel or "amx" in kernel):
            counts[f"other {layer} {kernel}"] += 1
    return dict(counts)


def control(model, name: str, args, photos) -> dict:
    """Accuracy control on the ``--control-size`` graph: what must stay float32."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    scale = model.config.scale
    size = (args.control_size, args.control_size)
    graph = float_graph(model, size)
    calibration = training_crops(photos, scale, size, args.calibration, seed=1)
    validation = training_crops(photos, scale, size, args.validation, seed=2)
    prox_scope = nncf.IgnoredScope(patterns=[NOT_PROX])
    t0 = time.perf_counter()
    plain = quantise(graph, calibration, prox_scope)
    plain_s = time.perf_counter() - t0

    def validate(compiled, items):
        return psnr_of(compiled, items, scale)

    t0 = time.perf_counter()
    controlled = nncf.quantize_with_accuracy_control(
        graph, nncf.Dataset(calibration, lambda item: item[0]), nncf.Dataset(validation), validate,
        max_drop=args.max_drop, drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calibration), fast_bias_correction=True, ignored_scope=prox_scope,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(num_ranking_workers=1))
    control_s = time.perf_counter() - t0
    convs = prox_convs(graph)
    before, after = quantised_ops(plain), quantised_ops(controlled)
    reverted = sorted(before - after)
    # the same scope by plain quantisation, as the Set5 sizes get it: is it the same model?
    again = quantise(graph, calibration, nncf.IgnoredScope(patterns=[NOT_PROX], names=reverted))
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    scores = {label: psnr_of(core.compile_model(m, "CPU", config), validation, scale)[0]
              for label, m in (("f32", graph), ("prox", plain), ("control", controlled), ("again", again))}
    return {"model": name, "size": list(size), "calibration": len(calibration), "validation": len(validation),
            "max_drop": args.max_drop, "prox_convs": len(convs), "plain_convs": len(before & set(convs)), "int8_convs": len(after & set(convs)),
            "prox_adds": len(before - set(convs)), "int8_adds": len(after - set(convs)),
            "reverted": reverted, "same_scope": quantised_ops(again) == after,
            "fq_prox": fake_quantizes(plain), "fq_control": fake_quantizes(controlled), "fq_again": fake_quantizes(again),
            "psnr": scores, "seconds": {"prox": plain_s, "control": control_s}}


def build_graphs(model, name: str, args, photos, sizes, reverted: list[str], root: Path) -> dict:
    """float32 and the int8 variants' IRs for every Set5 size, under ``root/<variant>/``."""
    import nncf

    scale = model.config.scale
    scopes = {"whole": None, "prox": nncf.IgnoredScope(patterns=[NOT_PROX]),
              "control": nncf.IgnoredScope(patterns=[NOT_PROX], names=reverted)}
    seconds = collections.defaultdict(float)
    for _, size in sizes:
        stem = f"{size[0]}x{size[1]}.xml"
        graph = float_graph(model, size)
        save(graph, root / "f32" / stem)
        crops = training_crops(photos, scale, size, calibration_count(args, size), seed=1000 + size[0] * 1000 + size[1])
        for variant in args.variants:
            t0 = time.perf_counter()
            save(quantise(graph, crops, scopes[variant]), root / variant / stem)
            seconds[variant] += time.perf_counter() - t0
        print(f"  {name} {size[0]}×{size[1]}: graphs saved", file=sys.stderr, flush=True)
    return dict(seconds)


# -- Set5 and speed -----------------------------------------------------------------------------


def set5_cell(runner, set_dir: Path, name: str, arch) -> float:
    from kxnet.inference.evaluate import evaluate

    return evaluate(runner, set_dir, name, "cpu", progress=False, arch=arch).summary()["psnr"]


TIMED = {"torch": "torch optimized", "f32": "OpenVINO f32", "prox": "OpenVINO int8 prox nets",
         "control": "OpenVINO int8 controlled"}


def time_images(model, root: Path, set_dir: Path, repeats: int) -> dict:
    """Per Set5 image (its first kernel's LR): median seconds of each backend, interleaved
    (the order rotating every round), after one untimed call that compiles the graphs."""
    from kxnet.degrade.testsets import load_manifest
    from kxnet.io import read_image, to_tensor
    from kxnet.models.kxnet.fast import optimize

    manifest = load_manifest(set_dir)
    first = manifest["pairs"][0]["kernel_tag"]
    lrs = [(Path(p["hr"]).stem, to_tensor(read_image(set_dir / p["lr"]).rgb))
           for p in manifest["pairs"] if p["kernel_tag"] == first]
    backends = {"torch": optimize(model)}
    backends.update({v: GraphRunner(model, root / v) for v in ("f32", "prox", "control") if (root / v).is_dir()})
    rows = {}
    with torch.inference_mode():
        for image, y in lrs:
            for fn in backends.values():
                fn(y)
            times = {n: [] for n in backends}
            names = list(backends)
            for r in range(repeats):
                for n in names[r % len(names):] + names[:r % len(names)]:
                    t0 = time.perf_counter()
                    backends[n](y)
                    times[n].append(time.perf_counter() - t0)
            rows[image] = {"lr": list(y.shape[-2:]), **{n: statistics.median(t) for n, t in times.items()}}
    kernels = {n: conv_kernels(fn._last.compiled) for n, fn in backends.items() if n != "torch"}
    return {"images": rows, "kernels": kernels}


def child(args) -> int:
    """Under the AVX2 emulation: the int8 Set5 cells and the timings; JSON on stdout."""
    from kxnet.hardware import cpu_name
    from kxnet.models import load_model
    from kxnet.models.registry import architecture_of

    torch.set_num_threads(1)
    one_thread_openvino()
    out = {"cpu": cpu_name(), "env": {k: os.environ.get(k) for k in EMULATION}, "models": {}}
    for name in args.models:
        model = load_model(name).eval()
        scale = model.config.scale
        root = args.work / "graphs" / name
        set_dir = set5(args.data, args.work, scale)
        cell = set5_cell(GraphRunner(model, root / "control"), set_dir, name, architecture_of(model))
        out["models"][name] = {"set5_control": cell, **time_images(model, root, set_dir, args.repeats)}
    print(json.dumps(out))
    return 0


# -- report -------------------------------------------------------------------------------------


def describe() -> list[str]:
    import nncf
    import openvino as ov

    from kxnet.hardware import cpu_name

    core = ov.Core()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; OpenVINO {ov.get_version()} "
            f"({' '.join(core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))}); NNCF {nncf.__version__}; "
            f"torch {torch.__version__}; one thread; load average {load}")


def speed_table(label: str, results: dict) -> list[str]:
    """Rows of seconds per image and the sum over the set, with f32 / int8 (controlled) ratios."""
    rows = []
    for name, res in results.items():
        cols = [c for c in TIMED if c in next(iter(res["images"].values()))]
        totals = {c: sum(row[c] for row in res["images"].values()) for c in cols}
        lines = [(image, f"{row['lr'][0]}×{row['lr'][1]}", row) for image, row in res["images"].items()]
        for image, lr, row in lines + [("**all 5**", "", totals)]:
            ratio = ("**{:.2f}×**" if not lr else "{:.2f}×").format(row["f32"] / row["control"])
            rows.append(f"| {name} | {label} | {image} | {lr} | " + " | ".join(f"{row[c]:.3f}" for c in cols)
                        + f" | {ratio} | {row['torch'] / row['control']:.2f}× |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--data", type=Path, default=DATA / "benchmarks", help="folder holding Set5/")
    ap.add_argument("--train", type=Path, default=DATA / "train", help="training photos (calibration, validation)")
    ap.add_argument("--calibration", type=int, default=16, help="calibration crops of the control graph")
    ap.add_argument("--min-calibration", type=int, default=8,
                    help="fewest calibration crops for a larger graph (which gets as many LR pixels as the "
                         "control graph's crops, but at least this many crops)")
    ap.add_argument("--validation", type=int, default=16, help="accuracy-control validation crops")
    ap.add_argument("--control-size", type=int, default=64, help="LR side of the accuracy-control graph")
    ap.add_argument("--max-drop", type=float, default=0.03, help="accuracy control's PSNR budget, dB")
    ap.add_argument("--no-whole", dest="whole", action="store_false",
                    help="skip the whole-graph int8 variant (the prox-net and controlled ones always run)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per image (median)")
    ap.add_argument("--no-emulation", dest="emulation", action="store_false",
                    help="skip the AVX2 child process")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("KXNET_CACHE") or Path.home() / ".cache" / "kxnet")
                    / "int8_accuracy", help="quantised graphs and Set5 sets")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.data, args.train, args.work = args.data.resolve(), args.train.resolve(), args.work.resolve()
    args.variants = [v for v in VARIANTS if args.whole or v != "whole"]
    warnings.filterwarnings("ignore")
    import nncf

    nncf.set_log_level(logging.ERROR)
    if args.child:
        return child(args)

    from kxnet.io import list_images
    from kxnet.models import load_model
    from kxnet.models.registry import architecture_of
    from kxnet.models.zoo import read_manifest

    torch.set_num_threads(1)
    one_thread_openvino()
    print(describe())
    photos = list_images([args.train], recursive=True)
    manifest = read_manifest()
    t_start = time.perf_counter()
    controls, cells, native = {}, {}, {}
    for name in args.models:
        model = load_model(name).eval()
        scale, arch = model.config.scale, architecture_of(model)
        root = args.work / "graphs" / name
        control_file = root / "control.json"
        t0 = time.perf_counter()
        info = control(model, name, args, photos)
        info["seconds"]["all"] = time.perf_counter() - t0
        control_file.parent.mkdir(parents=True, exist_ok=True)
        control_file.write_text(json.dumps(info, indent=1))
        controls[name] = info
        print(f"  {name}: accuracy control done in {info['seconds']['all']:.0f} s, "
              f"{len(info['reverted'])} operations reverted to float32", file=sys.stderr, flush=True)
        set_dir = set5(args.data, args.work, scale)
        sizes = lr_sizes(set_dir)
        build = build_graphs(model, name, args, photos, sizes, info["reverted"], root)
        entry = manifest.get(name)
        exact = (entry.cell(f"Set5/setting2/x{scale}/noise0") or {}).get("psnr") if entry else None
        cells[name] = {"exact": exact, "build_s": build,
                       **{v: set5_cell(GraphRunner(model, root / v), set_dir, name, arch) for v in ("f32", *args.variants)}}
        print(f"  {name}: Set5 cells {cells[name]}", file=sys.stderr, flush=True)
        native[name] = time_images(model, root, set_dir, args.repeats)
    emulated = None
    if args.emulation:
        cmd = [sys.executable, __file__, "--child", "--models", *args.models, "--data", str(args.data),
               "--work", str(args.work), "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, env=dict(os.environ, **EMULATION, OMP_NUM_THREADS="1"), capture_output=True,
                              text=True, check=False)
        if proc.returncode:
            print(proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit("the AVX2 child process failed")
        emulated = json.loads(proc.stdout.strip().splitlines()[-1])

    print(f"\nAccuracy control (graph {args.control_size}×{args.control_size}, {args.calibration} calibration and "
          f"{args.validation} validation crops from the training photos, max drop {args.max_drop} dB; "
          f"Y-PSNR on the validation crops):\n")
    print("| model | prox convs in int8: plain → controlled | residual adds in int8: plain → controlled "
          "| activation quantisers: plain / controlled / same scope by name | same scope by name reproduces it "
          "| f32 dB | int8 prox nets dB | int8 controlled dB | control s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, c in controls.items():
        p = c["psnr"]
        print(f"| {name} | {c['plain_convs']} of {c['prox_convs']} → {c['int8_convs']} | {c['prox_adds']} → {c['int8_adds']} "
              f"| {c['fq_prox']} / {c['fq_control']} / {c['fq_again']} "
              f"| {'yes' if c['same_scope'] else 'no'} ({p['again'] - p['f32']:+.3f}) | {p['f32']:.3f} "
              f"| {p['prox']:.3f} ({p['prox'] - p['f32']:+.3f}) | {p['control']:.3f} ({p['control'] - p['f32']:+.3f}) "
              f"| {c['seconds']['control']:.0f} |")
    for name, c in controls.items():
        print(f"{name}: kept float32 by accuracy control: {', '.join(short(r) for r in c['reverted']) or 'nothing'}")

    print("\nComplete Set5, setting 2, σn 0 (40 pairs per cell; Y-PSNR, dB; Δ against OpenVINO f32):\n")
    head = ["model", "exact path (manifest)", "OpenVINO f32"] + [LABELS[v] for v in args.variants]
    if emulated:
        head.append("int8 accuracy-controlled, AVX2 emulated")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, c in cells.items():
        f32 = c["f32"]
        cols = [name, f"{c['exact']:.3f}" if c["exact"] is not None else "–", f"{f32:.3f}"]
        cols += [f"{c[v]:.3f} ({c[v] - f32:+.3f})" for v in args.variants]
        if emulated:
            e = emulated["models"][name]["set5_control"]
            cols.append(f"{e:.3f} ({e - f32:+.3f})")
        print("| " + " | ".join(cols) + " |")

    print(f"\nSeconds per image (the first kernel's LR, blind, one thread, median of {args.repeats}; "
          "f32 / int8 and torch / int8 are against the accuracy-controlled int8 graph):\n")
    print("| model | CPU class | image | LR | " + " | ".join(f"{TIMED[c]} s" for c in TIMED)
          + " | f32 / int8 | torch / int8 |")
    print("|" + "---|" * (len(TIMED) + 6))
    print("\n".join(speed_table("native", native)))
    if emulated:
        print("\n".join(speed_table("AVX2, no bf16 (emulated)", emulated["models"])))
    print("\nconvolution kernels OpenVINO chose (the last image's graphs):")
    classes = [("native", native)]
    if emulated:
        classes.append((" ".join(f"{k}={v}" for k, v in EMULATION.items()), emulated["models"]))
    for label, res in classes:
        for name, r in res.items():
            print(f"  {label}, {name}: " + "; ".join(f"{TIMED[k]} {v}" for k, v in r["kernels"].items()))
    print(f"\nwall time {time.perf_counter() - t_start:.0f} s; load average after "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
