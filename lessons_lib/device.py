"""Which device to run on, and the run size (CI vs full) every notebook reads (lesson 00)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_ENV = "LESSONS_DEVICE"
SIZE_ENV = "LESSONS_SIZE"
SIZES = ("ci", "full")


def get_device(preferred: str | None = None) -> torch.device:
    """cuda, then mps, then cpu; ``preferred`` or ``$LESSONS_DEVICE`` overrides the choice."""
    choice = preferred or os.environ.get(DEVICE_ENV) or ""
    if choice:
        device = torch.device(choice)
        available = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": torch.backends.mps.is_available(),
        }.get(device.type, False)
        if not available:
            raise ValueError(f"Device {choice!r} is not available here; use 'cpu' or leave it unset.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
