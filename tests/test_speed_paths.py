"""The three computation paths of KXNet agree: the paper/release reference (patch matrix,
groups=B·C convolutions), the library's fast path, and ``optimize(...)``; and the fast paths
never build the p²×hw patch matrix. Tiny models (2 stages, ≤ 48 px HR) keep this quick."""

import pytest
import torch

from kxnet.models import KXNet, KXNetConfig
from kxnet.models.kxnet.fast import (
    FusedProxNet,
    OptimizedKXNet,
    image_step_gradient_fast,
    mkldnn_fusion_available,
    optimize,
)
from kxnet.models.kxnet import _ProxNet, image_step_gradient
from kxnet.models.kxnet.reference import KXNetReference
from kxnet.physics import (
    back_project,
    back_project_phases,
    blur_downsample,
    blur_downsample_adjoint,
    blur_downsample_adjoint_phases,
    kernel_gradient,
)
from kxnet.physics.reference import (
    back_project_grouped,
    blur_downsample_adjoint_grouped,
    blur_downsample_grouped,
    kernel_gradient_reference,
)

TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(scale, setting=2, mode="official", stages=2, seed=0):
    torch.manual_seed(seed)
    return KXNet(KXNetConfig(scale=scale, setting=setting, stages=stages, mode=mode)).eval()


def _lr(batch=2, h=12, w=10, seed=1):
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _assert_outputs_close(a, b, tol=TOL):
    assert (a.sr - b.sr).abs().max().item() < tol
    assert (a.kernel - b.kernel).abs().max().item() < tol
    assert len(a.stage_images) == len(b.stage_images)
    for x, y in zip(a.stage_images, b.stage_images):
        assert (x - y).abs().max().item() < tol
    for x, y in zip(a.stage_kernels, b.stage_kernels):
        assert (x - y).abs().max().item() < tol


@pytest.mark.parametrize("setting", [1, 2])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_reference_fast_and_optimized_agree(scale, setting):
    """Every scale, both settings' kernel sizes (21 / 11, 15, 21), batch 2, float32."""
    model = _model(scale, setting)
    ref = KXNetReference.from_model(model)
    opt = optimize(model)
    y = _lr()
    with torch.no_grad():
        out_ref, out_fast = ref(y), model(y)
    out_opt = opt(y)
    assert out_ref.kernel.shape[-1] == model.config.kernel_size
    _assert_outputs_close(out_ref, out_fast)
    _assert_outputs_close(out_ref, out_opt)
    # batch 1 takes the folded fast path in the physics: same numbers as that image in a batch
    with torch.no_grad():
        one = ref(y[1:])
    _assert_outputs_close(one, opt(y[1:]))


@pytest.mark.parametrize("scale", [2, 4])
def test_exact_mode_paths_agree(scale):
    model = _model(scale, mode="exact")
    y = _lr(h=11, w=9)
    ref = KXNetReference(model.config).eval()     # built from a config, weights loaded
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        out_ref, out_fast = ref(y), model(y)
    _assert_outputs_close(out_ref, out_fast)
    _assert_outputs_close(out_ref, optimize(model)(y))


@pytest.mark.parametrize("kwargs", [
    dict(pad_channels=8), dict(pad_channels=16), dict(fuse=False), dict(fuse=False, pad_channels=16),
    dict(channels_last=False), dict(prepack=False), dict(fast_stages=False),
])
def test_optimize_options_keep_outputs(kwargs):
    model = _model(3)
    y = _lr()
    with torch.no_grad():
        expected = model(y)
    _assert_outputs_close(expected, optimize(model, **kwargs)(y))


def test_optimized_model_keeps_kxnet_forward_contract():
    model = _model(2)
    opt = optimize(model)
    # a wrapper around a converted KXNet, not a KXNet whose class was swapped
    assert isinstance(opt, OptimizedKXNet) and not isinstance(opt, KXNet) and type(opt.net) is KXNet
    assert opt.config == model.config and opt.scale == model.scale
    y = _lr()
    k = torch.rand(2, 11, 11)
    k = k / k.sum(dim=(-2, -1), keepdim=True)
    with torch.no_grad():
        expected = model(y, k)
    out = opt(y, k)                      # non-blind: the X-steps with a given kernel
    _assert_outputs_close(expected, out)
    assert not out.sr.requires_grad
    with pytest.raises(RuntimeError, match="inference-only"):
        opt.train()
    # the original is untouched (still a trainable KXNet with its own prox nets)
    assert type(model) is KXNet and isinstance(model.X_stage[0].X_ProNet, _ProxNet)
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "kernel_map0")


def test_reference_shares_weights_and_leaves_model_alone():
    model = _model(2)
    ref = KXNetReference.from_model(model)
    assert type(model) is KXNet and type(model.X_stage[0]).__name__ == "_ImageStage"
    assert ref.X_stage[0].X_ProNet is model.X_stage[0].X_ProNet
    assert set(ref.state_dict()) == set(model.state_dict())
    with torch.no_grad():
        model.gamma_stage.mul_(0.5)      # a later change to the model is seen by its twin
        a, b = model(_lr()), ref(_lr())
    _assert_outputs_close(a, b)


def test_fused_prox_net_padding_is_exact():
    torch.manual_seed(0)
    prox = _ProxNet(27, "resk").eval()
    u = torch.rand(2, 27, 9, 7)
    with torch.no_grad():
        expected = prox(u)
    backends = ["conv"] + (["mkldnn"] if mkldnn_fusion_available() else [])
    for backend in backends:
        for pad in (None, 8, 16):
            fused = FusedProxNet(prox, backend=backend, pad_channels=pad)
            with torch.no_grad():
                out = fused(u)
                padded = fused.forward_padded(fused._prepare(u))
            assert out.shape == expected.shape
            assert (out - expected).abs().max().item() < TOL
            assert fused.padded_channels == (27 if pad is None else 32)
            if pad:
                assert padded[:, 27:].abs().max().item() == 0.0   # padded channels stay zero


def test_fused_prox_net_kept_outputs_are_those_channels():
    torch.manual_seed(1)
    prox = _ProxNet(59, "resx").eval()            # ×2: X = V[0:12], A_X = V[27:59]
    u = torch.rand(1, 59, 6, 5)
    with torch.no_grad():
        expected = prox(u)
    backends = ["conv"] + (["mkldnn"] if mkldnn_fusion_available() else [])
    for backend in backends:
        for pad in (None, 16):
            fused = FusedProxNet(prox, backend=backend, pad_channels=pad, kept_outputs=[(0, 12), (27, 59)])
            with torch.no_grad():
                kept = fused.forward_kept(fused._prepare(u))
            assert kept.shape[1] == 12 + 32
            want = torch.cat([expected[:, :12], expected[:, 27:]], dim=1)
            assert (kept - want).abs().max().item() < TOL


def test_optimize_float64_model_uses_plain_convolutions():
    model = _model(2).double()
    y = _lr().double()
    with torch.no_grad():
        expected = model(y)
    opt = optimize(model)
    assert opt.net.X_stage[0].X_ProNet.backend == "conv"
    _assert_outputs_close(expected, opt(y), tol=1e-12)


@pytest.mark.parametrize("scale,p", [(2, 11), (3, 15), (4, 21), (4, 3)])
def test_phase_adjoints_match_physics(scale, p):
    g = torch.Generator().manual_seed(3)
    for b, (h, w) in ((1, (7, 6)), (2, (5, 8))):
        e = torch.rand(b, 4, h, w, dtype=torch.float64, generator=g)
        k = torch.rand(b, p, p, dtype=torch.float64, generator=g)
        for hr in ((scale * h, scale * w), (scale * h - scale + 1, scale * w - 1)):
            if min(hr) <= p // 2:
                continue
            assert torch.allclose(back_project_phases(e, k, scale, hr), back_project(e, k, scale, hr), atol=1e-12)
            assert torch.allclose(blur_downsample_adjoint_phases(e, k, scale, hr),
                                  blur_downsample_adjoint(e, k, scale, hr), atol=1e-12)


@pytest.mark.parametrize("mode", ["official", "exact"])
def test_reference_operators_match_fast_operators(mode):
    g = torch.Generator().manual_seed(4)
    for scale, p in ((2, 11), (3, 15), (4, 21)):
        x = torch.rand(2, 3, 8 * scale, 7 * scale, dtype=torch.float64, generator=g)
        y = torch.rand(2, 3, 8, 7, dtype=torch.float64, generator=g)
        k = torch.rand(2, p, p, dtype=torch.float64, generator=g)
        assert torch.allclose(blur_downsample_grouped(x, k, scale), blur_downsample(x, k, scale), atol=1e-12)
        assert torch.allclose(back_project_grouped(y, k, scale, x.shape[-2:]), back_project(y, k, scale, x.shape[-2:]),
                              atol=1e-12)
        assert torch.allclose(blur_downsample_adjoint_grouped(y, k, scale, x.shape[-2:]),
                              blur_downsample_adjoint(y, k, scale, x.shape[-2:]), atol=1e-12)
        assert torch.allclose(kernel_gradient_reference(x, y, scale, p), kernel_gradient(x, y, scale, p), atol=1e-10)
        assert torch.allclose(image_step_gradient_fast(x, y, k, scale, mode), image_step_gradient(x, y, k, scale, mode),
                              atol=1e-9)


@pytest.fixture
def no_patch_matrix(monkeypatch):
    """Make building a patch matrix (F.unfold / im2col) an error for the duration of a test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a p²×hw patch matrix was built")

    monkeypatch.setattr(torch.nn.functional, "unfold", forbidden)
    monkeypatch.setattr(torch._C._nn, "im2col", forbidden)


def test_fast_paths_build_no_patch_matrix(no_patch_matrix):
    model = _model(4)
    y = _lr()
    with torch.no_grad():
        model(y)
        optimize(model)(y)
        with pytest.raises(AssertionError, match="patch matrix"):   # the hook works: the reference trips it
            KXNetReference.from_model(model)(y)


def test_fast_kernel_gradient_memory_is_image_sized():
    """Allocator-level peak of one kernel gradient: far below the p²×hw patch matrix."""
    pytest.importorskip("torch.profiler")
    try:
        from torch._C._profiler import _EventType
    except ImportError:  # pragma: no cover
        pytest.skip("profiler allocation events unavailable")
    from torch.profiler import ProfilerActivity, profile

    def peak(fn):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
        while stack:
            node = stack.pop()
            if node.tag == _EventType.Allocation:
                events.append((node.start_time_ns, node.extra_fields.alloc_size, node.extra_fields.total_allocated))
            stack.extend(node.children)
        events.sort()
        return max(t for _, _, t in events) - (events[0][2] - events[0][1])

    scale, p, h = 4, 21, 32
    x = torch.rand(1, 3, scale * h, scale * h)
    r = torch.rand(1, 3, h, h)
    patch_bytes = 3 * p * p * h * h * 4
    with torch.no_grad():
        fast = peak(lambda: kernel_gradient(x, r, scale, p))
        slow = peak(lambda: kernel_gradient_reference(x, r, scale, p))
    assert slow >= patch_bytes                   # the measurement sees the patch matrix…
    assert fast < patch_bytes / 8                # …and the fast path has none
