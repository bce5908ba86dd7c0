"""Threads or processes: the same job run as 1 process × N threads and as N processes × 1 thread.

    python benchmarks/scale_out.py                       # Set14 ×4 cell and RealSRSet (20 photos), 2 cores
    python benchmarks/scale_out.py --cores 2 --jobs cell --set Set5

Two jobs, each run whole in a fresh process tree and timed by the wall clock:

* ``cell`` — ``kxnet benchmark`` on one complete cell (``--set``, setting 2, σn 0, the model's
  scale). The set is synthesised once beforehand and every run starts without cached cells,
  so each run scores every (image, kernel) pair;
* ``folder`` — ``kxnet sr`` on a folder of photos (``--photos``) into an empty output folder.

Configurations: ``1×N`` (one process, ``OMP_NUM_THREADS=N``) and ``N×1`` (``torchrun
--standalone --nproc_per_node=N``, one thread a process), N = ``--cores``. Before the timed runs
one untimed run of each job fills the compiled-graph cache of the OpenVINO backend, which both
configurations then share (``--no-warm-up JOB`` skips it where the job runs on PyTorch). The outputs of the two configurations are compared (the cells'
PSNR/SSIM, the photos byte for byte). The machine should be otherwise idle: the load average is
printed before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def _run(cmd: list[str], threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return seconds


def _launcher(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "kxnet"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "kxnet"]


def _cells(out: Path) -> list[tuple]:
    cells = json.loads((out / "results.json").read_text())["cells"]
    return sorted((c["key"], round(c["psnr"], 6), round(c["ssim"], 6)) for c in cells)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.suffix == ".png"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--jobs", nargs="+", default=["cell", "folder"], choices=["cell", "folder"])
    ap.add_argument("--model", default="kxnet_x4.setting2")
    ap.add_argument("--set", default="Set14")
    ap.add_argument("--photos", type=Path, default=DATA / "real" / "RealSRSet")
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "openvino"])
    ap.add_argument("--no-warm-up", nargs="+", default=[], choices=["cell", "folder"],
                    help="jobs that run on PyTorch (no compiled graphs to cache) need no untimed first run")
    args = ap.parse_args()

    n = args.cores
    configs = [(1, n), (n, 1)]
    work = Path(tempfile.mkdtemp(prefix="kxnet_scale_out_"))
    print(f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load {os.getloadavg()}")
    rows = []
    try:
        for job in args.jobs:
            outputs = {}
            warm = [] if job in args.no_warm_up else [(1, n)]
            for i, (procs, threads) in enumerate(warm + configs, start=1 - len(warm)):   # i 0: untimed
                out = work / f"{job}_{i}"
                if job == "cell":
                    shutil.rmtree(work / "cache" / "cells", ignore_errors=True)
                    cmd = _launcher(procs) + ["benchmark", "--models", args.model, "--sets", args.set,
                                              "--noise", "0", "--no-sweep", "--backend", args.backend,
                                              "--data", str(DATA / "benchmarks"), "--work", str(work / "cache"),
                                              "--out", str(out)]
                else:
                    cmd = _launcher(procs) + ["sr", str(args.photos), "-o", str(out), "--model", args.model,
                                              "--backend", args.backend, "--quiet"]
                seconds = _run(cmd, threads)
                if i:
                    outputs[(procs, threads)] = _cells(out) if job == "cell" else _digests(out)
                    rows.append((job, f"{procs}×{threads}", seconds))
                    print(f"{job:6} {procs} process(es) × {threads} thread(s): {seconds:8.1f} s", flush=True)
            same = outputs[configs[0]] == outputs[configs[1]]
            print(f"{job:6} outputs of {configs[0][0]}×{configs[0][1]} and {configs[1][0]}×{configs[1][1]} "
                  f"{'identical' if same else 'DIFFER'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload {os.getloadavg()}")
    print(f"| job | 1 process × {n} threads | {n} processes × 1 thread | ratio |")
    print("|---|---|---|---|")
    for job in args.jobs:
        t = {c: s for j, c, s in rows if j == job}
        a, b = t[f"1×{n}"], t[f"{n}×1"]
        print(f"| {job} | {a:.1f} s | {b:.1f} s | {a / b:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
