"""Make a shipped model's int8 recipe and measure what it costs: the file and the manifest entry
that let ``--backend auto`` run OpenVINO's int8 graphs on a CPU without bf16.

    python scripts/int8_recipe.py kxnet_x2.setting2 kxnet_x3.setting2 kxnet_x4.setting2
    python scripts/int8_recipe.py kxnet_x4.photo --degradations 0 5+jpeg75

Needs the ``openvino`` and ``int8`` (NNCF) extras; one thread. Per model:

1. NNCF quantises the model's blind OpenVINO graph (as ``OpenVINORunner`` converts it; ``--size``,
   default 64×64) on ``--calibration`` crops of the training photos degraded by setting-2
   training kernels (the calibration of ``benchmarks/int8_accuracy.py``), preset mixed, activation
   ranges the extremes over all crops (``--ranges``), fast bias correction, with
   everything that accuracy control gave back kept float32 (the engine's ``int8_float_kept``:
   KXNet's in kxnet.models.kxnet.engine), its weights left as quantisers.
2. The recipe (:func:`~kxnet.inference.int8.record_recipe`) is written beside the weights,
   ``<weights stem>.int8.safetensors``, and checked: applied to a fresh 64×64 graph it must give
   NNCF's model output for output, bit for bit, on the calibration crops.
3. The model's complete Set5 cells (``--degradations``, default σn 0) are scored through
   ``--backend openvino-int8`` (``kxnet benchmark``'s code) and the change against the manifest's
   cells of the same key (the exact path) is stored in the entry (``int8.cost_db``), which
   ``--backend auto`` reads (``kxnet.models.zoo.INT8_COST_DB``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from int8_accuracy import float_graph, one_thread_openvino, training_crops  # noqa: E402  (the same graphs, calibration)

from kxnet.inference.int8 import apply_recipe, record_recipe, save_recipe  # noqa: E402
from kxnet.io import file_sha256, list_images  # noqa: E402
from kxnet.models import load_model  # noqa: E402
from kxnet.models.registry import architecture_of  # noqa: E402
from kxnet.models.zoo import read_manifest, write_manifest  # noqa: E402

DATA = REPO / ".." / "shared" / "data"


def make_recipe(model, photos, crops_n: int, size: int, estimator: str):
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from openvino._offline_transformations import compress_quantize_weights_transformation

    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    crops = training_crops(photos, model.config.scale, (size, size), crops_n, seed=1)
    ranges = {"minmax": RangeEstimatorParametersSet.MINMAX, "mean-minmax": RangeEstimatorParametersSet.MEAN_MINMAX}
    quantised = nncf.quantize(
        float_graph(model, (size, size)), nncf.Dataset(crops, lambda item: item[0]),
        preset=nncf.QuantizationPreset.MIXED, subset_size=len(crops), fast_bias_correction=True,
        ignored_scope=nncf.IgnoredScope(patterns=architecture_of(model).fast_engine(model).int8_float_kept()),
        advanced_parameters=AdvancedQuantizationParameters(
            backend_params={"compress_weights": False}, activations_range_estimator_params=ranges[estimator]))
    recipe = record_recipe(quantised)
    compress_quantize_weights_transformation(quantised)      # as nncf.quantize leaves it by default
    rewritten = float_graph(model, (size, size))
    apply_recipe(rewritten, recipe)
    core, config = ov.Core(), {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
    a, b = core.compile_model(quantised, "CPU", config), core.compile_model(rewritten, "CPU", config)
    worst = max(float(np.abs(a({0: lr})[0] - b({0: lr})[0]).max()) for lr, _ in crops)
    return recipe, len(crops), worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="shipped names (kxnet models lists them)")
    p.add_argument("--degradations", nargs="+", default=["0"], help="Set5 cells to score (default: σn 0)")
    p.add_argument("--calibration", type=int, default=16, help="calibration crops (default 16)")
    p.add_argument("--size", type=int, default=64, help="their LR side (default 64)")
    p.add_argument("--ranges", choices=["minmax", "mean-minmax"], default="minmax",
                   help="activation ranges: the extremes over all crops (default; a photo larger than a crop "
                        "reaches further than the mean crop does) or NNCF's default, the mean of each crop's")
    p.add_argument("--train", type=Path, default=DATA / "train", help="the training photos")
    p.add_argument("--data", type=Path, default=DATA / "benchmarks", help="the benchmark sets")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "int8_work", help="sets and cached cells")
    args = p.parse_args(argv)

    import nncf

    from kxnet.inference.benchmark import benchmark_model
    from kxnet.models import resolve

    torch.set_num_threads(1)
    one_thread_openvino()
    photos = list_images([args.train], recursive=True)
    for name in args.models:
        entries = read_manifest()
        if name not in entries:
            raise SystemExit(f"{name}: not a shipped model")
        entry = entries[name]
        t0 = time.perf_counter()
        recipe, n, worst = make_recipe(load_model(name).eval(), photos, args.calibration, args.size, args.ranges)
        if worst != 0.0:
            raise SystemExit(f"{name}: the recipe applied to a fresh graph differs from NNCF's by {worst}")
        path = entry.path.with_name(entry.path.stem + ".int8.safetensors")
        save_recipe(recipe, path)
        print(f"{name}: {len(recipe.activations)} activation quantisers, {len(recipe.weights)} int8 convolutions, "
              f"{time.perf_counter() - t0:.1f} s; applied to a fresh graph it equals NNCF's bit for bit", flush=True)
        entry.int8 = {
            "file": path.name, "sha256": file_sha256(path),
            "made": (f"NNCF {nncf.__version__} on the {args.size}×{args.size} blind graph: {n} crops of the "
                     "training photos with setting-2 training kernels, noise-free (seed 1); preset mixed, "
                     f"activation ranges {args.ranges}, fast bias correction; float32 outside the X-steps' prox "
                     "nets and for each prox net's input"),
            "cost_db": {},
        }
        write_manifest(entries)
        cells = benchmark_model(resolve(name), name, args.data, args.work, {"Set5": tuple(args.degradations)}, {},
                                backend="openvino-int8")
        for cell in cells:
            exact = entry.cell(cell.key)
            if exact is None or not cell.full:
                print(f"  {cell.key}: {cell.psnr:.4f} dB int8, no exact cell in the manifest to compare with")
                continue
            entry.int8["cost_db"][cell.key] = round(cell.psnr - exact["psnr"], 4)
            print(f"  {cell.key}: int8 {cell.psnr:.4f} dB, exact {exact['psnr']:.4f} dB, "
                  f"change {cell.psnr - exact['psnr']:+.4f} dB", flush=True)
        write_manifest(entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
