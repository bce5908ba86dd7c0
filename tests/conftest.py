import torch

from kxnet.models import create_model


def perturbed_kxnet(scale: int, setting: int, stages: int = 2):
    """A random KXNet with every tensor nudged off its initial value, so nothing matches by luck
    (freshly initialised banks and γ = 1 would hide wiring mistakes)."""
    torch.manual_seed(0)
    m = create_model("kxnet", scale=scale, setting=setting, stages=stages).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return m
