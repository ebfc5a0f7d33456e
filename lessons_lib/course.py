"""The course's own harness: the run size, the lessons' device rule, and the stand-in weights.

Nothing in the library core imports this module; lessons and the test setup do. CONTRIBUTING.md
("How the lessons are checked") explains why each piece is here.

- ``LESSONS_SIZE=ci`` (default): small models and few steps, seconds to minutes on 2 CPU cores. The
  stored notebook outputs are this size, computed **on the CPU in float64**, whatever accelerator
  the machine has: float32 kernels differ between CPUs, GPUs and thread counts in the last bits,
  training amplifies that, and a stored loss or sampled token would then hold on one machine only.
  In float64 on a CPU the same differences stay below 1e-12, far under the printed digits.
  ``LESSONS_DEVICE=cuda`` (or ``mps``) opts into an accelerator; the lesson then says in one line
  that its numbers will differ from the stored ones (on MPS it computes in float32: no float64).
- ``LESSONS_SIZE=full``: GPT-2 124M on the best device (``get_device``), in float32 with the
  precision a user would train with (``precision="auto"``: bf16 autocast where the GPU has it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from .assets import cache_dir
from .device import DEVICE_ENV, get_device, has_float64

SIZE_ENV = "LESSONS_SIZE"
SIZES = ("ci", "full")


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


def device() -> torch.device:
    """Where a lesson computes. CI size: the CPU, whatever accelerator is present (the stored numbers
    are the CPU's), unless ``$LESSONS_DEVICE`` asks for another device. Full size: the best device
    (``get_device``: cuda, then mps, then cpu; ``$LESSONS_DEVICE`` overrides it)."""
    if run_size() == "full" or os.environ.get(DEVICE_ENV, "").strip():
        return get_device()
    return torch.device("cpu")


def dtype() -> torch.dtype:
    """What a lesson computes in: float64 at CI size (float32 on a device without float64, MPS),
    float32 at full size."""
    return torch.float64 if run_size() == "ci" and has_float64(device()) else torch.float32


def setup() -> str:
    """Start a lesson: read the run size and make ``dtype()`` torch's default dtype. Returns the size.

    At CI size on an opted-in accelerator it prints one line saying that the lesson's numbers will
    differ from the stored ones."""
    size, dev, dt = run_size(), device(), dtype()
    torch.set_default_dtype(dt)
    if size == "ci" and dev.type != "cpu":
        name = str(dt).removeprefix("torch.")
        print(f"{DEVICE_ENV}={os.environ[DEVICE_ENV]}: this lesson computes on {dev} in {name}, so its "
              "numbers will differ from the stored ones (made on the CPU in float64).")  # fmt: skip
    return size


def precision() -> str:
    """The ``RunConfig.precision`` a lesson trains with: ``"fp64"`` at CI size (portable stored
    outputs; ``"fp32"`` on MPS), ``"auto"`` at full size (bf16 where the hardware has it)."""
    if run_size() == "full":
        return "auto"
    return "fp64" if dtype() == torch.float64 else "fp32"


# Mantissa bits kept by portable_training. 10 held across CPUs (AVX-512, AVX2, SSE4) and thread
# counts for lesson 11's fine-tuning; 12 and 14 did not: the grid must be coarse next to the drift.
GRID_BITS = 10


@torch.no_grad()
def snap_to_grid(params: Iterable[torch.Tensor], bits: int = GRID_BITS) -> None:
    """Round each value to ``bits`` bits of mantissa, in place (``x = m * 2**e``, ``m`` rounded)."""
    for p in params:
        mantissa, exponent = torch.frexp(p)
        p.copy_(torch.ldexp(torch.round(mantissa * 2.0**bits) / 2.0**bits, exponent))


@contextlib.contextmanager
def portable_training(model: nn.Module, bits: int = GRID_BITS) -> Iterator[None]:
    """At CI size, keep a chaotic training run the same on every CPU: snap ``model``'s weights to a
    coarse grid (``snap_to_grid``) now and after every ``optimizer.step()`` inside the block.

    Some runs (lesson 11's fine-tuning of a tiny model at a high rate) are chaotic: a 1e-12 relative
    change in the weights grows to a different loss within 50 steps, even in float64, and another
    CPU's kernels make such changes every step. On the grid, a step that differs by 1e-16 lands on
    the same grid point unless a weight sits within 1e-16 of a rounding boundary, which is rare, so
    every CPU follows the same path. The run still learns (updates are far larger than the grid's
    spacing of 2**-bits relative), but it is not the run you would do: at full size this does nothing.

    The hook is torch.optim's global step hook, so it also catches an optimizer that a library
    function (``finetune``) makes for itself; it snaps that optimizer's parameters, and is removed
    when the block ends.
    """
    if run_size() == "full":
        yield
        return
    snap_to_grid(model.parameters(), bits)

    def after_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        snap_to_grid((p for group in optimizer.param_groups for p in group["params"]), bits)

    handle = register_optimizer_step_post_hook(after_step)
    try:
        yield
    finally:
        handle.remove()


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
