import pytest
import torch

from kxnet.models import create_model


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    numerics do not depend on it, and on a CPU shared with other jobs OpenMP's spin-waiting makes
    many small ops ~10× slower with 2 threads than with 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def perturbed_kxnet(scale: int, setting: int, stages: int = 2):
    """A random KXNet with every tensor nudged off its initial value, so nothing matches by luck
    (freshly initialised banks and γ = 1 would hide wiring mistakes)."""
    torch.manual_seed(0)
    m = create_model("kxnet", scale=scale, setting=setting, stages=stages).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return m


def circular_convolution(x, c):
    """``Σ_m c[r+m] · x[i−m]`` in real space, by shifted copies: a reference that shares no code
    with the FFT operators under test."""
    p = c.shape[-1]
    r = p // 2
    out = torch.zeros_like(x)
    for a in range(p):
        for b in range(p):
            out += c[..., a, b, None, None] * torch.roll(x, shifts=(a - r, b - r), dims=(-2, -1))
    return out
