"""Atomic file writing shared by every writer in the package (images, JSON, arrays, weights).

An interrupted or failed write must never leave a half-written file under the final name: a
later run would take it for a finished result. Everything is therefore written to a
temporary file in the *same* directory (so the final ``os.replace`` is an atomic rename on
one file system) and renamed only once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json"]


def _temp_name(path: Path) -> Path:
    # Hidden (leading dot) so folder listings and list_images() skip it, and ending in the
    # final suffix because some writers (numpy.save, extension-sniffing encoders) look at it.
    return path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file is not created in advance, so the writer inside the block creates it
    with the usual permissions (umask applies). If the block raises, the temporary file is
    removed and the exception propagates; ``path`` itself is untouched. The parent folder
    must exist.
    """
    final = Path(path)
    tmp = _temp_name(final)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the final path."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON atomically, byte-for-byte reproducible for equal objects.

    Sorted keys, 2-space indentation and a trailing newline keep the files diff-friendly and
    stable across runs (reports and manifests are compared and committed).
    """
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))
