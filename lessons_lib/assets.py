"""Where files come from: the package's own lesson data, one cache folder, downloads with a timeout.

Nothing resolves relative to a notebook or the checkout. Files a lesson reads (Tiny Shakespeare,
lesson 10's HellaSwag examples, lesson 11's conversations) ship inside the package:
``lesson_file(name)``. What is too large to ship (GPT-2's weights, FineWeb-Edu, the HellaSwag
validation set) is downloaded into ``cache_dir()`` at full size. Two environment variables steer it:

- ``LESSONS_CACHE``: the cache folder (default ``~/.cache/lessons_lib``).
- ``LESSONS_OFFLINE=1``: never touch the network; what is not in the cache then fails at once
  with what to do, instead of after a timeout. No CI-size lesson needs the network.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.resources
import json
import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .utils import UserError

CACHE_ENV = "LESSONS_CACHE"
OFFLINE_ENV = "LESSONS_OFFLINE"


class AssetUnavailableError(UserError, RuntimeError):
    """An external file or package could not be found locally nor downloaded; the message says
    where to get it."""


def cache_dir(*parts: str) -> Path:
    """The cache folder (or a subfolder of it), created on first use."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lessons_lib")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def lesson_file(name: str) -> Path:
    """A file the lessons read, shipped in the package (``lessons_lib/lesson_data/``, listed with
    its source in ``SOURCES.md`` there): found the same way in a checkout, a wheel and Colab."""
    path = Path(str(importlib.resources.files(__package__) / "lesson_data" / name))
    if not path.is_file():
        shipped = sorted(f.name for f in path.parent.iterdir() if not f.name.startswith(("_", ".")))
        raise AssetUnavailableError(f"No lesson file {name!r} in {path.parent}; the package ships {shipped}.")
    return path


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DiskFullError(OSError):
    """A write ran out of disk space (or quota); the file it was to replace is unchanged."""


def _stale_temps(path: Path) -> list[Path]:
    """Temporary files of ``path`` left by writers that are no longer running (killed mid-write)."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"(?:(\d+)\.)?[a-z0-9_]{8}\.tmp")
    stale = []
    for f in path.parent.iterdir():
        match = pattern.fullmatch(f.name)
        if match and not (match[1] and _running(int(match[1]))):
            stale.append(f)
    return stale


def _running(pid: int) -> bool:
    if os.name == "nt":  # no signal 0 there; Windows refuses to delete a file a live writer holds open
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether ``exc``, or an exception it was raised from (torch wraps it), is "no space left";
    or a write failed with no reason given (numpy's short writes) while ``folder``'s disk is full."""
    chain = [exc]
    while chain[-1].__cause__ or chain[-1].__context__:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    if any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in chain):
        return True
    try:
        short = any(isinstance(e, OSError) and e.errno is None for e in chain)
        return short and shutil.disk_usage(folder).free == 0
    except OSError:
        return False


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it
    over ``path``: a crash at any moment leaves the old file or the new one, never half of one.

    The temporary file is ``.NAME.PID.XXXXXXXX.tmp``; the next write of ``path`` removes those
    whose process is gone (killed mid-write). A full disk raises ``DiskFullError``, a folder that
    cannot be written the OSError, both saying that the previous file is intact.
    """
    path = Path(path)
    kept = f"the previous {path.name} is intact" if path.exists() else "nothing was written"
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in _stale_temps(path):
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as exc:
        if _disk_full(exc, path.parent):
            free = shutil.disk_usage(path.parent).free
            raise DiskFullError(
                f"The disk is full: could not write {path} ({free:,} bytes free in {path.parent}); "
                f"{kept}. Free some space (or choose another folder) and try again."
            ) from exc
        if isinstance(exc, OSError) and exc.filename is not None:  # the folder, not ``write``, failed
            not_dir = isinstance(exc, (FileExistsError, NotADirectoryError))  # from mkdir
            reason = f"{exc.filename} is a file, not a folder" if not_dir else exc.strerror
            raise type(exc)(exc.errno, f"Cannot write {path}: {reason}; {kept}.") from exc
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return path


def utf8_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` for each line of a UTF-8 text file (a leading BOM is dropped); a byte
    that is not UTF-8 raises UserError naming the file and the line, not just the byte offset."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                where, byte = exc.start + 1, raw[exc.start]
                raise UserError(
                    f"{path} line {number} is not UTF-8 text (its byte {where} is {byte:#04x}: {exc.reason})."
                    " Save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
                ) from None


def jsonl_records(path: str | os.PathLike) -> Iterator[tuple[int, object]]:
    """``(line number, parsed JSON)`` for each non-blank line of a UTF-8 JSONL file, so a damaged
    line fails with the file and its line number (the decoder's own counts only its one line)."""
    for number, line in utf8_lines(path):
        line = line.rstrip()  # so the decoder's column is the column in the file
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path}, line {number}: not valid JSON ({exc.msg} at column {exc.colno}): {line[:80]!r}"
            ) from exc
        yield number, record


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

    def fetch(out: BinaryIO) -> None:
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise AssetUnavailableError(f"{url} downloaded, but its sha256 is not {sha256}.")

    try:
        return atomic_write(dest, fetch)
    except DiskFullError:
        raise
    except OSError as exc:  # URLError, timeouts and DNS failures are all OSErrors
        raise AssetUnavailableError(f"Could not download {url}: {exc}") from exc
