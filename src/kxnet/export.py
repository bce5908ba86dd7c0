"""ONNX export of a model for one fixed input size, checked with onnxruntime.

Any method whose descriptor has an ``export`` hook (:class:`~kxnet.models.Architecture`) can
be written: the hook gives a module of static shapes for one LR size and batch 1 (KXNet's:
:class:`ExportableKXNet`, the blind forward rewritten with every shape a Python constant,
:mod:`kxnet.models.kxnet.export`), which is traced here. It shares no code with the model's
forward, so the export is always checked against the PyTorch model (:func:`export_onnx` does
it and reports the largest difference).

Needs the ``onnx`` extra (``onnx``, ``onnxruntime``); the TorchScript-based exporter is used,
so ``onnxscript`` is not needed.
"""

from __future__ import annotations

import io
import os
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .models import architecture_of
from .models.kxnet.export import ExportableKXNet, NonBlindExportableKXNet

__all__ = ["ExportableKXNet", "NonBlindExportableKXNet", "OnnxReport", "export_onnx", "onnx_session", "run_onnx",
           "compare_backends"]

DEFAULT_OPSET = 17



@dataclass
class OnnxReport:
    """What :func:`export_onnx` did: the file, the largest |ONNX − PyTorch| over the SR
    image and the kernel, and (when timed) seconds per image for each backend."""

    path: Path
    size: tuple[int, int]
    opset: int
    max_abs_diff_sr: float | None = None
    max_abs_diff_kernel: float | None = None
    onnx_seconds: float | None = None
    torch_seconds: float | None = None
    torch_optimized_seconds: float | None = None

    def summary(self) -> str:
        lines = [f"wrote {self.path} (LR {self.size[0]}×{self.size[1]}, opset {self.opset}, "
                 f"{self.path.stat().st_size / 2**20:.1f} MiB)"]
        if self.max_abs_diff_sr is not None:
            kernel = f", kernel {self.max_abs_diff_kernel:.3g}" if self.max_abs_diff_kernel is not None else ""
            lines.append(f"max |onnxruntime − PyTorch|: SR {self.max_abs_diff_sr:.3g}{kernel}")
        if self.onnx_seconds is not None:
            lines.append(f"seconds per image (CPU, median, interleaved): onnxruntime {self.onnx_seconds:.3f}, "
                         f"PyTorch {self.torch_seconds:.3f}, PyTorch optimize() {self.torch_optimized_seconds:.3f} "
                         f"(PyTorch/onnxruntime = {self.torch_seconds / self.onnx_seconds:.2f})")
        return "\n".join(lines)


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session with full graph optimisation."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_onnx(session, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(sr, kernel)`` of an exported file on ``lr``; ``kernel`` None for a method that
    estimates none."""
    outputs = session.run(None, {"lr": lr.detach().cpu().numpy()})
    return torch.from_numpy(outputs[0]), (torch.from_numpy(outputs[1]) if len(outputs) > 1 else None)


def export_onnx(model: nn.Module, path: str | os.PathLike, size: tuple[int, int] = (64, 64),
                opset: int = DEFAULT_OPSET, check: bool = True, time_repeats: int = 0,
                lr: torch.Tensor | None = None) -> OnnxReport:
    """Write ``model`` (float32, CPU, blind mode, batch 1, LR ``size``) as ONNX at ``path``:
    its descriptor's ``export`` graph, with the outputs ``sr`` and, for a method that estimates
    a kernel, ``kernel``.

    ``check`` runs the file in onnxruntime on ``lr`` (default: a fixed random image) and
    records the largest difference from the PyTorch model's own forward. ``time_repeats``
    > 0 also times both backends (median seconds per image, interleaved).
    """
    arch = architecture_of(model)
    if arch.export is None:
        raise TypeError(f"export_onnx: {arch.name} has no static-shape export")
    model = model.float().cpu().eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = int(size[0]), int(size[1])
    net = arch.export(model, (h, w)).eval()
    outputs = ["sr", "kernel"] if arch.estimates_kernel else ["sr"]
    if lr is None:
        lr = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    if tuple(lr.shape) != (1, 3, h, w):
        raise ValueError(f"lr must be 1×3×{h}×{w}, got {tuple(lr.shape)}")
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (lr,), buf, input_names=["lr"], output_names=outputs,
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    report = OnnxReport(path, (h, w), opset)
    if check or time_repeats:
        session = onnx_session(path)
        sr, kernel = run_onnx(session, lr)
        with torch.inference_mode():
            out = model(lr)
        report.max_abs_diff_sr = (sr - out.sr).abs().max().item()
        if kernel is not None:
            report.max_abs_diff_kernel = (kernel - out.kernel).abs().max().item()
        if time_repeats:
            times = compare_backends({"onnx": lambda: run_onnx(session, lr), "torch": lambda: model(lr),
                                      "optimized": (lambda m=arch.runner(model): m(lr))}, time_repeats)
            report.onnx_seconds, report.torch_seconds = times["onnx"], times["torch"]
            report.torch_optimized_seconds = times["optimized"]
    return report


def compare_backends(fns: dict, repeats: int = 3) -> dict[str, float]:
    """Median wall seconds per call of each function (after one warm-up), interleaved."""
    times = {name: [] for name in fns}
    with torch.inference_mode():
        for fn in fns.values():
            fn()
        for _ in range(repeats):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}
