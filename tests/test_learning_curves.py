"""The slope that learning curves report for a run's last third (kxnet.train.curves)."""

import pytest

from kxnet.train import curves


def _val(*points):
    return [{"time": t, "psnr": p} for t, p in points]


def test_slope_over_the_last_third():
    # records at 0..0.9 h; the last third (t >= 0.6) rises 0.03 dB over 0.3 h
    val = _val((0.0, 28.0), (0.3, 28.5), (0.6, 28.60), (0.9, 28.63))
    assert curves.slope_of_last_third(val) == pytest.approx(0.1)


def test_a_falling_run_whose_last_third_holds_one_record_gets_its_last_two():
    # the old code divided 0 by 1e-9 here and reported +0.00 for a run that fell 0.06 dB
    val = _val((0.09, 31.03), (0.19, 31.00), (0.29, 30.97))
    assert curves.slope_of_last_third(val) == pytest.approx(-0.3)


def test_a_single_record_has_no_slope():
    assert curves.slope_of_last_third(_val((0.28, 28.22))) is None


def test_curves_read_cpu_time_and_extra_sets(tmp_path):
    import json

    rows = [{"kind": "train", "step": s, "cpu_s": 36.0 * s, "elapsed_s": 40.0 * s} for s in (0, 50, 100)]
    rows += [{"kind": "val", "step": s, "psnr": 26.0 + s / 100, "kernel_l1_sum1": 0.5,
              "extra": {"0": {"psnr": 28.0 + s / 50, "kernel_l1_sum1": 0.4}}} for s in (0, 100)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main = curves.curve(tmp_path)
    assert [r["time"] for r in main] == pytest.approx([0.0, 1.0]) and main[-1]["psnr"] == pytest.approx(27.0)
    clean = curves.curve(tmp_path, extra="0")
    assert clean[-1]["psnr"] == pytest.approx(30.0) and clean[-1]["kernel_l1_sum1"] == 0.4
    joined = curves.joined_curve(f"{tmp_path}+{tmp_path}")
    assert [r["step"] for r in joined] == [0, 100, 200] and joined[-1]["time"] == pytest.approx(2.0)
    table = curves.curves_table({"run": joined})
    assert "| run | 0–200 | 2.00 | 26.00 → 27.00 (27.00) | +0.00 | 0.500 |" in table
