"""Every bad argument or input of the ``kxnet`` command: exactly one line on stderr naming the
problem, exit code 2, nothing written.

Each invocation runs as ``python -m kxnet`` in a subprocess, so what is checked is what a user
sees: argparse's usage block, or a Python warning (Pillow's two-line DecompressionBombWarning),
would show here as extra lines. Argument errors stop before any model is loaded (a fraction of a
second each); the few inputs that get as far as reading the image use a tiny ×2 model.
"""

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from kxnet.models import create_model, save_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    return save_model(create_model("kxnet", scale=2, setting=2, stages=2),
                      tmp_path_factory.mktemp("model") / "tiny_x2.safetensors")


def _good_png(path: Path, w: int = 16, h: int = 12) -> Path:
    arr = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    PILImage.fromarray(arr).save(path)
    return path


def _claims_size(src: Path, dst: Path, w: int, h: int) -> Path:
    """A copy of a small PNG whose IHDR claims ``w``×``h`` (CRC fixed, so only the size lies)."""
    data = bytearray(src.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    dst.write_bytes(bytes(data))
    return dst


# name → (argv with {good}, {model}, {tmp} placeholders, a word the one line must name)
CASES = {
    "sr-bad-scale": (["sr", "{good}", "--scale", "5"], "--scale"),
    "sr-unknown-option": (["sr", "{good}", "--frobnicate"], "--frobnicate"),
    "sr-missing-input": (["sr"], "INPUT"),
    "sr-bad-tile": (["sr", "{good}", "--tile", "abc"], "--tile"),
    "sr-negative-tile": (["sr", "{good}", "--tile", "-3", "--model", "{model}"], "tile"),
    "sr-bad-format": (["sr", "{good}", "--format", "gif"], "--format"),
    "sr-unknown-model": (["sr", "{good}", "--model", "no_such_model"], "no_such_model"),
    "sr-missing-file": (["sr", "{tmp}/nowhere.png", "--model", "{model}"], "nowhere.png"),
    "sr-not-an-image": (["sr", "{tmp}/text.png", "--model", "{model}"], "text.png"),
    "sr-bomb-header": (["sr", "{tmp}/huge.png", "--model", "{model}"], "huge.png"),
    "no-command": ([], "COMMAND"),
    "unknown-command": (["upscale", "{good}"], "upscale"),
    "eval-missing-data": (["eval"], "--data"),
    "benchmark-unknown-option": (["benchmark", "--frobnicate"], "--frobnicate"),
    "benchmark-missing-data": (["benchmark", "--models", "{model}"], "--data"),
    "train-unknown-option": (["train", "--frobnicate"], "--frobnicate"),
    "convert-missing-output": (["convert", "{model}"], "--output"),
    "export-bad-size": (["export", "--size", "64", "x"], "--size"),
    "synth-bad-scale": (["synth", "--hr", "{tmp}", "--setting", "2", "--scale", "8", "--out", "{tmp}/o"], "--scale"),
    "models-unknown-option": (["models", "--frobnicate"], "--frobnicate"),
    "demo-bad-port": (["demo", "--port", "http"], "--port"),
}


def _kxnet(argv, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "kxnet", *argv], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_invocation_is_one_line_exit_2_and_writes_nothing(case, model_file, tmp_path):
    good = _good_png(tmp_path / "good.png")
    (tmp_path / "text.png").write_text("this is not a picture")
    _claims_size(good, tmp_path / "huge.png", 12000, 12000)   # over Pillow's warning limit (89 Mpx)
    argv, named = CASES[case]
    argv = [a.format(good=good, model=model_file, tmp=tmp_path) for a in argv]
    if argv[:1] == ["sr"]:
        argv += ["-o", str(tmp_path / "out")]
    before = _files(tmp_path)
    r = _kxnet(argv, cwd=tmp_path)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].strip(), r.stderr
    assert lines[0].startswith("kxnet") and "error: " in lines[0] and named in lines[0], lines[0]
    assert "usage:" not in r.stderr and "Traceback" not in r.stderr and "Warning" not in r.stderr
    assert _files(tmp_path) == before            # no output folder, no sidecar, nothing
    if case == "sr-bad-scale":
        assert lines[0] == "kxnet sr: error: --scale: invalid choice: 5 (choose from 2, 3, 4)"
    if case == "sr-bomb-header":
        assert "144,000,000 pixels" in lines[0]


@pytest.mark.parametrize("argv", [["--help"], ["sr", "--help"], ["demo", "-h"]])
def test_help_is_still_the_full_help(argv, tmp_path):
    r = _kxnet(argv, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("usage: kxnet") and len(r.stdout.splitlines()) > 5
