"""Run the two-process (torchrun) tests many times with the machine's other cores kept busy,
and count the failures — the soak behind issue #39's torchrun abort at exit.

    python scripts/torchrun_soak.py                     # every two-process test, 30 rounds
    python scripts/torchrun_soak.py --rounds 5          # time one round first
    python scripts/torchrun_soak.py --rounds 30 -k test_torchrun_two_processes_match_one
    nice python scripts/torchrun_soak.py > soak.log 2>&1 &      # in the background

Each round is one pytest run of the tests below (``OMP_NUM_THREADS=1``), on the tree this
script belongs to (its ``src`` first on ``PYTHONPATH``: copy the repository with
``git archive HEAD | tar -x -C DIR`` to soak one commit while the checkout changes); meanwhile ``--load``
busy-loop processes (default: one per core but one, so a two-core machine keeps one core
loaded) spin, started and stopped by this script. Every failure prints its test and the tail
of its report (the tests put torchrun's stderr in their assertion message); failures whose
text says ``terminate called`` are counted apart. The exit status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# every test that starts torchrun (two processes); keep in step with `grep -n torch.distributed.run tests/`
TESTS = [
    "tests/test_train.py::test_torchrun_two_processes_match_one",
    "tests/test_parallel.py::test_sr_two_processes_write_what_one_writes",
    "tests/test_parallel.py::test_benchmark_two_processes_give_the_same_cells",
    "tests/test_video.py::test_torchrun_shares_the_shots_of_one_video",
]


def start_load(count: int) -> list[subprocess.Popen]:
    """``count`` processes that spin a core each until stopped."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            for _ in range(count)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def run_round(tests: list[str], junit: Path, timeout: float) -> tuple[int, list[tuple[str, str]], float]:
    """One pytest run of ``tests``: (its exit status, [(test, report)] of the failures, seconds)."""
    # the tests of the tree this script sits in (a snapshot of it, say), not of the installed kxnet
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=path)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *tests]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)     # a hang is killed with every rank it started
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return -1, [("(round)", f"timed out after {timeout:.0f} s\n{out[-3000:]}")], time.monotonic() - t0
    finally:
        if proc.poll() is None:      # the soak itself stopped (Ctrl-C, SIGTERM): the round goes too
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    failures = []
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            for bad in list(case.findall("failure")) + list(case.findall("error")):
                name = f"{case.get('classname', '')}::{case.get('name', '')}"
                failures.append((name, (bad.get("message") or "") + "\n" + (bad.text or "")))
    if proc.returncode not in (0,) and not failures:
        failures.append(("(round)", out[-3000:]))
    return proc.returncode, failures, time.monotonic() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30, help="pytest runs of the tests (default 30)")
    ap.add_argument("--load", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                    help="busy-loop processes beside the tests (default: cores - 1)")
    ap.add_argument("-k", dest="only", action="append", default=[],
                    help="only the tests whose node id contains this (repeatable)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one round may take")
    ap.add_argument("--tail", type=int, default=1500, help="characters of each failure's report to print")
    args = ap.parse_args(argv)

    tests = [t for t in TESTS if not args.only or any(k in t for k in args.only)]
    if not tests:
        ap.error(f"-k {args.only}: no test matches")
    print(f"{args.rounds} rounds of {len(tests)} test(s), {args.load} busy-loop process(es) beside them:", flush=True)
    for t in tests:
        print(f"  {t}", flush=True)
    counts, aborts, times = Counter(), Counter(), []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # stop the load and the round on `kill` too
    load = start_load(args.load)
    try:
        with tempfile.TemporaryDirectory(prefix="torchrun_soak_") as tmp:
            for i in range(1, args.rounds + 1):
                rc, failures, seconds = run_round(tests, Path(tmp) / f"round{i}.xml", args.timeout)
                times.append(seconds)
                print(f"round {i}/{args.rounds}: {'ok' if not failures else f'{len(failures)} failed'} "
                      f"({seconds:.0f} s)", flush=True)
                for name, report in failures:
                    counts[name] += 1
                    if "terminate called" in report:
                        aborts[name] += 1
                    print(f"--- FAILED {name} (round {i}):\n{report.strip()[-args.tail:]}\n---", flush=True)
    finally:
        stop_load(load)
    total = sum(counts.values())
    print(f"\n{total} failure(s) in {args.rounds} rounds × {len(tests)} test(s) "
          f"({sum(aborts.values())} with 'terminate called'); {sum(times) / max(len(times), 1):.0f} s a round")
    for t in tests:
        key = next((n for n in counts if n.split("::")[-1] == t.split("::")[-1]), None)
        print(f"  {counts.get(key, 0):3d} failed, {aborts.get(key, 0):3d} aborted  {t}")
    for name in counts:
        if name == "(round)":
            print(f"  {counts[name]:3d} round(s) failed outside a test")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
