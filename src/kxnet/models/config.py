"""What every method's config shares: scale, setting, kernel size, JSON round trips.

Each method's config is a dataclass subclassing :class:`MethodConfig`, so the loader, the
registry and the CLI can rely on ``scale``, ``setting`` and ``kernel_size`` and on
``to_dict``/``from_dict`` (what a weights file stores), and each method only checks its own
fields in ``__post_init__`` after calling this one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..kernels import SCALES, SETTINGS, kernel_size

__all__ = ["MethodConfig", "to_plain"]


def to_plain(obj):
    """Tuples → lists, so a config dumps as plain JSON and compares equal after a round trip."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


@dataclass
class MethodConfig:
    """``kernel_size`` defaults to the setting's p at the scale (docs/protocol.md, "Kernels") and is odd."""

    scale: int = 4
    setting: int = 2
    kernel_size: int | None = None

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.kernel_size is None:
            self.kernel_size = kernel_size(self.setting, self.scale)
        if not isinstance(self.kernel_size, int) or self.kernel_size < 1 or self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be a positive odd integer, got {self.kernel_size!r}")

    def require_positive(self, *names: str, minimum: int = 1) -> None:
        """Each named field is an integer ≥ ``minimum``."""
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")

    def to_dict(self) -> dict:
        return to_plain(asdict(self))

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**d)
