"""Learning curves of training runs: validation PSNR and kernel error against CPU-hours, and
the slope of the last third — what a run has bought so far and what more time would buy.

Each run's validation records are placed on a CPU-time axis: from the trainer's ``cpu_s``
where its log has it; for the steps of an older segment that logged only wall time
(``elapsed_s``), from that wall time scaled to an anchor ``(step, CPU seconds)`` (the CPU time
of the segment's process measured at that step). ``A+B`` joins runs that continue one another.
``extra`` picks one of ``val.extra``'s degradations instead of the main validation set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runlog import read_metrics

__all__ = ["cpu_of_steps", "curve", "curves_table", "joined_curve", "plot_curves", "slope_of_last_third"]


def slope_of_last_third(val: list[dict]) -> float | None:
    """dB per time unit over the last third of the curve (its last two records when the third
    holds fewer); None for a single record, where there is no slope to give."""
    last = val[-1]
    third = [r for r in val if r["time"] >= last["time"] * 2 / 3]
    if len(third) < 2:
        third = val[-2:]
    if len(third) < 2 or last["time"] <= third[0]["time"]:
        return None
    return (last["psnr"] - third[0]["psnr"]) / (last["time"] - third[0]["time"])


def cpu_of_steps(train: list[dict], anchor: tuple[int, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, CPU seconds) known from the train log, the wall-only segment scaled to ``anchor``."""
    steps, cpu = [], []
    scale = None
    if anchor is not None:
        step_a, cpu_a = anchor
        wall = [r["elapsed_s"] for r in train if r["step"] <= step_a and "cpu_s" not in r]
        scale = cpu_a / max(wall) if wall else None
    for r in train:
        if "cpu_s" in r:
            steps.append(r["step"])
            cpu.append(r["cpu_s"])
        elif scale is not None:
            steps.append(r["step"])
            cpu.append(r["elapsed_s"] * scale)
    return np.array([0] + steps, dtype=float), np.array([0.0] + cpu)


def curve(run: Path, anchor=None, clock: str = "cpu", extra: str | None = None) -> list[dict]:
    """The run's validation records, each with ``time``: CPU-hours, or wall minutes of training
    (``clock="wall"``: a GPU run, whose host CPU time says nothing of its cost). With ``extra``,
    the records carry that extra set's ``psnr`` and ``kernel_l1_sum1`` instead of the main set's."""
    train, val = read_metrics(run, "train"), read_metrics(run, "val")
    if extra is not None:
        val = [dict(r, **r["extra"][extra]) for r in val if extra in (r.get("extra") or {})]
    if clock == "wall":
        steps = np.array([0] + [r["step"] for r in train], dtype=float)
        time_s = np.array([0.0] + [r["elapsed_s"] for r in train])
        scale = 60.0
    else:
        steps, time_s = cpu_of_steps(train, anchor)
        scale = 3600.0
    return [dict(r, time=float(np.interp(r["step"], steps, time_s)) / scale) for r in val if r["step"] <= steps[-1]]


def joined_curve(spec: str, anchors: dict | None = None, clock: str = "cpu", extra: str | None = None) -> list[dict]:
    """``A+B+…``: runs that continue one another (B started from A's final weights), on one axis."""
    out: list[dict] = []
    for part in spec.split("+"):
        run = Path(part)
        val = curve(run, (anchors or {}).get(run.resolve()), clock, extra)
        if out:   # B's step 0 is A's last record again
            step0, t0 = out[-1]["step"], out[-1]["time"]
            val = [dict(r, step=r["step"] + step0, time=r["time"] + t0) for r in val if r["step"] > 0]
        out += val
    return out


def curves_table(data: dict[str, list[dict]], unit: str = "CPU-h") -> str:
    """A markdown table: per run its steps, time, PSNR first → last (best), the slope of the
    last third and the last kernel error."""
    lines = [f"| run | steps | {unit} | val PSNR first → last (best) | dB per {unit}, last third | kernel L1 last |",
             "|---|---|---|---|---|---|"]
    for label, val in data.items():
        last = val[-1]
        slope = slope_of_last_third(val)
        kl1 = last.get("kernel_l1_sum1")
        lines.append(f"| {label} | {val[0]['step']}–{last['step']} | {last['time']:.2f} | {val[0]['psnr']:.2f} → "
                     f"{last['psnr']:.2f} ({max(r['psnr'] for r in val):.2f}) | "
                     f"{'–' if slope is None else f'{slope:+.2f}'} | "
                     f"{'–' if kl1 is None else f'{kl1:.3f}'} |")
    return "\n".join(lines) + "\n"


def plot_curves(data: dict[str, list[dict]], path: Path, axis: str = "CPU-hours of this run (1 thread)") -> None:
    """PSNR and kernel error side by side (matplotlib, the ``bench`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the legend goes below, where it hides no curve
    fig, (ax, axk) = plt.subplots(1, 2, figsize=(10, 4))
    for label, val in data.items():
        line, = ax.plot([r["time"] for r in val], [r["psnr"] for r in val], marker=".", label=label)
        kern = [r for r in val if r.get("kernel_l1_sum1") is not None]
        axk.plot([r["time"] for r in kern], [r["kernel_l1_sum1"] for r in kern], marker=".", color=line.get_color())
    ax.set_ylabel("validation PSNR (dB, Y)")
    axk.set_ylabel("kernel unit-sum L1 (0 exact, 2 disjoint)")
    for a in (ax, axk):
        a.set_xlabel(axis)
        a.grid(alpha=0.3)
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1, fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
