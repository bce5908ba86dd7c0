"""Running trained models on images."""

from .stages import default_stages, render_stages

__all__ = ["default_stages", "render_stages"]
