"""The default model follows the photo: the degradation estimate routes each input.

KXNet is blind to the kernel; :mod:`kxnet.degrade.estimate` makes kxnet blind to the rest of a
photo's degradation as well — its JPEG history and its noise. A model trained on the paper's
degradation sharpens JPEG blocks along with the edges, and a photo model trained on compressed
inputs loses on clean ones (docs/photo.md), so neither serves every input. Routing gives each its
model: inputs with a JPEG history go to the scale's photo model where one ships, every other
input to the scale's default (the paper's model). ``--model`` still forces one model for all,
and a user who knows better than the estimate says so with ``jpeg_quality`` (``--jpeg-quality``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..degrade.estimate import DegradationEstimate, estimate_degradation
from ..io import Image
from ..models import resolve
from ..models.zoo import PHOTO_MODELS, default_model, read_manifest

__all__ = ["JPEG_OVERRIDES", "Route", "Router", "estimate_for", "parse_jpeg_quality", "route", "route_why",
           "router_for"]

JPEG_OVERRIDES = ("auto", "none")     # or a quality 1…100


def route(scale: int, estimate: DegradationEstimate, entries: dict | None = None) -> str:
    """The shipped name for an input of this estimate at ``scale``: the photo model of the
    scale for an input with a JPEG history (where it ships), else the scale's default."""
    return route_why(scale, estimate, entries)[0]


def route_why(scale: int, estimate: DegradationEstimate, entries: dict | None = None) -> tuple[str, str]:
    """:func:`route` and why, for the sidecar: ``"JPEG history"`` or ``"default"``."""
    entries = read_manifest() if entries is None else entries
    photo = PHOTO_MODELS.get(scale)
    if estimate.compressed and photo in entries:
        return photo, "JPEG history"
    return default_model(scale, entries=entries), "default"


def estimate_for(image: Image, jpeg_quality: str | int = "auto") -> DegradationEstimate:
    """The estimate of ``image`` (from its file where it came from one), the JPEG history
    replaced by ``jpeg_quality`` when it is not ``"auto"``: ``"none"`` (never compressed) or the
    quality the user knows."""
    estimate = estimate_degradation(image.rgb, image.path)
    if jpeg_quality == "auto":
        return estimate
    quality = None if jpeg_quality == "none" else parse_jpeg_quality(jpeg_quality)
    return estimate.with_jpeg_quality(quality, image.rgb)


def parse_jpeg_quality(text: str | int) -> str | int:
    """``auto``, ``none`` or a quality 1…100 (what ``--jpeg-quality`` takes)."""
    if str(text).lower() in JPEG_OVERRIDES:
        return str(text).lower()
    try:
        quality = int(text)
    except ValueError:
        quality = 0
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be auto, none or 1…100, got {text!r}")
    return quality


@dataclass
class Route:
    """What :meth:`Router.pick` chose for one image: the ``upscaler``, the ``estimate`` it
    followed, and ``why`` (``"JPEG history"``, ``"default"`` or ``"given"``)."""

    upscaler: object
    estimate: DegradationEstimate
    why: str

    def record(self) -> dict:
        """The sidecar's ``degradation`` entry."""
        return {**self.estimate.to_dict(), "model_chosen_by": self.why}


class Router:
    """Upscalers by input: ``make(name)`` builds the upscaler of a shipped name, once (``known``
    holds those built already); ``forced``, an upscaler, serves every input (``--model``)."""

    def __init__(self, scale: int, make: Callable[[str], object], forced=None, jpeg_quality="auto",
                 known: dict | None = None):
        self.scale = scale
        self.make = make
        self.forced = forced
        self.jpeg_quality = parse_jpeg_quality(jpeg_quality)
        self.entries = read_manifest()      # read once, not once a photo
        self._upscalers: dict = dict(known or {})

    def upscaler(self, name: str):
        if name not in self._upscalers:
            self._upscalers[name] = self.make(name)
        return self._upscalers[name]

    def pick(self, image: Image) -> Route:
        """The :class:`Route` of ``image``."""
        estimate = estimate_for(image, self.jpeg_quality)
        if self.forced is not None:
            return Route(self.forced, estimate, "given")
        name, why = route_why(self.scale, estimate, self.entries)
        return Route(self.upscaler(name), estimate, why)


def router_for(resolved, build: Callable[[object], object], given: bool, jpeg_quality="auto") -> Router:
    """The router of ``kxnet sr``, :func:`kxnet.super_resolve` and :func:`kxnet.super_resolve_folder`:
    ``build(model)`` makes the upscaler of a resolved model, ``resolved`` first (its upscaler is
    ``router.upscaler(resolved.name)``); ``given`` (``--model``) makes it serve every input, else
    the scale's other shipped models are resolved on the same device when a photo needs them."""
    first = build(resolved)
    return Router(resolved.scale, lambda name: build(resolve(name, resolved.scale, device=first.device)),
                  forced=first if given else None, jpeg_quality=jpeg_quality, known={resolved.name: first})
