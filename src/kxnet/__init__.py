"""kxnet: blind single-image super-resolution with KXNet (Fu et al., ECCV 2022)."""

__version__ = "0.1.0"

# The public API, imported lazily so that `import kxnet` stays cheap (no torch until used).
_LAZY = {
    "super_resolve": "kxnet.api",
    "super_resolve_folder": "kxnet.api",
    "SRResult": "kxnet.api",
    "load_model": "kxnet.models",
    "create_model": "kxnet.models",
    "list_models": "kxnet.models",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kxnet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
