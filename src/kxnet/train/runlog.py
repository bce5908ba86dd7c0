"""A run's logs: ``metrics.jsonl`` (every record), ``train_log.csv`` (training rows) and
TensorBoard events (when tensorboard is installed), written by rank 0 only.

A run resumed from step n first drops the records written after n (they belong to steps that
will be run again), so the logs of a resumed run read like those of an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from pathlib import Path

from ..io import atomic_write_bytes

__all__ = ["CSV_FIELDS", "RunLog", "info", "read_metrics"]

CSV_FIELDS = ["step", "loss", "image_l1", "kernel_l1", "lr", "grad_norm", "it_per_s", "samples_per_s", "elapsed_s",
              "cpu_s"]


def _line(record: dict) -> str:
    return json.dumps(record, sort_keys=True) + "\n"


def read_metrics(run_dir: str | os.PathLike, kind: str | None = None) -> list[dict]:
    """The records of a run folder's ``metrics.jsonl`` in order (only ``kind`` ones: "train" or
    "val", when given); none when the run has not logged yet."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if kind is None or r.get("kind") == kind]


def info(msg: str) -> None:
    """One line on stderr that does not break a progress bar."""
    from tqdm import tqdm

    tqdm.write(f"kxnet train: {msg}", file=sys.stderr)


class RunLog:
    """The log files of ``run_dir``, continued after ``step`` (−1: a fresh start drops them)."""

    def __init__(self, run_dir: Path, step: int, tensorboard: bool = True):
        self.run_dir = run_dir
        self._truncate(step)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # tensorboard not installed (or broken): the files still have everything
                info("tensorboard is not installed; logging to metrics.jsonl and train_log.csv only")
            else:
                self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=step + 1 if step > 0 else None)

    def _truncate(self, step: int) -> None:
        log_csv, metrics = self.run_dir / "train_log.csv", self.run_dir / "metrics.jsonl"
        if step < 0:
            for p in [log_csv, metrics, *(self.run_dir / "tb").glob("events.out.tfevents.*")]:
                p.unlink(missing_ok=True)
            return
        if log_csv.exists():
            rows = list(csv.DictReader(io.StringIO(log_csv.read_text())))
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
            w.writeheader()
            w.writerows(r for r in rows if int(r["step"]) <= step)
            atomic_write_bytes(log_csv, buf.getvalue().encode())
        if metrics.exists():
            kept = [r for r in read_metrics(self.run_dir) if r["step"] <= step]
            atomic_write_bytes(metrics, "".join(map(_line, kept)).encode())

    def record(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(_line(record))

    def train_row(self, step: int, losses: dict, lr: float, rate: float, batch: int, elapsed: float,
                  cpu_s: float) -> dict:
        """Log a training row (CSV, metrics.jsonl, TensorBoard) from the step's mean losses
        (``total``, ``image``, ``kernel``, optionally ``grad_norm``) and speed; returns it."""
        row = {"step": step, "loss": losses["total"], "image_l1": losses["image"], "kernel_l1": losses["kernel"],
               "lr": lr, "grad_norm": losses.get("grad_norm", ""), "it_per_s": round(rate, 4),
               "samples_per_s": round(rate * batch, 3), "elapsed_s": round(elapsed, 2), "cpu_s": round(cpu_s, 1)}
        path = self.run_dir / "train_log.csv"
        new = not path.exists()
        with open(path, "a", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        self.record({"kind": "train", **{k: v for k, v in row.items() if v != ""}})
        self.scalars("train", {k: row[k] for k in ("loss", "image_l1", "kernel_l1", "lr", "it_per_s", "grad_norm")},
                     row["step"])
        return row

    def val_record(self, record: dict) -> None:
        """A validation record: metrics.jsonl and TensorBoard (the scores and each stage's PSNR)."""
        self.record(record)
        self.scalars("val", {k: record[k] for k in ("psnr", "ssim", "kernel_psnr", "bicubic_psnr", "loss")},
                     record["step"])
        self.scalars("val_stage", {f"psnr_{i:02d}": v for i, v in enumerate(record["stage_psnr"], 1)}, record["step"])
        self.flush()

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
