"""The course's own harness: CI size vs full size, and the stand-in weights the CI-size lessons load.

Nothing in the library core imports this module; lessons and the test setup do.

- ``LESSONS_SIZE=ci`` (default): small models and few steps, seconds to minutes on 2 CPU cores. The
  stored notebook outputs are this size, computed in **float64**: float32 kernels differ between
  CPUs (AVX2, AVX-512, SSE4, ...) and thread counts in the last bits, training amplifies that, and a
  stored loss or sampled token would then hold on one machine only. In float64 the same differences
  stay below 1e-12 after a CI-size run, far under the printed digits, so a learner on any CPU gets
  the stored numbers.
- ``LESSONS_SIZE=full``: GPT-2 124M on a GPU, in float32 with the precision a user would train with
  (``precision="auto"``: bf16 autocast where the GPU has it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .assets import cache_dir

SIZE_ENV = "LESSONS_SIZE"
SIZES = ("ci", "full")
# What each size computes in: float64 at CI size makes stored outputs the same on every CPU.
DTYPES = {"ci": torch.float64, "full": torch.float32}
PRECISIONS = {"ci": "fp64", "full": "auto"}


def run_size() -> str:
    """``"ci"`` (default: small, seconds to minutes on 2 CPU cores) or ``"full"`` (GPT-2 124M on a
    GPU), read from ``$LESSONS_SIZE``."""
    size = os.environ.get(SIZE_ENV, "ci").strip().lower() or "ci"
    if size not in SIZES:
        raise ValueError(f"{SIZE_ENV}={size!r}; set it to 'ci' or 'full'.")
    return size


def by_size(ci, full):
    """Pick the CI-size or the full-size value of a setting."""
    return full if run_size() == "full" else ci


def setup() -> str:
    """Start a lesson: read the run size and make torch's default dtype the size's (float64 at CI
    size, float32 at full size). Returns the size."""
    size = run_size()
    torch.set_default_dtype(DTYPES[size])
    return size


def precision() -> str:
    """The ``RunConfig.precision`` a lesson trains with: ``"fp64"`` at CI size (portable stored
    outputs), ``"auto"`` at full size (bf16 where the hardware has it)."""
    return PRECISIONS[run_size()]


# A small randomly initialised GPT-2 in Hugging Face format: what the CI-size lessons load instead of
# the real weights, so their stored outputs never depend on the network.
STANDIN_CONFIG = dict(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=50257)
STANDIN_SEED = 1234


def make_gpt2_standin(folder: str | Path) -> Path:
    """Save a seeded random ``GPT2LMHeadModel`` (``STANDIN_CONFIG``) into ``folder``.

    Every parameter is drawn in float32 from one seeded generator (matrices N(0, 0.02), LayerNorm
    weights around 1, biases around 0), not from ``transformers``' own init, so the weights are the
    same with any ``transformers`` version and default dtype, and no LayerNorm or bias is a plain 1
    or 0 that a missed copy could hide behind.
    """
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    folder = Path(folder)
    config = GPT2Config(**STANDIN_CONFIG, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = GPT2LMHeadModel(config).eval().float()
    gen = torch.Generator().manual_seed(STANDIN_SEED)
    with torch.no_grad():
        for name, p in hf.named_parameters():  # lm_head.weight is wte.weight: drawn once
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if ".ln_" in name:  # ln_1, ln_2, ln_f: weight ~ 1, bias ~ 0
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)
            else:  # embeddings, Conv1D weights and biases
                p.copy_(0.02 * noise)
    folder.mkdir(parents=True, exist_ok=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar: creating it prints nothing
    try:
        hf.save_pretrained(folder)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return folder


def _standin_complete(folder: Path) -> bool:
    """A finished stand-in of the current ``STANDIN_CONFIG`` (an older or half-written one is rebuilt)."""
    try:
        saved = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    same = all(saved.get(k) == v for k, v in STANDIN_CONFIG.items())
    return same and (folder / "model.safetensors").is_file()


def gpt2_weights_source(size: str | None = None) -> str:
    """What to pass to ``load_hf_gpt2`` / ``GPT2LMHeadModel.from_pretrained`` for "GPT-2".

    Chosen from the run size alone, never from whether the network happens to work:

    - ``"full"``: ``"gpt2"``, the real 124M weights from the Hugging Face hub (downloaded once);
    - ``"ci"``: the folder of a small random stand-in in Hugging Face format (``STANDIN_CONFIG``),
      created once in ``cache_dir("hf", "gpt2-standin")`` and reused.
    """
    size = size or run_size()
    if size not in SIZES:
        raise ValueError(f"size={size!r}; choose one of {SIZES}.")
    if size == "full":
        return "gpt2"
    folder = cache_dir("hf", "gpt2-standin")
    if not _standin_complete(folder):
        # build next to it, then move in: the folder is either complete or rebuilt next time
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".gpt2-standin."))
        try:
            make_gpt2_standin(tmp)
            files = sorted(tmp.iterdir(), key=lambda f: f.name == "config.json")  # config.json last
            for f in files:
                os.replace(f, folder / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(folder)
