"""kxnet.physics.fourier: kernels on an FFT grid (float64)."""

import pytest
import torch

from kxnet.physics import otf2psf, psf2otf
from conftest import circular_convolution


def test_psf2otf_multiplies_as_circular_convolution():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 10, 13, generator=g, dtype=torch.float64)
    c = torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64)   # asymmetric: pins the orientation
    via_fft = torch.fft.ifft2(psf2otf(c, (10, 13)) * torch.fft.fft2(x)).real
    torch.testing.assert_close(via_fft, circular_convolution(x, c), rtol=0, atol=1e-13)


def test_otf2psf_inverts_psf2otf():
    c = torch.rand(3, 7, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(otf2psf(psf2otf(c, (9, 12)), 7), c, rtol=0, atol=1e-14)
    centred = otf2psf(psf2otf(c, (9, 12)), 3)                        # a smaller crop keeps the centre
    torch.testing.assert_close(centred, c[..., 2:5, 2:5], rtol=0, atol=1e-14)


@pytest.mark.parametrize("call", [lambda: psf2otf(torch.ones(4, 4), (8, 8)),
                                  lambda: psf2otf(torch.ones(9, 9), (8, 8)),
                                  lambda: otf2psf(torch.ones(8, 8, dtype=torch.complex64), 9)])
def test_sizes_are_checked(call):
    with pytest.raises(ValueError):
        call()
