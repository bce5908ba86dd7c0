"""The OpenVINO backend: blind and non-blind graphs equal the PyTorch model in f32, bf16 stays
close and keeps everything but the X-prox nets in f32, compiled models are cached in memory
and on disk, bad input is refused. Tiny random models (2 stages), LR 24×20."""

import pytest
import torch

pytest.importorskip("openvino")

from conftest import conv_precisions, perturbed_kxnet, tensor_psnr  # noqa: E402
from kxnet import hardware  # noqa: E402
from kxnet.export import ExportableKXNet, NonBlindExportableKXNet  # noqa: E402
from kxnet.inference.openvino import (OpenVINORunner, clear_memory_cache,  # noqa: E402
                                      openvino_available)
from kxnet.models import KXNet, KXNetConfig, create_model  # noqa: E402

SIZE = (24, 20)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One disk cache for the tests that are not about caching (conversions take seconds)."""
    return tmp_path_factory.mktemp("kxnet-cache")


def _model(scale, mode="official", stages=2):
    """A perturbed random KXNet; ``mode="exact"`` gets the same weights in exact mode."""
    base = perturbed_kxnet(scale, 2, stages)
    if mode == "official":
        return base
    m = create_model("kxnet", scale=scale, setting=2, stages=stages, mode=mode).eval()
    m.load_state_dict(base.state_dict())
    return m


def _with_estimator(scale=4):
    torch.manual_seed(3)
    return KXNet(KXNetConfig(scale=scale, setting=2, stages=2, estimator={"channels": (8, 8, 8, 8), "fc": 16})).eval()


def _y(seed=0, size=SIZE, batch=1):
    return torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def test_openvino_available_follows_the_import(monkeypatch):
    import builtins

    assert openvino_available()          # importorskip above: the extra is installed
    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    assert not openvino_available()


# ------------------------------------------------------------------ the graphs (PyTorch only)

@pytest.mark.parametrize("scale,mode", [(2, "official"), (3, "exact")])
def test_exportable_graphs_return_stage_kernels_and_take_them(scale, mode):
    model = _model(scale, mode)
    y = _y()
    with torch.no_grad():
        expected = model(y)
        sr, kernel, stages = ExportableKXNet(model, SIZE, stage_kernels=True)(y)
        assert stages.shape == (1, 2, model.config.kernel_size, model.config.kernel_size)
        for t, k in enumerate(expected.stage_kernels):
            assert (stages[:, t] - k).abs().max().item() < 1e-6
        assert (kernel - stages[:, -1]).abs().max().item() == 0
        # distinct kernels per stage, so a graph that used one kernel for all stages would fail
        given = [torch.softmax(torch.randn(1, k.shape[-1] ** 2), -1).reshape_as(k) for k in expected.stage_kernels]
        nonblind = NonBlindExportableKXNet(model, SIZE)(y, torch.stack(given, dim=1))
        assert (nonblind - model(y, kernel=given).sr).abs().max().item() < 1e-5
        assert (nonblind - model(y, kernel=given[-1]).sr).abs().max().item() > 1e-4


# ------------------------------------------------------------------ f32: equal to PyTorch

@pytest.mark.parametrize("scale,mode", [(2, "official"), (3, "exact"), (4, "official")])
def test_f32_blind_equals_pytorch(scale, mode, cache):
    model = _model(scale, mode)
    runner = OpenVINORunner(model, precision="f32", threads=1, cache_dir=cache)
    y = _y(1)
    out = runner(y)
    with torch.no_grad():
        expected = model(y)
    assert runner.precision == "f32" and runner.threads == 1
    assert out.sr.shape == expected.sr.shape and out.stage_images == []
    assert (out.sr - expected.sr).abs().max().item() < 1e-4
    assert (out.kernel - expected.kernel).abs().max().item() < 1e-5
    assert len(out.stage_kernels) == 2
    for k, e in zip(out.stage_kernels, expected.stage_kernels):
        assert k.shape == e.shape and (k - e).abs().max().item() < 1e-5


def test_f32_blind_with_kenet_estimator_equals_pytorch(cache):
    model = _with_estimator()
    y = _y(2)
    out = OpenVINORunner(model, precision="f32", threads=1, cache_dir=cache)(y)
    with torch.no_grad():
        expected = model(y)
        fixed = KXNet(KXNetConfig(scale=4, setting=2, stages=2))
        fixed.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("K_estimator.")})
        without = fixed.eval()(y)
    assert (out.sr - expected.sr).abs().max().item() < 1e-4
    assert (out.kernel - expected.kernel).abs().max().item() < 1e-5
    # the estimator matters here, so the graph really contains it
    assert (out.kernel - without.kernel).abs().max().item() > 1e-4


def test_f32_non_blind_equals_pytorch(cache):
    model = _model(2)
    runner = OpenVINORunner(model, precision="f32", threads=1, cache_dir=cache)
    y = _y(3)
    p = model.config.kernel_size
    g = torch.Generator().manual_seed(4)
    given = [torch.softmax(torch.randn(p * p, generator=g), 0).reshape(p, p) for _ in range(2)]
    out = runner(y, kernel=given)
    with torch.no_grad():
        expected = model(y, kernel=given)
        single = model(y, kernel=given[0])
    assert (out.sr - expected.sr).abs().max().item() < 1e-4
    assert all(torch.equal(k[0], e) for k, e in zip(out.stage_kernels, given))
    assert torch.equal(out.kernel[0], given[-1])
    one = runner(y, kernel=given[0])   # one kernel: every stage's
    assert (one.sr - single.sr).abs().max().item() < 1e-4
    assert (one.sr - out.sr).abs().max().item() > 1e-4


def test_tiles_from_a_crops_estimate_like_the_upscaler(cache):
    """Blind on a crop, then non-blind on another tile with the crop's per-stage kernels: the
    same as the PyTorch model doing the same; and on the crop itself, the blind result."""
    model = _model(2)
    runner = OpenVINORunner(model, precision="f32", threads=1, cache_dir=cache)
    photo = _y(5, size=(40, 36))
    crop, tile = photo[..., 8:32, 8:28], photo[..., :24, 16:36]
    est = runner(crop)
    with torch.no_grad():
        ref_est = model(crop)
        expected = model(tile, kernel=list(ref_est.stage_kernels))
    out = runner(tile, kernel=list(est.stage_kernels))
    assert (out.sr - expected.sr).abs().max().item() < 1e-4
    again = runner(crop, kernel=list(est.stage_kernels))
    assert (again.sr - est.sr).abs().max().item() < 1e-4


@pytest.mark.parametrize("tile", [0, 16])
def test_runner_drops_into_the_upscaler(tile, cache):
    """``Upscaler.model`` replaced by a runner: the same photo, untiled (blind) and tiled (blind
    crop, non-blind tiles), as the PyTorch model gives."""
    import numpy as np

    from kxnet.inference.upscaler import Upscaler
    from kxnet.io import Image

    model = _model(2)
    rgb = np.random.default_rng(0).random((30, 26, 3), dtype=np.float32)
    expected, k_expected, info, _ = Upscaler(model, "cpu", tile=tile, tile_overlap=4, optimized=False).run(Image(rgb))
    upscaler = Upscaler(model, "cpu", tile=tile, tile_overlap=4, optimized=False)
    upscaler.model = OpenVINORunner(model, precision="f32", threads=1, cache_dir=cache)
    result, kernel, info_ov, _ = upscaler.run(Image(rgb))
    assert info_ov["tiled"] == info["tiled"] == bool(tile)
    assert np.abs(result.rgb - expected.rgb).max() < 1e-4
    assert np.abs(kernel - k_expected).max() < 1e-5


def test_batch_runs_item_by_item(cache):
    model = _model(2)
    runner = OpenVINORunner(model, precision="f32", threads=1, cache_dir=cache)
    y = _y(6, batch=2)
    out = runner(y)
    with torch.no_grad():
        expected = model(y)
    assert out.sr.shape[0] == 2 and out.stage_kernels[0].shape[0] == 2
    assert (out.sr - expected.sr).abs().max().item() < 1e-4
    assert (out.kernel - expected.kernel).abs().max().item() < 1e-5
    ks = [torch.stack([k[1], k[0]]) for k in expected.stage_kernels]   # per-item per-stage kernels
    with torch.no_grad():
        assert (runner(y, kernel=ks).sr - model(y, kernel=ks).sr).abs().max().item() < 1e-4


# ------------------------------------------------------------------ bf16

def test_bf16_is_close_and_only_the_x_prox_nets_run_in_bf16(cache):
    model = _model(4)
    runner = OpenVINORunner(model, precision="bf16", threads=1, cache_dir=cache)
    runner.compiled_model(SIZE)   # what was compiled decides, not what was asked for
    if runner.precision != "bf16":
        pytest.skip("OpenVINO compiled f32 when asked for bf16: this CPU has no bf16 (or it is hidden)")
    y = _y(7)
    out = runner(y)
    f32 = OpenVINORunner(model, precision="f32", threads=1, cache_dir=cache)(y)
    assert runner.precision == "bf16"
    assert not torch.equal(out.sr, f32.sr)   # bf16 really ran
    # measured 58.7 dB and 1.2e-5: bf16 in the X-prox nets only (float32 alone gives > 120 dB); K-prox
    # nets in bf16 too would move kernel taps of ~0.1 by about bf16's 4e-3 relative step (estimated)
    assert tensor_psnr(out.sr, f32.sr) > 50
    assert (out.kernel - f32.kernel).abs().max().item() < 1e-4
    counts = conv_precisions(runner.compiled_model(SIZE))
    assert counts.get("bf16") == 9 * model.config.stages          # the X-prox convolutions
    assert counts.get("f32", 0) >= 9 * model.config.stages        # K-prox nets and physics


def test_hidden_bf16_compiles_f32_as_on_a_cpu_without_it(cache, monkeypatch):
    # the fallback every laptop without bf16 takes, forced on whatever CPU runs the suite
    monkeypatch.setenv("KXNET_HIDE_CPU_FLAGS", "bf16")
    for asked in ("bf16", "auto"):
        runner = OpenVINORunner(_model(2), precision=asked, threads=1, cache_dir=cache)
        counts = conv_precisions(runner.compiled_model(SIZE))
        assert runner.precision == "f32" and "bf16" not in counts, (asked, counts)


def test_hiding_amx_alone_keeps_bf16_where_avx512_bf16_is_left(cache, monkeypatch):
    # the AVX-512 BF16 class without AMX (AMD Zen 4), emulated on an AMX CPU: bf16 stays
    if not hardware.cpu_has_bf16() or "avx512_bf16" not in hardware.cpu_flags():
        pytest.skip("needs a CPU with AVX-512 BF16")
    monkeypatch.setenv("KXNET_HIDE_CPU_FLAGS", "amx")
    assert hardware.cpu_has_bf16()
    runner = OpenVINORunner(_model(2), precision="bf16", threads=1, cache_dir=cache)
    assert runner._precision_hint() == "bf16"
    runner.compiled_model(SIZE)
    assert runner.precision == "bf16"


def test_auto_precision_is_reported(cache):
    runner = OpenVINORunner(_model(2), precision="auto", threads=1, cache_dir=cache)
    before = runner.precision
    runner(_y())
    assert before in ("f32", "bf16") and runner.precision == before


def test_threads_are_not_pinned_to_cores_compiled_or_imported(tmp_path):
    # pinned, two one-thread processes (torchrun on two cores) were put on the same core
    clear_memory_cache()
    model = _model(2)
    compiled = OpenVINORunner(model, precision="f32", threads=1, cache_dir=tmp_path).compiled_model(SIZE)
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
    clear_memory_cache()
    fresh = OpenVINORunner(model, precision="f32", threads=1, cache_dir=tmp_path)
    assert fresh.compiled_model(SIZE).get_property("ENABLE_CPU_PINNING") is False
    assert fresh.stats.imported == 1


# ------------------------------------------------------------------ caches

def test_memory_cache_shares_compiled_models(tmp_path):
    clear_memory_cache()   # earlier tests compiled this model too
    model = _model(2)
    a = OpenVINORunner(model, precision="f32", threads=1, cache_dir=tmp_path)
    b = OpenVINORunner(model, precision="f32", threads=1, cache_dir=tmp_path)
    assert a.compiled_model(SIZE) is b.compiled_model(SIZE)
    assert a.stats.converted == 1 and b.stats.converted == 0 and b.stats.reused == 1
    assert a.compiled_model(SIZE, blind=False) is not a.compiled_model(SIZE)
    assert a.compiled_model((20, 24)) is not a.compiled_model(SIZE)
    other = _model(2)
    with torch.no_grad():
        other.gamma_stage.add_(0.5)   # other weights, another fingerprint
    assert OpenVINORunner(other, precision="f32", threads=1, cache_dir=tmp_path).compiled_model(SIZE) \
        is not a.compiled_model(SIZE)


def test_disk_cache_is_reused_by_a_fresh_runner(tmp_path):
    clear_memory_cache()
    model = _model(3)
    y = _y(8)
    first = OpenVINORunner(model, precision="f32", threads=1, cache_dir=tmp_path)
    expected = first(y).sr
    assert first.stats.converted == 1
    irs = list((tmp_path / "openvino" / "ir").glob("*/model.xml"))
    blobs = list((tmp_path / "openvino" / "compiled").glob("*.blob"))
    assert len(irs) == 1 and (irs[0].parent / "model.bin").is_file() and len(blobs) == 1
    assert not [p for p in tmp_path.rglob(".*")], "temporary files left in the cache"

    clear_memory_cache()   # as a new process would start
    second = OpenVINORunner(model, precision="f32", threads=1, cache_dir=tmp_path)
    assert torch.equal(second(y).sr, expected)
    assert (second.stats.converted, second.stats.imported) == (0, 1)

    clear_memory_cache()
    blobs[0].write_bytes(b"not a compiled model")   # a broken blob is compiled again from the IR
    third = OpenVINORunner(model, precision="f32", threads=1, cache_dir=tmp_path)
    assert torch.equal(third(y).sr, expected)
    assert (third.stats.converted, third.stats.compiled) == (0, 1)
    assert blobs[0].read_bytes() != b"not a compiled model"

    clear_memory_cache()
    blobs[0].unlink()
    fourth = OpenVINORunner(model, precision="f32", threads=2, cache_dir=tmp_path)
    assert torch.equal(fourth(y).sr, expected)
    assert fourth.stats.compiled == 1 and fourth.threads == 2

    clear_memory_cache()
    for blob in (tmp_path / "openvino" / "compiled").glob("*.blob"):
        blob.unlink()
    irs[0].write_text("<not an IR")   # an unreadable IR is converted again
    fifth = OpenVINORunner(model, precision="f32", threads=1, cache_dir=tmp_path)
    assert torch.equal(fifth(y).sr, expected)
    assert fifth.stats.converted == 1 and irs[0].read_text().startswith("<?xml")


# ------------------------------------------------------------------ bad input

def test_bad_input_raises_value_error(cache):
    model = _model(4)
    runner = OpenVINORunner(model, precision="f32", threads=1, cache_dir=cache)
    p = model.config.kernel_size
    cases = [
        (lambda: runner(torch.rand(1, 1, *SIZE)), "B×3×h×w"),
        (lambda: runner(torch.rand(3, *SIZE)), "B×3×h×w"),
        (lambda: runner(torch.zeros(1, 3, *SIZE, dtype=torch.uint8)), "float"),
        (lambda: runner(torch.rand(1, 3, 2, 2)), "too small"),
        (lambda: runner(torch.full((1, 3, *SIZE), float("nan"))), "non-finite"),
        (lambda: runner(_y(), kernel=[torch.ones(p, p) / p ** 2]), "per-stage kernels"),
        (lambda: runner(_y(), kernel=torch.ones(p - 1, p - 1)), "odd"),
        (lambda: runner(_y(), kernel=torch.full((p, p), float("inf"))), "non-finite"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    estimating = OpenVINORunner(_with_estimator(), precision="f32", threads=1, cache_dir=cache)
    with pytest.raises(ValueError, match="KENet needs"):
        estimating(torch.rand(1, 3, 6, 6))
    with pytest.raises(ValueError, match="precision"):
        OpenVINORunner(model, precision="fp16")
    with pytest.raises(TypeError, match="KXNet"):
        OpenVINORunner(torch.nn.Conv2d(3, 3, 3))
