"""Finding input files (files, folders, glob patterns → image files) and fingerprinting them."""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from .images import IMAGE_EXTENSIONS, ImageError

__all__ = ["file_sha256", "list_images"]

_GLOB_CHARS = frozenset("*?[")


def _is_image_name(p: Path) -> bool:
    # Hidden files include our own in-progress temporary outputs (see atomic.py).
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def list_images(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                recursive: bool = True) -> list[Path]:
    """Every image named by ``inputs``, sorted and without duplicates.

    A file is taken as given (whatever its extension: the user named it); a folder
    contributes the image files inside it (extensions matched case-insensitively, hidden files
    skipped, sub-folders too when ``recursive``); a glob pattern (``**`` allowed) contributes
    its matching image files. A path that neither exists nor is a pattern raises
    :class:`ImageError`, since it is almost always a typo.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: dict[Path, Path] = {}
    for item in inputs:
        p = Path(item)
        if p.is_file():
            candidates = [p]
        elif p.is_dir():
            walk = p.rglob("*") if recursive else p.glob("*")
            candidates = [q for q in walk if q.is_file() and _is_image_name(q)]
        elif _GLOB_CHARS & set(str(item)):
            matches = (Path(m) for m in glob.glob(str(item), recursive=recursive))
            candidates = [q for q in matches if q.is_file() and _is_image_name(q)]
        else:
            raise ImageError(p, "file not found")
        for q in candidates:
            found.setdefault(q.resolve(), q)
    return sorted(found.values(), key=lambda q: str(q))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (weights files need not fit in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
