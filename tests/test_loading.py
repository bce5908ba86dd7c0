"""Weights in and out: our safetensors, the authors' .pth layouts (docs/kxnet.md, "Weights layout"), clear failures."""

import json

import pytest
import torch
from safetensors import safe_open

from kxnet.io import file_sha256
from kxnet.models import KXNetConfig, ModelLoadError, convert_checkpoint, create_model, load_model, save_model
from kxnet.models import loading
from conftest import perturbed_kxnet


@pytest.fixture(scope="module")
def model():
    """A ×2 setting-1 (p = 21) model with every tensor randomised."""
    return perturbed_kxnet(2, 1)


@pytest.fixture(scope="module")
def lr():
    return torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(1))


def _same_outputs(a, b, y, **tol):
    with torch.no_grad():
        oa, ob = a(y), b(y)
    torch.testing.assert_close(ob.sr, oa.sr, **(tol or dict(rtol=0, atol=0)))
    torch.testing.assert_close(ob.kernel, oa.kernel, **(tol or dict(rtol=0, atol=0)))


def test_save_load_round_trip(model, lr, tmp_path):
    path = save_model(model, tmp_path / "m.safetensors", extra_metadata={"recipe": {"iters": 10}})
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "kxnet" and json.loads(meta["recipe"]) == {"iters": 10}
    assert KXNetConfig.from_dict(json.loads(meta["config"])) == model.config
    loaded = load_model(path)
    assert not loaded.training and loaded.config == model.config
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    _same_outputs(model, loaded, lr)


def test_fp16_round_trip(model, lr, tmp_path):
    path = save_model(model, tmp_path / "half.safetensors", storage="fp16")
    with safe_open(str(path), "pt") as f:
        assert f.get_tensor("kernel_map").dtype == torch.float16
    loaded = load_model(path)
    assert loaded.kernel_map.dtype == torch.float32
    _same_outputs(model, loaded, lr, rtol=0, atol=2e-2)


def test_unknown_storage_is_refused(model, tmp_path):
    with pytest.raises(ValueError, match="storage must be one of fp32, fp16, int8, got 'bf16'"):
        save_model(model, tmp_path / "w.safetensors", storage="bf16")
    assert not (tmp_path / "w.safetensors").exists()


def test_quantize_int8_error_bound_and_zero_channel():
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    w[2] = 0.0
    w[4] *= 1e-6  # a tiny channel keeps its own resolution
    q, scale = loading.quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (5,)
    back = q.double() * scale.double()[:, None, None, None]
    step = w.abs().reshape(5, -1).amax(1)
    for c in range(5):
        assert (back[c] - w[c]).abs().max() <= step[c] / 254 * (1 + 1e-5) + 1e-12
        assert q[c].abs().max() == (0 if c == 2 else 127)
    assert torch.equal(back[2], torch.zeros_like(w[2]))


def test_int8_round_trip(model, lr, tmp_path):
    path = save_model(model, tmp_path / "q.safetensors", storage="int8")
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
        assert f.metadata()["storage"] == "int8"
        vectors = [k for k, v in model.state_dict().items() if v.is_floating_point() and v.dim() < 2]
        assert vectors and all(f.get_tensor(k).dtype == torch.float16 for k in vectors)
        convs = [k for k in keys if k + loading.INT8_SCALE in keys]
        assert convs and all(f.get_tensor(k).dtype == torch.int8 for k in convs)
    loaded = load_model(path)
    assert all(v.dtype == model.state_dict()[k].dtype for k, v in loaded.state_dict().items())
    for k in convs:
        w = model.state_dict()[k]
        bound = w.abs().reshape(w.shape[0], -1).amax(1) / 254
        err = (loaded.state_dict()[k] - w).abs().reshape(w.shape[0], -1).amax(1)
        assert torch.all(err <= bound * (1 + 1e-4) + 1e-8), k
    _same_outputs(model, loaded, lr, rtol=0, atol=5e-2)


def test_int8_file_with_broken_scales_is_refused(model, tmp_path):
    path = save_model(model, tmp_path / "q.safetensors", storage="int8")
    with safe_open(str(path), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    key = next(k for k in state if k.endswith(loading.INT8_SCALE))
    from safetensors.torch import save_file
    bad = dict(state)
    bad[key] = bad[key][:-1]
    save_file(bad, str(tmp_path / "short.safetensors"), metadata=meta)
    with pytest.raises(ModelLoadError, match="short.safetensors: .* one scale per output channel"):
        load_model(tmp_path / "short.safetensors")
    orphan = dict(state)
    del orphan[key[:-len(loading.INT8_SCALE)]]
    save_file(orphan, str(tmp_path / "orphan.safetensors"), metadata=meta)
    with pytest.raises(ModelLoadError, match="orphan.safetensors: int8 scales without their tensor"):
        load_model(tmp_path / "orphan.safetensors")


def _official_layouts(state):
    yield "flat", dict(state)
    yield "module", {f"module.{k}": v for k, v in state.items()}
    yield "nested", {"state_dict": dict(state), "iter": 5}
    yield "single-key", {"net_g": dict(state)}


def test_official_state_dicts_load_by_content(model, lr, tmp_path):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, obj in _official_layouts(state):
        path = tmp_path / f"KXNet_{name}.pth"
        torch.save(obj, path)
        loaded = load_model(path, expected_scale=2)
        cfg = loaded.config
        assert (cfg.scale, cfg.kernel_size, cfg.stages, cfg.setting, cfg.mode) == (2, 21, 2, 1, "official"), name
        _same_outputs(model, loaded, lr)


def test_missing_optional_tensors_are_filled(model, lr, tmp_path):
    state = {k: v for k, v in model.state_dict().items() if k not in ("kernel_map0", "eta_stage")}
    torch.save(state, tmp_path / "old.pth")
    loaded = load_model(tmp_path / "old.pth")
    assert torch.equal(loaded.eta_stage, torch.ones(2, 1))
    assert torch.equal(loaded.kernel_map0, create_model("kxnet", scale=2, setting=1, stages=1).kernel_map0)
    _same_outputs(model, loaded, lr)


def test_setting_inference_at_x4(tmp_path):
    torch.save(create_model("kxnet", scale=4, setting=1, stages=1).state_dict(), tmp_path / "x4.pth")
    cfg = load_model(tmp_path / "x4.pth").config
    assert (cfg.scale, cfg.kernel_size, cfg.setting) == (4, 21, 2)  # ambiguous at ×4: setting 2 by convention


def test_convert_checkpoint(model, lr, tmp_path):
    torch.save({"params": model.state_dict()}, tmp_path / "KXNet_setting1_x2.pth")
    cfg = convert_checkpoint(tmp_path / "KXNet_setting1_x2.pth", tmp_path / "converted.safetensors")
    assert cfg == model.config
    with safe_open(str(tmp_path / "converted.safetensors"), "pt") as f:
        assert f.metadata()["source"] == "KXNet_setting1_x2.pth"
    _same_outputs(model, load_model(tmp_path / "converted.safetensors"), lr)


def _error(path_or_name, **kw):
    with pytest.raises(ModelLoadError) as info:
        load_model(path_or_name, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_clear_errors(model, tmp_path):
    state = model.state_dict()
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint at all")
    assert str(garbage) in _error(garbage)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    assert "empty.safetensors" in _error(tmp_path / "empty.safetensors")
    (tmp_path / "fake.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    assert "fake.safetensors" in _error(tmp_path / "fake.safetensors")

    torch.save(state, tmp_path / "x2.pth")
    assert "×2 model, but ×4" in _error(tmp_path / "x2.pth", expected_scale=4)

    torch.save({**state, "extra.weight": torch.zeros(3)}, tmp_path / "unknown.pth")
    assert "extra.weight" in _error(tmp_path / "unknown.pth")
    torch.save({k: v for k, v in state.items() if k != "gamma_stage"}, tmp_path / "missing.pth")
    assert "missing tensors gamma_stage" in _error(tmp_path / "missing.pth")
    torch.save({**state, "kernel_map0": torch.zeros(24, 11, 11)}, tmp_path / "shape.pth")
    assert "kernel_map0" in _error(tmp_path / "shape.pth")
    torch.save({"a": torch.zeros(2), "b": torch.zeros(3)}, tmp_path / "other.pth")
    assert "not a state dict of any known architecture" in _error(tmp_path / "other.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    assert "list.pth" in _error(tmp_path / "list.pth")

    assert "no such file" in _error(tmp_path / "absent.pth")
    assert "not a file" in _error(tmp_path)


def test_unknown_names_and_manifest(model, tmp_path, monkeypatch):
    from kxnet.models import zoo

    monkeypatch.setattr(zoo, "MANIFEST", tmp_path / "manifest.json")
    assert "unknown model name 'kxnet_x2.setting1'; known: none" in _error("kxnet_x2.setting1")
    path = save_model(model, tmp_path / "w.safetensors")
    common = dict(file="w.safetensors", bytes=path.stat().st_size, arch="kxnet", config=model.config.to_dict(),
                  parameters=1, storage="fp32", iterations=1, hardware="-", training_data="-")
    zoo.write_manifest({"kxnet_x2.setting1": zoo.WeightsEntry("kxnet_x2.setting1", sha256=file_sha256(path), **common),
                        "kxnet_x2.bad": zoo.WeightsEntry("kxnet_x2.bad", sha256="0" * 64, **common)})
    assert load_model("kxnet_x2.setting1").config == model.config
    assert "SHA-256" in _error("kxnet_x2.bad")
    assert "known: kxnet_x2.bad, kxnet_x2.setting1" in _error("kxnet_x9")
    # the manifest is typed: a field no entry has is refused, naming the entry
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["kxnet_x2.bad"]["colour"] = "blue"
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="kxnet_x2.bad.*unknown fields.*colour"):
        zoo.read_manifest()


def test_resolve_is_the_one_front_door(model, tmp_path):
    from kxnet.models import Bicubic, ResolvedModel, resolve

    bic = resolve("bicubic", scale=3)
    assert isinstance(bic, ResolvedModel) and isinstance(bic.model, Bicubic) and bic.scale == 3
    assert bic.arch.name == "bicubic" and bic.runner is bic.model
    for untrained in ("kxnet", "kxnet_x2"):
        with pytest.raises(ModelLoadError, match="without trained weights"):
            resolve(untrained, scale=2)
    save_model(model, tmp_path / "m.safetensors")
    r = resolve(str(tmp_path / "m.safetensors"), scale=2)
    assert r.config == model.config and r.name == "m" and r.sha256 == file_sha256(tmp_path / "m.safetensors")
    assert r.runner is r.runner                  # the inference path is built once
    assert resolve(r) is r and resolve(model).arch.name == "kxnet"
    with pytest.raises(ModelLoadError, match="×3 was asked"):
        resolve(str(tmp_path / "m.safetensors"), scale=3)
    for bad in (tmp_path / "none.safetensors", "kxnet_x9.unknown", 42):
        with pytest.raises(ModelLoadError):
            resolve(bad)


