"""Plots the lessons and the training job draw. Each returns a matplotlib ``Figure`` (no pyplot
state, so they work headless) and saves it when given a ``path``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    return fig


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average; the first points average over what exists so far."""
    v = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(v, 0, 0.0))
    n = np.minimum(np.arange(1, len(v) + 1), window)
    return (c[1:] - c[np.arange(1, len(v) + 1) - n]) / n


def plot_losses(history: dict[str, list], path: str | Path | None = None, window: int = 20) -> Figure:
    """Train loss (raw and smoothed) and validation loss against the step."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.plot(history["step"], history["train_loss"], alpha=0.3, color="C0", label="train (per step)")
    ax.plot(
        history["step"],
        smooth(history["train_loss"], window),
        color="C0",
        label=f"train ({window}-step mean)",
    )
    if history.get("val_loss"):
        ax.plot(history["val_step"], history["val_loss"], "o-", color="C1", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)
