"""kxnet: blind single-image super-resolution with KXNet (Fu et al., ECCV 2022)."""

__version__ = "0.1.0"
