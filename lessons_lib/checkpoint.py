"""Checkpoints that survive crashes and never execute code when loaded.

Saving writes to a temporary file in the same folder, flushes it to disk, then renames it over
the old checkpoint: a crash mid-save leaves the previous checkpoint intact. Loading uses
``torch.load(weights_only=True)``, which refuses any pickled object other than tensors and
plain containers, so a tampered file cannot run code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from .assets import atomic_write
from .model import GPT, GPTConfig


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or holds something other than plain data."""


def save_checkpoint(path: str | os.PathLike, model: GPT, **extra) -> Path:
    """Write ``model``'s weights and config plus ``extra`` plain data (step, optimizer state...)."""
    path = Path(path)
    state = {"model": model.state_dict(), "config": model.config.to_dict(), **extra}
    atomic_write(path, lambda f: torch.save(state, f))
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Train one with `python -m lessons_lib.train`.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refusing to load {path}: it holds objects other than tensors and plain data, and "
            f"loading it could run arbitrary code ({str(exc).splitlines()[0]}). Only load "
            "checkpoints written by lessons_lib.save_checkpoint from a source you trust."
        ) from exc
    except (RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {exc}") from exc
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path} is a torch file but not a lessons_lib checkpoint (no model/config).")
    return state


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> GPT:
    state = load_checkpoint(path, map_location=device)
    model = GPT(GPTConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model.to(device)
