import os
import signal
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from kxnet.models import create_model


@pytest.fixture(scope="session", autouse=True)
def kxnet_cache_in_a_temporary_folder(tmp_path_factory):
    """Caches the tests write go under a temporary folder, never ~/.cache/kxnet: ``$KXNET_CACHE``
    (the OpenVINO runner's default cache) for the whole session, in this process and in the
    commands tests start (``kxnet sr``, torchrun). A test about the default sets its own."""
    before = os.environ.get("KXNET_CACHE")
    os.environ["KXNET_CACHE"] = str(tmp_path_factory.mktemp("kxnet-cache"))
    yield
    if before is None:
        os.environ.pop("KXNET_CACHE", None)
    else:
        os.environ["KXNET_CACHE"] = before


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


def write_hr_images(root, sizes=((40, 48), (36, 36)), seed=0):
    """Tiny HR training images in ``root`` (created): smooth-ish content, so a model has
    something to learn, quantised to 8 bits. Returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        base = rng.random((h // 4 + 2, w // 4 + 2, 3))
        img = np.kron(base, np.ones((4, 4, 1)))[:h, :w] * 0.7 + rng.random((h, w, 3)) * 0.3
        Image.fromarray((img * 255).round().astype(np.uint8)).save(root / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    """A folder of two tiny HR images (:func:`write_hr_images`), shared by a test module."""
    return write_hr_images(tmp_path_factory.mktemp("hr"))


def run_in_own_session(cmd, timeout: int = 300, **popen) -> subprocess.CompletedProcess:
    """Run ``cmd`` (text output captured) in a session of its own, so that on a timeout the
    process and everything it started — torchrun and its ranks — are killed together (killing
    the launcher alone would leave its ranks running, orphaned); a timeout fails the test."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **popen)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(map(str, cmd[2:6]))} did not finish in {timeout} s: {err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def conv_precisions(compiled) -> dict[str, int]:
    """How many convolutions of an OpenVINO compiled model run in each precision (f32, bf16, u8…)."""
    counts = {}
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        if info["layerType"].astype(str) == "Convolution":
            p = info["runtimePrecision"].astype(str)
            counts[p] = counts.get(p, 0) + 1
    return counts


def tensor_psnr(a, b) -> float:
    """PSNR (dB) between two image tensors in [0, 1], clamped, in float64."""
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).double().pow(2).mean().item()
    return 10 * np.log10(1.0 / mse)
