"""The contract every method keeps (issue #40, part 2), checked for each registered architecture
and for a toy method defined in this file alone.

For every method (``architectures()``, each built with its descriptor's ``tiny(scale)``): it
builds at each of its scales and its forward gives a finite :class:`~kxnet.models.SROutput` of
the right shapes; its weights survive our safetensors file and the authors' ``.pth`` layout
(recognised by content); its static-shape export (ONNX) and its compiled engine (OpenVINO)
give the model's answers where the descriptor declares them; it trains two steps through the
real :class:`~kxnet.train.Trainer` and is validated, its exported weights are the trained ones,
and a run stopped after the first step and resumed from its checkpoint is the uninterrupted
run, bit for bit. What is particular to a method (the authors'
parity, its maths) stays in ``test_<method>.py``.

The toy method (a 1-layer upscaler with an L1 objective, a static-shape export and an OpenVINO
engine) is registered through the public API for each test that uses it and unregistered after:
what a new method needs is what it declares here (docs/adding-a-method.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import write_hr_images
from kxnet.models import (
    Architecture,
    Objective,
    SROutput,
    architecture,
    architecture_of,
    architectures,
    create_model,
    is_model,
    load_model,
    register_architecture,
    save_model,
    unregister_architecture,
)
from kxnet.models.config import MethodConfig
from kxnet.train import Trainer, build_model, config_from_dict
from kxnet.train.loss import objective_for

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- the toy method

@dataclass
class ToyConfig(MethodConfig):
    """Only the scale shapes it."""


class Toy(nn.Module):
    """One convolution to s² colour planes, shuffled into the HR image; estimates no kernel."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.body = nn.Conv2d(3, 3 * config.scale ** 2, 3, padding=1)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, y: torch.Tensor, kernel=None) -> SROutput:
        return SROutput(F.pixel_shuffle(self.body(y), self.scale), None, [], [])


def toy(scale: int = 2, setting: int = 2) -> Toy:
    return Toy(ToyConfig(scale=scale, setting=setting))


def _toy_config(state: dict) -> ToyConfig:
    scale = math.isqrt(state["body.weight"].shape[0] // 3)
    if 3 * scale * scale != state["body.weight"].shape[0]:
        raise ValueError(f"{state['body.weight'].shape[0]} output planes match no scale")
    return ToyConfig(scale=scale, setting=2)


class _ToyGraph(nn.Module):
    """The toy's static-shape forward (it has no data-dependent shapes): ``lr → sr``."""

    def __init__(self, model: Toy):
        super().__init__()
        self.body, self.scale = model.body, model.scale

    def forward(self, y):
        return F.pixel_shuffle(self.body(y), self.scale)


class _ToyEngine:
    """What OpenVINO needs of the toy: one blind graph per size, nothing kept in f32."""

    def __init__(self, model: Toy):
        self.model, self.scale, self.kernel_size = model, model.scale, model.config.kernel_size

    def check(self, h, w, kernel_size, blind):
        pass

    def condition(self, kernel, b):
        raise ValueError("the toy takes no kernel")

    def graph(self, size, blind, kernel_size):
        return _ToyGraph(self.model), (torch.rand(1, 3, *size),)

    def output(self, sr, condition):
        return SROutput(sr, None, [], [])

    def keep_precise(self, model):
        pass


def _l1(output, batch, weights):
    loss = F.l1_loss(output.sr.float(), batch["hr"].float())
    return loss, {"total": loss.detach(), "image": loss.detach(), "kernel": loss.new_zeros(())}


TOY = Architecture(
    name="toy", model_class=Toy, config_class=ToyConfig, factories=(toy,),
    detect=lambda state: set(state) == {"body.weight", "body.bias"}, infer_config=_toy_config,
    kernel_input=None, estimates_kernel=False, objective=Objective(_l1),
    export=lambda model, size, blind=True, kernel_size=None: _ToyGraph(model), fast_engine=_ToyEngine,
    tiny=lambda scale: {"scale": scale}, label="Toy",
)

NAMES = [a.name for a in architectures()]


@pytest.fixture(params=[*NAMES, "toy"])
def arch(request):
    """Each listed method, and the toy registered for the one test (unregistered after)."""
    if request.param != "toy":
        yield architecture(request.param)
        return
    register_architecture(TOY)
    try:
        yield TOY
    finally:
        unregister_architecture("toy")


def test_the_toy_is_registered_only_while_a_test_holds_it():
    assert "toy" not in NAMES and not is_model("toy")
    register_architecture(TOY)
    try:
        assert architecture("toy") is TOY and architecture_of(create_model("toy")) is TOY
        with pytest.raises(ValueError, match="already registered"):
            register_architecture(TOY)
    finally:
        unregister_architecture("toy")
    assert [a.name for a in architectures()] == NAMES and not is_model("toy")
    with pytest.raises(ValueError, match="unknown model 'toy'"):
        create_model("toy")


# --------------------------------------------------------------------------- the contract

def _tiny(arch: Architecture, scale: int, seed: int = 0) -> nn.Module:
    """The method's tiny model at ``scale``, every tensor nudged off its initial value (so a
    wrong copy cannot pass by luck), in eval mode."""
    torch.manual_seed(seed)
    model = create_model(arch.name, **arch.tiny(scale))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def _inputs(arch: Architecture, model: nn.Module, h: int = 12, w: int = 10, seed: int = 1) -> tuple:
    """``(lr, kwargs)``: an LR image, and the kernel (and σ) a method that is not blind needs."""
    lr = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))
    if arch.blind:
        return lr, {}
    p = model.config.kernel_size
    kwargs = {"kernel": torch.full((p, p), 1.0 / (p * p))}
    if arch.noise_input:
        kwargs["sigma"] = torch.tensor([5.0 / 255])
    return lr, kwargs


def test_every_method_declares_what_the_contract_needs(arch):
    assert arch.tiny is not None, f"{arch.name}: the descriptor needs tiny(scale)"
    assert arch.factories and arch.factories[0].__name__ == arch.name
    assert arch.scales and all(s in (2, 3, 4) for s in arch.scales)


def test_builds_at_each_scale_and_forwards(arch):
    for scale in arch.scales:
        model = _tiny(arch, scale)
        assert type(model) is arch.model_class and architecture_of(model) is arch
        assert model.config.scale == model.scale == scale
        lr, kwargs = _inputs(arch, model)
        with torch.no_grad():
            out = model(lr, **kwargs)
        assert isinstance(out, SROutput)
        assert out.sr.shape == (1, 3, 12 * scale, 10 * scale) and torch.isfinite(out.sr).all()
        if arch.estimates_kernel:
            p = model.config.kernel_size
            assert out.kernel.shape == (1, p, p) and torch.isfinite(out.kernel).all()
        if arch.regional:
            assert out.stage_kernels, f"{arch.name} is regional: its estimate is per-stage kernels"


def test_weights_survive_our_file_and_the_authors_layout(arch, tmp_path):
    model = _tiny(arch, 2)
    lr, kwargs = _inputs(arch, model)
    loaded = load_model(save_model(model, tmp_path / "m.safetensors"))
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    with torch.no_grad():
        want, got = model(lr, **kwargs), loaded(lr, **kwargs)
    assert torch.equal(want.sr, got.sr)
    if not list(model.parameters()):
        return   # no weights: nothing to recognise in a file
    torch.save(model.state_dict(), tmp_path / "m.pth")
    authors = load_model(tmp_path / "m.pth")   # recognised by its keys, its config read from shapes
    assert architecture_of(authors) is arch
    ours, theirs = model.state_dict(), authors.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_export_and_fast_engine_where_declared(arch, tmp_path):
    if arch.export is None and arch.fast_engine is None:
        pytest.skip(f"{arch.name} declares neither an export nor a compiled engine")
    model = _tiny(arch, 2)
    lr, _ = _inputs(arch, model)
    with torch.no_grad():
        want = model(lr)
    if arch.export is not None:
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
        from kxnet.export import export_onnx

        report = export_onnx(model, tmp_path / "m.onnx", size=tuple(lr.shape[-2:]), lr=lr)
        assert report.max_abs_diff_sr < 1e-4
        assert (report.max_abs_diff_kernel is not None) == arch.estimates_kernel
        if arch.estimates_kernel:
            assert report.max_abs_diff_kernel < 1e-5
    if arch.fast_engine is not None:
        pytest.importorskip("openvino")
        from kxnet.inference.openvino import OpenVINORunner

        runner = OpenVINORunner(model, precision="f32", threads=1, cache_dir=tmp_path / "cache")
        got = runner(lr)
        assert (got.sr - want.sr).abs().max().item() < 1e-4
        if arch.kernel_input is not None:   # a tile given the crop's estimate, as the upscaler runs it
            estimate = want.condition if want.condition is not None else want.stage_kernels
            other = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(2))
            with torch.no_grad():
                expected = model(other, kernel=estimate)
            assert (runner(other, kernel=estimate).sr - expected.sr).abs().max().item() < 1e-4


def _recipe(arch: Architecture, hr, run_dir) -> dict:
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in arch.tiny(2).items()}
    return {
        "model": {"name": arch.name, **args},
        "data": {"hr_dirs": [str(hr)], "lr_patch": 12, "workers": 0, "cache_mb": 16},
        "train": {"iterations": 2, "batch": 2, "lr": 1e-4, "milestones": [1], "log_every": 1, "threads": 1,
                  "deterministic": True, "tensorboard": False},
        "val": {"hr_dir": str(hr), "every": 2, "images": ["0"], "loss_samples": 2, "noise": 5.0},
        "checkpoint": {"every": 1, "keep_last": 2},
        "run_dir": str(run_dir), "name": f"contract_{arch.name}",
    }


def _run(recipe: dict, resume=None, stop_at=None):
    with Trainer(config_from_dict(recipe), resume=resume, progress=False) as trainer:
        summary = trainer.fit(stop_at=stop_at)
        rows = [(r["step"], r["loss"], r["image_l1"], r["kernel_l1"], r["lr"]) for r in trainer.history]
        grads = {n: p.grad is not None for n, p in trainer.model.named_parameters() if p.requires_grad}
        return summary, rows, trainer.model.state_dict(), grads


@pytest.fixture(scope="module")
def hr(tmp_path_factory):
    return write_hr_images(tmp_path_factory.mktemp("hr"))


def test_trains_two_steps_and_resumes_exactly(arch, hr, tmp_path):
    if arch.objective is None:
        with pytest.raises(ValueError, match="no training objective"):
            objective_for(_tiny(arch, 2))
        pytest.skip(f"{arch.name} is not trained here")
    recipe = _recipe(arch, hr, tmp_path / "full")
    cfg = config_from_dict(recipe)
    torch.manual_seed(cfg.train.seed)   # as the Trainer builds it
    initial = build_model(cfg).state_dict()
    summary, rows, trained, grads = _run(recipe)
    assert summary["finished"] and [r[0] for r in rows] == [1, 2]
    val = summary["last_val"]   # blind, or given the true kernels and σ where the method is not blind
    assert math.isfinite(val["psnr"]) and val["loss"] > 0
    assert (val["kernel_psnr"] is not None) == (arch.blind and arch.estimates_kernel)
    assert all(math.isfinite(v) for r in rows for v in r[1:]) and all(r[1] > 0 for r in rows)
    changed = [k for k in trained if trained[k].is_floating_point() and not torch.equal(trained[k], initial[k])]
    assert changed, "two steps changed no weight"
    # DDP is told to look for parameters without a gradient exactly where the method has some
    assert all(grads.values()) != arch.find_unused_parameters, \
        sorted(n for n, g in grads.items() if not g)
    exported = load_model(summary["weights"])
    assert type(exported) is arch.model_class
    assert all(torch.equal(v, trained[k]) for k, v in exported.state_dict().items())

    # stopped after step 1, resumed from its checkpoint by a fresh Trainer: the same run
    split = tmp_path / "split"
    first, rows1, _, _ = _run(_recipe(arch, hr, split), stop_at=1)
    assert first["step"] == 1 and not first["finished"]
    second, rows2, resumed, _ = _run(_recipe(arch, hr, split), resume=split)
    assert second["finished"] and rows1 + rows2 == rows
    assert resumed.keys() == trained.keys() and all(torch.equal(resumed[k], trained[k]) for k in trained)
