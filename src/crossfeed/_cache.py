"""On-disk cache for generated or downloaded data (atomic writes, npz without pickle)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """``$CROSSFEED_CACHE`` or ``~/.cache/crossfeed``."""
    root = os.environ.get("CROSSFEED_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "crossfeed"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``: no half-written files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask (read without changing it): files and folders written via temporary
    names get the modes a plain ``open`` / ``mkdir`` would have given them."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """Load a cached npz (``allow_pickle=False``); ``None`` if missing or unreadable."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception:  # a corrupt cache entry is regenerated, never trusted
        return None
