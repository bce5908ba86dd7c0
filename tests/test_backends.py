"""The engine that runs the network (kxnet.inference.backends): the choice `auto` makes, forcing
one, and one answer to bad input whichever runs."""

import numpy as np
import pytest
import torch

from conftest import perturbed_kxnet
from kxnet.inference import backends
from kxnet.inference.upscaler import Upscaler
from kxnet.io import Image
from kxnet.metrics import kernel_l1
from kxnet.models import resolve


@pytest.fixture
def kx():
    return resolve(perturbed_kxnet(2, 2))


def _force(monkeypatch, bf16: bool, openvino: bool):
    import kxnet.hardware
    import kxnet.inference.openvino

    monkeypatch.setattr(kxnet.hardware, "cpu_has_bf16", lambda: bf16)
    monkeypatch.setattr(kxnet.inference.openvino, "openvino_available", lambda: openvino)


def test_auto_keeps_pytorch_without_bf16_or_without_the_extra(kx, monkeypatch):
    for bf16, ov in ((False, True), (True, False), (False, False)):
        _force(monkeypatch, bf16, ov)
        chosen = backends.choose(kx, "auto", "cpu")
        assert chosen.name == "torch" and chosen.module is kx.runner and chosen.precision == "fp32 optimized"
    # the optimised path is built once per resolved model, whoever asks
    assert backends.choose(kx, "torch", "cpu").module is kx.runner


def test_auto_picks_openvino_bf16_on_a_bf16_cpu(kx, monkeypatch):
    pytest.importorskip("openvino")
    _force(monkeypatch, True, True)
    chosen = backends.choose(kx, "auto", "cpu")
    # what auto asks OpenVINO for; what it compiles is the CPU's affair (test_openvino)
    assert chosen.name == "openvino" and chosen.module.requested_precision == "bf16"
    assert chosen.describe()["name"] == "openvino"


def test_hidden_bf16_makes_the_machine_a_laptop_without_it(kx, monkeypatch):
    import kxnet.hardware as hw

    monkeypatch.setenv(hw.HIDE_ENV, "bf16, amx")
    assert not hw.cpu_has_bf16() and not hw.cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"}
    assert "amx_bf16" not in hw.cpu_name()
    assert backends.choose(kx, "auto", "cpu").name == "torch"
    from kxnet.train.runtime import Runtime
    assert Runtime.autocast_dtype(type("CPU", (), {"device": torch.device("cpu")})(), "auto") is None
    monkeypatch.setenv(hw.HIDE_ENV, "avx512_bf16")      # one flag by name
    assert "avx512_bf16" not in hw.cpu_flags() and "avx512_bf16" in hw.hidden_flags()


def test_openvino_runs_as_many_threads_as_pytorch(kx, monkeypatch):
    # under torchrun (OMP_NUM_THREADS=1 a process) OpenVINO must not spread over every core
    pytest.importorskip("openvino")
    import torch

    _force(monkeypatch, True, True)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert backends.choose(kx, "openvino", "cpu").module.requested_threads == 1
        assert backends.choose(kx, "openvino", "cpu", threads=2).module.requested_threads == 2
    finally:
        torch.set_num_threads(before)


def test_forcing_a_backend_that_cannot_run_says_why(monkeypatch):
    from kxnet.models import create_model

    dcls = resolve(create_model("dcls", scale=2, setting=2, nf=16, nb=1, ng=1, input_para=8))
    with pytest.raises(ValueError, match="KXNet models only"):
        backends.choose(dcls, "openvino", "cpu")
    assert backends.choose(dcls, "auto", "cpu").name == "torch"       # auto never fails
    _force(monkeypatch, True, False)
    with pytest.raises(ValueError, match="pip install 'kxnet\\[openvino\\]'"):
        backends.choose(resolve(perturbed_kxnet(2, 2)), "openvino", "cpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        backends.choose(resolve(perturbed_kxnet(2, 2)), "fast", "cpu")


def test_every_backend_gives_one_answer_to_bad_input(kx):
    pytest.importorskip("openvino")
    ups = [Upscaler(kx, "cpu", backend=b) for b in ("torch", "openvino")]
    assert [u.backend["name"] for u in ups] == ["torch", "openvino"]
    img = Image(rgb=np.random.default_rng(0).random((20, 24, 3)).astype(np.float32))
    for bad in (np.ones((4, 4)), np.ones((13, 13)), np.full((3, 3), np.nan)):
        messages = set()
        for up in ups:
            with pytest.raises(ValueError) as e:
                up.run(img, kernel=bad)
            messages.add(str(e.value))
        assert len(messages) == 1, messages
    # and the same picture and kernel, to the cost of the precision OpenVINO compiled: a blind
    # run is not padded to a multiple of backends.SNAP (edge replication moved this estimate to
    # 39 dB / kernel L1 0.04 when it was), so its graph has the photo's own size
    b, kb, ib, _ = ups[1].run(img)
    a, ka, ia, _ = ups[0].run(img)
    assert ia["backend"]["name"] == "torch" and ib["backend"]["name"] == "openvino"
    psnr = 10 * np.log10(1 / float(np.mean((a.rgb - b.rgb) ** 2)))
    # measured (2-stage ×2 KXNet): f32 147.7 dB, kernel L1 4e-7 (float32 rounding); bf16 58.4 dB,
    # 4e-4 (the X-prox nets' bf16). A wiring fault (a stage's kernel, the crop) costs tens of dB.
    least, most = {"f32": (120, 1e-5), "bf16": (50, 2e-3)}[ib["backend"]["precision"]]
    assert psnr > least and kernel_l1(ka, kb) < most, (ib["backend"], psnr, kernel_l1(ka, kb))


def test_benchmark_runs_on_the_backend_asked_and_says_so(tmp_path):
    pytest.importorskip("openvino")
    import json
    import shutil
    from pathlib import Path

    from kxnet.cli import main
    from kxnet.models import save_model

    data = tmp_path / "benchmarks"
    (data / "Set5").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "examples" / "chart_x4.png", data / "Set5" / "chart.png")
    weights = save_model(perturbed_kxnet(2, 1), tmp_path / "tiny.safetensors")
    common = ["benchmark", "--models", str(weights), "--data", str(data), "--sets", "Set5", "--noise", "0",
              "--no-sweep", "--work", str(tmp_path / "work")]
    assert main(common + ["--backend", "openvino", "--out", str(tmp_path / "ov")]) == 0
    assert main(common + ["--out", str(tmp_path / "auto")]) == 0      # no recorded cost: PyTorch
    ov, auto = (json.loads((tmp_path / d / "results.json").read_text())["cells"][0] for d in ("ov", "auto"))
    assert ov["backend"].startswith("openvino-") and auto["backend"] == "torch"
    # the same cell to the compiled precision's cost: measured −0.0001 dB in f32 (the graph's
    # 32-px padding), −0.005 dB in bf16 — within the 0.01 dB that --backend auto allows a model
    assert abs(ov["psnr"] - auto["psnr"]) < {"openvino-f32": 0.001, "openvino-bf16": 0.01}[ov["backend"]], ov
    assert "(openvino-" in (tmp_path / "ov" / "results.md").read_text()
    assert len(list(next((tmp_path / "work" / "cells").iterdir()).glob("*.json"))) == 2   # cached apart


def test_benchmark_auto_takes_the_fast_backend_only_where_the_manifest_measured_it_close(monkeypatch):
    from kxnet.inference.benchmark import fast_backend_allowed
    from kxnet.models import zoo

    entries = zoo.read_manifest()
    costs = {name: e.notes.get("fast_backend_cost_db") for name, e in entries.items()}
    if not any(costs.values()):
        pytest.skip("no shipped weights with a measured fast-backend cost")
    _force(monkeypatch, True, True)
    for name, cost in costs.items():
        close = bool(cost) and max(abs(v) for v in cost.values()) <= zoo.FAST_BACKEND_COST_DB
        assert fast_backend_allowed(resolve(name)) == close, name
        assert not fast_backend_allowed(resolve(name), "cuda"), name       # OpenVINO runs on the CPU only
    assert not fast_backend_allowed(resolve(perturbed_kxnet(2, 2)))       # no entry, nothing measured
    _force(monkeypatch, False, True)
    assert not any(fast_backend_allowed(resolve(name)) for name in costs)


def test_auto_takes_int8_only_without_bf16_and_for_a_recipe_measured_close(kx, monkeypatch):
    pytest.importorskip("openvino")
    from kxnet.models import zoo

    entries = zoo.read_manifest()
    with_recipe = [n for n, e in entries.items() if e.int8]
    if not with_recipe:
        pytest.skip("no shipped model has an int8 recipe")
    _force(monkeypatch, False, True)
    for name in with_recipe:
        chosen = backends.choose(resolve(name), "auto", "cpu")
        expected = "int8" if zoo.int8_close(entries[name]) else "fp32 optimized"
        assert chosen.precision == expected, name
        assert backends.choose(resolve(name), "auto", "cuda").name == "torch"       # OpenVINO is CPU only
        assert backends.choose(resolve(name), "openvino-int8", "cpu").precision == "int8"
    assert backends.choose(kx, "auto", "cpu").name == "torch"              # no entry, no recipe
    with pytest.raises(ValueError, match="no int8 recipe"):
        backends.choose(kx, "openvino-int8", "cpu")
    _force(monkeypatch, True, True)                                         # bf16 wins where it runs
    assert backends.choose(resolve(with_recipe[0]), "auto", "cpu").module.requested_precision == "bf16"
    _force(monkeypatch, False, False)                                       # no extra: PyTorch
    assert backends.choose(resolve(with_recipe[0]), "auto", "cpu").name == "torch"


def test_int8_cost_rule_reads_every_measured_cell():
    from kxnet.models.zoo import INT8_COST_DB, WeightsEntry, int8_close

    def entry(costs):
        return WeightsEntry("m", "m.safetensors", "0" * 64, 1, "kxnet", {}, 1, "fp16", 1, "", "",
                            int8=None if costs is None else {"file": "m.int8.safetensors", "sha256": "", "cost_db": costs})

    assert int8_close(entry({"a": -0.01, "b": INT8_COST_DB}))
    assert not int8_close(entry({"a": -0.01, "b": -INT8_COST_DB - 0.001}))
    assert not int8_close(entry({})) and not int8_close(entry(None)) and not int8_close(None)


def test_the_cli_offers_every_backend_and_no_other():
    from kxnet.cli import BACKEND_CHOICES

    assert BACKEND_CHOICES == list(backends.BACKENDS)
