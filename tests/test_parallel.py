"""Many processes (torchrun, Gloo on the CPU): `kxnet sr` and `kxnet benchmark` give what one
process gives, work is shared by size, and a killed run resumes without redoing what exists."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from conftest import run_in_own_session
from kxnet.models import create_model, save_model
from kxnet.parallel import shard

REPO = Path(__file__).resolve().parents[1]


def test_shard_deals_largest_first_to_the_least_loaded():
    weights = [5, 1, 1, 1, 1, 1, 4]
    parts = [shard(weights, 2, r) for r in (0, 1)]
    assert sorted(parts[0] + parts[1]) == list(range(7)) and not set(parts[0]) & set(parts[1])
    loads = [sum(weights[i] for i in p) for p in parts]
    assert abs(loads[0] - loads[1]) <= 1 and shard(weights, 1, 0) == list(range(7))


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _run(args, procs: int, timeout=300):
    """`kxnet …` in one plain process, or under torchrun with ``procs`` processes — in a session
    of its own, so that on a timeout torchrun and every rank it started are killed together
    (killing the launcher alone would leave its ranks running, orphaned)."""
    if procs == 1:
        cmd = [sys.executable, "-m", "kxnet", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "--max_restarts=0", "-m", "kxnet", *args]
    return run_in_own_session(cmd, timeout, env=_env())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(20, 28), (24, 24), (16, 30), (30, 18), (22, 22)]):
        base = rng.random((h // 4 + 1, w // 4 + 1, 3))
        img = np.asarray(PILImage.fromarray((base * 255).astype(np.uint8)).resize((w, h), PILImage.BICUBIC))
        PILImage.fromarray(img).save(d / f"p{i}.png")
    (d / "broken.png").write_text("not an image")
    torch.manual_seed(0)
    save_model(create_model("kxnet", scale=2, setting=2, stages=2), d.parent / "tiny.safetensors")
    return d


def _outputs(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_sr_two_processes_write_what_one_writes(folder, tmp_path):
    model = folder.parent / "tiny.safetensors"
    one = _run(["sr", str(folder), "-o", str(tmp_path / "one"), "--model", str(model), "--quiet"], 1)
    two = _run(["sr", str(folder), "-o", str(tmp_path / "two"), "--model", str(model), "--quiet"], 2)
    assert one.returncode == two.returncode == 1, (one.stderr[-2000:], two.stderr[-2000:])
    assert two.stderr.count("broken.png: ") == 1          # reported once, by rank 0
    assert len(_outputs(tmp_path / "two")) == 5 and _outputs(tmp_path / "one") == _outputs(tmp_path / "two")
    for name in ("p0_x2.json", "p3_x2.json"):
        a, b = (json.loads((tmp_path / d / name).read_text()) for d in ("one", "two"))
        assert a["kernel"] == b["kernel"] and a["output"]["width"] == b["output"]["width"]


def test_a_killed_run_resumes_without_redoing_what_exists(folder, tmp_path):
    model = folder.parent / "tiny.safetensors"
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "kxnet", "sr", str(folder), "-o", str(out), "--model", str(model), "--quiet"]
    proc = subprocess.Popen(cmd, env=_env(), start_new_session=True)
    deadline = time.time() + 120
    while not list(out.glob("*_x2.json")) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # complete outputs have their sidecar (written last); one cut short between the two is redone
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*_x2.png") if (out / f"{p.stem}.json").exists()}
    assert first, "the run was killed before any output was complete"
    again = _run(["sr", str(folder), "-o", str(out), "--model", str(model)], 1)
    assert again.returncode == 1 and f"{len(first)} skipped" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_x2.png") if p.name in first} == first
    assert len(list(out.glob("p*_x2.png"))) == 5


def test_benchmark_two_processes_give_the_same_cells(tmp_path):
    data = tmp_path / "benchmarks"
    (data / "Set5").mkdir(parents=True)
    chart = np.asarray(PILImage.open(REPO / "examples" / "chart_x4.png"))
    PILImage.fromarray(chart[:48, :40]).save(data / "Set5" / "a.png")
    PILImage.fromarray(chart[40:88, 50:90]).save(data / "Set5" / "b.png")
    torch.manual_seed(0)
    model = save_model(create_model("kxnet", scale=2, setting=2, stages=1), tmp_path / "tiny.safetensors")
    args = ["benchmark", "--models", str(model), "--data", str(data), "--sets", "Set5", "--noise", "0", "5",
            "--no-sweep", "--oracle"]
    one = _run(args + ["--work", str(tmp_path / "w1"), "--out", str(tmp_path / "o1")], 1)
    two = _run(args + ["--work", str(tmp_path / "w2"), "--out", str(tmp_path / "o2")], 2)
    assert one.returncode == two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    c1, c2 = (json.loads((tmp_path / o / "results.json").read_text())["cells"] for o in ("o1", "o2"))
    for a, b in zip(c1, c2):
        a.pop("seconds"), b.pop("seconds")
    assert c1 == c2 and len(c1) == 2
    # the cache the two processes wrote serves a one-process run
    again = _run(args + ["--work", str(tmp_path / "w2"), "--out", str(tmp_path / "o3")], 1)
    cells = json.loads((tmp_path / "o3" / "results.json").read_text())["cells"]
    assert again.returncode == 0 and [c["psnr"] for c in cells] == [c["psnr"] for c in c1]
