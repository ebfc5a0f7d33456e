"""Which device to run on: the best one here, or the one asked for (lesson 00)."""

from __future__ import annotations

import os

import torch

from .utils import UserError

DEVICE_ENV = "LESSONS_DEVICE"


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
            raise UserError(f"Device {choice!r} is not available here; use 'cpu' or leave it unset.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
