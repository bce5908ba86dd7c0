"""The slope that scripts/learning_curves.py reports for a run's last third."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("learning_curves", ROOT / "scripts" / "learning_curves.py")
curves = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(curves)


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
