"""Speed and memory of KXNet's computation paths, side by side.

    python benchmarks/speed.py                                   # CPU default: ×2 ×3 ×4, LR 64×64, 19 stages
    python benchmarks/speed.py --scales 4 --sizes 64 256 --repeats 3
    python benchmarks/speed.py --scales 4 --onnx                 # + onnxruntime as a backend
    python benchmarks/speed.py --train --train-batch 2           # forward+backward (default batch 12)
    python benchmarks/speed.py --device cuda --autocast bf16     # GPU (+ Set5 ×2 setting 2 by default)

Paths (same weights, random init with a fixed seed; outputs agree to float tolerance and the
largest |SR − reference| is printed):

* ``reference`` — :class:`kxnet.models.reference.KXNetReference`: the paper's formulation as
  the release computes it (patch-matrix kernel gradient via ``F.unfold``, ``groups=B·C``
  convolutions, normaliser from an all-ones map), plain prox nets.
* ``fast`` — :class:`kxnet.models.KXNet` as the library runs it (fused strided blur,
  patch-free kernel gradient, batch-1 folding), plain NCHW prox nets.
* ``optimized`` — :func:`kxnet.models.fast.optimize` of the same model: fused oneDNN
  conv+bias(+add)+ReLU with pre-packed weights and channels-last activations on CPU,
  ``Dᵀ`` by output phases, inference mode (plus autocast / CUDA graphs on GPU if asked).
* ``onnxruntime`` (``--onnx``, CPU) — :mod:`kxnet.export`'s ONNX graph in onnxruntime.

Every path is timed in the same run, interleaved (the order rotates each repeat), after one
untimed warm-up call, under ``torch.inference_mode``; the median of ``--repeats`` is
reported as seconds per image. Peak memory is measured in a separate untimed call: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the high-water mark of the CPU allocator's
running total reported to the PyTorch profiler (allocations during the call only, so
weights and the input are excluded; oneDNN's packed weights too).

Timings on a shared machine are noisy: compare paths within one table, not across runs. The
load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from kxnet.models import KXNet, KXNetConfig
from kxnet.models.kxnet.fast import optimize
from kxnet.models.kxnet.reference import KXNetReference

PATHS = ("reference", "fast", "optimized")


# --------------------------------------------------------------------------------- helpers

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(fn, device: torch.device) -> int:
    """Bytes allocated at the high-water mark of one call of ``fn``, beyond what existed before."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    allocations = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            f = node.extra_fields
            allocations.append((node.start_time_ns, f.alloc_size, f.total_allocated))
        stack.extend(node.children)
    if not allocations:
        return 0
    allocations.sort()
    base = allocations[0][2] - allocations[0][1]
    return max(total for _, _, total in allocations) - base


def time_interleaved(fns: dict, repeats: int, device: torch.device) -> dict[str, list[tuple[float, float]]]:
    """(wall, process-CPU) seconds per call of every function, run in turn (rotating order)
    ``repeats`` times. Process CPU time is what this process consumed (all its threads): on a
    machine shared with other jobs it is far less noisy than wall time."""
    names = list(fns)
    times = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[: r % len(names)]:
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fns[n]()
            _sync(device)
            times[n].append((time.perf_counter() - t0, time.process_time() - c0))
    return times


def _median(samples, which: int) -> float:
    return statistics.median(t[which] for t in samples)


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _mib(n: int | None) -> str:
    return "–" if n is None else f"{n / 2**20:.1f}"


def build_model(scale: int, setting: int, stages: int, device: torch.device, seed: int = 0) -> KXNet:
    torch.manual_seed(seed)
    return KXNet(KXNetConfig(scale=scale, setting=setting, stages=stages)).to(device).eval()


def inference_paths(model: KXNet, names: list[str], args, lr_size: tuple[int, int]) -> dict:
    """name → callable(y) returning (sr, kernel)."""
    device = next(model.parameters()).device
    out = {}
    for name in names:
        if name == "reference":
            ref = KXNetReference.from_model(model)
            out[name] = lambda y, m=ref: _sr_kernel(m(y))
        elif name == "fast":
            out[name] = lambda y, m=model: _sr_kernel(m(y))
        elif name == "optimized":
            kw = dict(compile=args.compile, pad_channels=args.pad_channels)
            if device.type == "cuda":
                kw.update(cuda_graphs=args.cuda_graphs)
            opt = optimize(model, **kw)
            out[name] = lambda y, m=opt: _sr_kernel(m(y))
            if device.type == "cuda" and args.autocast:
                dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.autocast]
                opt16 = optimize(model, autocast=dtype, pad_channels="auto", cuda_graphs=args.cuda_graphs)
                out[f"optimized+{args.autocast}"] = lambda y, m=opt16: _sr_kernel(m(y))
        elif name == "onnxruntime":
            from kxnet.export import export_onnx, onnx_session, run_onnx

            path = Path(tempfile.mkdtemp(prefix="kxnet-speed-")) / "model.onnx"
            t0 = time.perf_counter()
            export_onnx(model, path, size=lr_size, check=False)
            print(f"  (ONNX export x{model.scale} {lr_size[0]}×{lr_size[1]}: {time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
            session = onnx_session(path, threads=torch.get_num_threads())
            out[name] = lambda y, s=session: run_onnx(s, y)
        else:
            raise ValueError(f"unknown path {name!r}")
    return out


def _sr_kernel(output):
    return output.sr, output.kernel


# ------------------------------------------------------------------------------- inference

def run_inference(args, device: torch.device) -> list[str]:
    rows = ["| scale | LR → HR | stages | path | wall s/img | CPU s/img | speed-up (wall) | speed-up (CPU) | "
            "peak MiB | max abs ΔSR vs ref |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    names = list(args.paths) + (["onnxruntime"] if args.onnx and device.type == "cpu" else [])
    for scale in args.scales:
        for size in args.sizes:
            model = build_model(scale, args.setting, args.stages, device, args.seed)
            fns = inference_paths(model, names, args, (size, size))
            y = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
            with torch.inference_mode():
                outputs = {n: f(y) for n, f in fns.items()}        # warm-up (and outputs to compare)
                times = time_interleaved({n: (lambda f=f: f(y)) for n, f in fns.items()}, args.repeats, device)
                peaks = {n: (peak_memory(lambda f=f: f(y), device) if args.memory and n != "onnxruntime" else None)
                         for n, f in fns.items()}
            ref_name = "reference" if "reference" in fns else next(iter(fns))
            ref_t, ref_c = _median(times[ref_name], 0), _median(times[ref_name], 1)
            ref_sr = outputs[ref_name][0].float().cpu()
            for n in fns:
                t, c = _median(times[n], 0), _median(times[n], 1)
                diff = (outputs[n][0].float().cpu() - ref_sr).abs().max().item()
                rows.append(f"| ×{scale} | {size}×{size} → {size * scale}×{size * scale} | {args.stages} | {n} | "
                            f"{t:.3f} | {c:.3f} | {ref_t / t:.2f}× | {ref_c / c:.2f}× | {_mib(peaks[n])} | {diff:.1e} |")
                print(rows[-1], file=sys.stderr, flush=True)
            del fns, outputs, model
    return rows


# --------------------------------------------------------------------------------- Set5 ×2

def run_set5(args, device: torch.device) -> list[str]:
    from kxnet.degrade import degrade, modcrop
    from kxnet.io import read_image, to_tensor
    from kxnet.kernels import benchmark_kernels

    folder = Path(args.set5)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".bmp", ".jpg"))
    if not files:
        return [f"(no images in {folder})"]
    kernel = torch.from_numpy(benchmark_kernels(2, 2)[0].kernel).float()
    model = build_model(2, 2, args.stages, device, args.seed)
    fns = inference_paths(model, list(args.paths), args, (0, 0))
    totals = {n: 0.0 for n in fns}
    with torch.inference_mode():
        for f in files:
            img = read_image(f)
            hr = modcrop(to_tensor(img.rgb), 2)
            lr = degrade(hr, kernel, 2).to(device)
            for fn in fns.values():
                fn(lr)
            times = time_interleaved({n: (lambda fn=fn: fn(lr)) for n, fn in fns.items()}, args.repeats, device)
            for n in fns:
                totals[n] += _median(times[n], 0)
    rows = [f"Set5 ×2 setting 2 ({len(files)} images, {args.stages} stages), average seconds per image:"]
    rows += [f"  {n}: {totals[n] / len(files):.3f}" for n in fns]
    return rows


# -------------------------------------------------------------------------------- training

def run_training(args, device: torch.device) -> list[str]:
    from kxnet.train.loss import kxnet_loss

    scale, size, batch = args.train_scale, args.train_size, args.train_batch
    model = build_model(scale, args.setting, args.stages, device, args.seed).train()
    ref = KXNetReference.from_model(model)
    cl = KXNet(model.config).to(device)
    cl.load_state_dict(model.state_dict())
    cl = cl.to(memory_format=torch.channels_last).train()
    g = torch.Generator().manual_seed(2)
    y = torch.rand(batch, 3, size, size, generator=g).to(device)
    hr = torch.rand(batch, 3, size * scale, size * scale, generator=g).to(device)
    k = torch.rand(batch, model.config.kernel_size, model.config.kernel_size, generator=g).to(device)
    k = k / k.sum(dim=(-2, -1), keepdim=True)
    nets = {"reference": ref, "fast": model, "fast+channels_last": cl}

    def step(net):
        net.zero_grad(set_to_none=True)
        loss, _ = kxnet_loss(net(y), hr, k)
        loss.backward()
        return loss.detach()

    losses = {n: step(net) for n, net in nets.items()}           # warm-up
    times = time_interleaved({n: (lambda net=net: step(net)) for n, net in nets.items()}, args.repeats, device)
    peaks = {n: peak_memory(lambda net=net: step(net), device) if args.memory else None for n, net in nets.items()}
    grads = {}
    for n, net in nets.items():
        step(net)
        grads[n] = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    rows = [f"Training step (forward + backward, Eq. 12 loss), ×{scale}, batch {batch}, LR {size}×{size}, "
            f"{args.stages} stages:",
            "| path | wall s/step | CPU s/step | speed-up (wall) | speed-up (CPU) | peak MiB | abs Δloss | "
            "max abs Δgrad / max abs grad |",
            "|---|---|---|---|---|---|---|---|"]
    ref_t, ref_c = _median(times["reference"], 0), _median(times["reference"], 1)
    gmax = grads["reference"].abs().max().item()
    for n in nets:
        t, c = _median(times[n], 0), _median(times[n], 1)
        rows.append(f"| {n} | {t:.3f} | {c:.3f} | {ref_t / t:.2f}× | {ref_c / c:.2f}× | {_mib(peaks[n])} | "
                    f"{abs(losses[n] - losses['reference']).item():.1e} | "
                    f"{(grads[n] - grads['reference']).abs().max().item() / gmax:.1e} |")
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    ap.add_argument("--sizes", nargs="+", type=int, default=None,
                    help="LR sizes (square); default 64 on CPU (256×256 ×4 takes minutes per path there), 64 256 on GPU")
    ap.add_argument("--stages", type=int, default=19)
    ap.add_argument("--setting", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    ap.add_argument("--onnx", action="store_true", help="also time the ONNX export in onnxruntime (CPU)")
    ap.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory runs")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compile", action="store_true", help="optimize(..., compile=True)")
    ap.add_argument("--pad-channels", default=None, type=lambda v: v if v == "auto" else int(v))
    ap.add_argument("--autocast", choices=["bf16", "fp16"], default=None, help="GPU: also time optimize(autocast=…)")
    ap.add_argument("--cuda-graphs", action="store_true", help="GPU: optimize(..., cuda_graphs=True)")
    ap.add_argument("--set5", nargs="?", const=str(here.parent.parent / "shared" / "data" / "benchmarks" / "Set5"),
                    default=None, help="also the Set5 ×2 setting-2 average per image (default on GPU)")
    ap.add_argument("--no-inference", dest="inference", action="store_false")
    ap.add_argument("--train", action="store_true", help="training-step comparison (forward + backward)")
    ap.add_argument("--train-batch", type=int, default=12)
    ap.add_argument("--train-size", type=int, default=64)
    ap.add_argument("--train-scale", type=int, default=4)
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.sizes is None:
        args.sizes = [64] if device.type == "cpu" else [64, 256]
    if args.set5 is None and device.type == "cuda":
        args.set5 = str(here.parent.parent / "shared" / "data" / "benchmarks" / "Set5")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    header = [f"# KXNet speed — {device.type} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}",
              "# ran: " + "; ".join(filter(None, [
                  (f"inference scales {args.scales}, LR sizes {args.sizes}, batch 1, paths "
                   f"{list(args.paths) + (['onnxruntime'] if args.onnx else [])}") if args.inference else "",
                  f"Set5 ×2 from {args.set5}" if args.set5 else "",
                  (f"training step ×{args.train_scale} batch {args.train_batch} LR {args.train_size}"
                   if args.train else ""),
                  f"{args.stages} stages, setting {args.setting}, median of {args.repeats}"])),
              f"# OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; load average before: {_load()}"]
    print("\n".join(header), flush=True)
    t0 = time.time()
    out = []
    if args.inference:
        out += run_inference(args, device)
    if args.set5:
        out += [""] + run_set5(args, device)
    if args.train:
        out += [""] + run_training(args, device)
    print("\n".join(out))
    print(f"# load average after: {_load()}; wall {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
