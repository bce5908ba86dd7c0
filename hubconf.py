"""torch.hub entry points: one per shipped kxnet model (docs/integrations.md).

    model = torch.hub.load("path/to/kxnet", "kxnet_x4", source="local")
    out = model(lr)            # lr: B×3×h×w in [0, 1]
    out.sr, out.kernel         # B×3×4h×4w (unclamped), the estimated B×21×21 HR blur kernel

The weights are the files the package ships (SHA-256 checked), read from disk: nothing is
downloaded. Each entry returns the model in eval mode on ``device``.
"""

# Private names: torch.hub.list shows every public callable of this module as a model.
import sys as _sys
from pathlib import Path as _Path

# What importing kxnet's loader needs, so torch.hub names a missing package up front.
dependencies = ["torch", "numpy", "safetensors", "PIL", "tifffile", "png", "tqdm", "yaml"]

try:
    import kxnet
except ImportError:  # a checkout that was not pip-installed: its own source tree
    _sys.path.insert(0, str(_Path(__file__).resolve().parent / "src"))
    import kxnet


def _load(name: str, device):
    return kxnet.load_model(name, device=device)


def kxnet_x4(device="cpu"):
    """KXNet ×4, ``kxnet_x4.setting2``: anisotropic Gaussian blur + noise (the paper's
    setting 2), 4 stages, K⁰ read from the photo by a KENet."""
    return _load("kxnet_x4.setting2", device)


def kxnet_x2(device="cpu"):
    """KXNet ×2, ``kxnet_x2.setting2``: anisotropic Gaussian blur + noise, 6 stages."""
    return _load("kxnet_x2.setting2", device)


def kxnet_x3(device="cpu"):
    """KXNet ×3, ``kxnet_x3.setting2``: anisotropic Gaussian blur + noise, 5 stages."""
    return _load("kxnet_x3.setting2", device)


def kxnet_x4_setting1(device="cpu"):
    """KXNet ×4, ``kxnet_x4.setting1``: isotropic Gaussian blur (the paper's setting 1),
    4 stages."""
    return _load("kxnet_x4.setting1", device)


def kxnet_x4_photo(device="cpu"):
    """KXNet ×4, ``kxnet_x4.photo``: ``kxnet_x4.setting2`` trained further on JPEG and camera
    noise, for compressed or noisy photos."""
    return _load("kxnet_x4.photo", device)


def kxnet_x2_photo(device="cpu"):
    """KXNet ×2, ``kxnet_x2.photo``: ``kxnet_x2.setting2`` trained further on JPEG-compressed
    photos with white or camera noise (what ``kxnet sr`` runs for ×2 inputs with a JPEG history)."""
    return _load("kxnet_x2.photo", device)


def kxnet_x3_photo(device="cpu"):
    """KXNet ×3, ``kxnet_x3.photo``: ``kxnet_x3.setting2`` trained further on JPEG-compressed
    photos with white or camera noise (what ``kxnet sr`` runs for ×3 inputs with a JPEG history)."""
    return _load("kxnet_x3.photo", device)
