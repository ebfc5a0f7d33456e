"""Plots the lessons and the training job draw. Each returns a matplotlib ``Figure`` (no pyplot
state, so they work headless) and saves it when given a ``path``. In Jupyter such a Figure shows
as a picture wherever it is a cell's value or passed to ``display``.

Losses and the learning-rate schedule come from the run's history; logit histograms and
per-layer statistics from a ``TrainingMonitor`` (or its ``state_dict()``, e.g. out of a
checkpoint); attention maps from a model and a prompt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.collections import PolyCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from .assets import atomic_write
from .model import GPT
from .monitor import TrainingMonitor
from .precision import upcast
from .utils import mode, positive_int


def _show_figures_inline() -> None:
    """Make IPython render ``Figure`` objects as PNG, not as ``<Figure size ...>`` text.

    Jupyter's inline backend registers that formatter only once a pyplot figure exists; figures
    made without pyplot (all of ours) would otherwise display as their repr.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:  # no IPython: nothing displays figures anyway
        return
    shell = get_ipython()
    if shell is not None:
        png = shell.display_formatter.formatters["image/png"]
        png.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight", dpi=110))


_show_figures_inline()


def _save(fig: Figure, path: str | Path | None) -> Figure:
    """Write to a temporary file, then rename: a crash never leaves half an image behind."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = path.suffix.lstrip(".").lower() or "png"
        meta = {"Software": None} if fmt == "png" else None  # no version string: reproducible bytes
        atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=110, bbox_inches="tight", metadata=meta))
    return fig


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average; the first points average over what exists so far."""
    positive_int("window (steps to average)", window)
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


def plot_lr_schedule(
    schedule: Sequence[float] | Callable[[int], float],
    steps: int | None = None,
    path: str | Path | None = None,
) -> Figure:
    """The learning rate per step: a list of rates, or a function of the step evaluated on
    ``range(steps)``, e.g. ``lambda s: cosine_lr(s, 6e-4, 6e-5, 715, 19073)``."""
    if callable(schedule):
        positive_int("steps (plotting a schedule function needs them)", steps)
        lrs = [float(schedule(s)) for s in range(steps)]
    else:
        lrs = [float(v) for v in schedule]
        if not lrs:
            raise ValueError("The learning-rate list is empty; pass one rate per step.")
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    ax.plot(np.arange(len(lrs)), lrs, color="C2")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax.grid(alpha=0.3)
    return _save(fig, path)


# --- logit histograms --------------------------------------------------------------------------


def _monitor_state(source: TrainingMonitor | dict) -> dict:
    return source.state_dict() if isinstance(source, TrainingMonitor) else source


def _logit_records(source: TrainingMonitor | dict) -> dict:
    logits = _monitor_state(source).get("logits", {})
    if not logits.get("step"):
        raise ValueError(
            "No logit histograms recorded yet. Call TrainingMonitor.observe(step, logits) in the "
            "training loop, on steps that are multiples of its `every`."
        )
    return logits


def _histogram(logits: dict, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres and the fraction of the sampled logits in each bin, for record ``i``."""
    counts = np.asarray(logits["counts"][i], dtype=float)
    lo, hi = logits["range"][i]
    edges = np.linspace(lo, hi, len(counts) + 1)
    total = counts.sum() + logits["below"][i] + logits["above"][i]
    return (edges[:-1] + edges[1:]) / 2, counts / max(total, 1.0)


def _pick(n: int, most: int) -> list[int]:
    """At most ``most`` evenly spaced indices of ``range(n)``, always keeping the last."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def plot_logit_waterfall(
    source: TrainingMonitor | dict, path: str | Path | None = None, max_lines: int = 30
) -> Figure:
    """TensorBoard's histogram view: one filled curve per recorded step, later steps in front.
    Widening curves mean growing logits (over-confidence); a drifting centre, a biased head.

    Every record is re-binned onto one set of bins spanning all of them and drawn as a density
    (fraction per unit of logit), so a narrow early distribution stands tall and a wide late one
    low, whatever range each record was histogrammed over."""
    logits = _logit_records(source)
    if not isinstance(max_lines, int) or max_lines < 2:
        raise ValueError(f"max_lines must be an integer >= 2, got {max_lines!r}.")
    picked = _pick(len(logits["step"]), max_lines)
    steps = [logits["step"][i] for i in picked]
    lo = min(r[0] for r in logits["range"])
    hi = max(r[1] for r in logits["range"])
    edges = np.linspace(lo, hi, max(len(c) for c in logits["counts"]) + 1)
    x = (edges[:-1] + edges[1:]) / 2
    cmap = matplotlib.colormaps["viridis"]
    fig = Figure(figsize=(8, 5.5))
    ax = fig.add_subplot(projection="3d")
    top = 0.0
    for j, i in enumerate(picked):
        density = _rebinned(logits, i, edges) / (edges[1] - edges[0])
        color = cmap(j / max(1, len(picked) - 1))
        outline = [(x[0], 0.0), *zip(x, density, strict=True), (x[-1], 0.0)]
        ax.add_collection3d(PolyCollection([outline], facecolors=[color], alpha=0.5), zs=steps[j], zdir="y")
        ax.plot(x, np.full_like(x, steps[j]), density, color=color, lw=1)
        top = max(top, float(density.max()))
    ax.set_xlim(lo, hi)
    first, last = (steps[0], steps[-1]) if len(steps) > 1 else (steps[0] - 1, steps[0] + 1)
    ax.set_ylim(last, first)  # reversed: the latest step nearest the viewer
    ax.set_zlim(0, top * 1.05 or 1.0)
    ax.set_xlabel("logit value")
    ax.set_ylabel("step")
    ax.set_zlabel("density (fraction per unit logit)")
    ax.set_title("Output logits over training: density on shared bins")
    ax.view_init(elev=30, azim=-70)
    return _save(fig, path)


def plot_logit_heatmap(
    source: TrainingMonitor | dict,
    path: str | Path | None = None,
    log_scale: bool = True,
    bins: int | None = None,
) -> Figure:
    """Logit histograms as an image: step along x, logit value along y, colour = fraction of the
    logits in that bin. ``log_scale`` shows the thin tails, where the confident tokens are.

    Histograms with their own ranges (``logit_range=None``) are re-binned onto ``bins`` shared
    bins spanning all of them, each old bin's mass going to the shared bin holding its centre.
    """
    logits = _logit_records(source)
    steps = np.asarray(logits["step"], dtype=float)
    nbins = max(len(c) for c in logits["counts"]) if bins is None else bins
    positive_int("bins", nbins)
    lo = min(r[0] for r in logits["range"])
    hi = max(r[1] for r in logits["range"])
    value_edges = np.linspace(lo, hi, nbins + 1)
    grid = np.stack([_rebinned(logits, i, value_edges) for i in range(len(steps))])  # (steps, bins)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    if log_scale:
        shown = np.ma.masked_less_equal(grid.T, 0.0)  # empty bins: background, not log(0)
        positive = grid[grid > 0]
        norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
    else:
        shown, norm = grid.T, None
    mesh = ax.pcolormesh(_edges(steps), value_edges, shown, norm=norm, cmap="magma", shading="flat")
    fig.colorbar(mesh, ax=ax, label="fraction of logits" + (" (log scale)" if log_scale else ""))
    ax.set_xlabel("step")
    ax.set_ylabel("logit value")
    ax.set_title("Output logits over training: fraction per bin")
    return _save(fig, path)


def _rebinned(logits: dict, i: int, edges: np.ndarray) -> np.ndarray:
    centres, freq = _histogram(logits, i)
    return np.histogram(centres, bins=edges, weights=freq)[0]


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges halfway between consecutive steps, so uneven spacing still tiles the axis."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = (centres[:-1] + centres[1:]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


# --- per-layer statistics ----------------------------------------------------------------------


def plot_layer_stats(source: TrainingMonitor | dict, path: str | Path | None = None) -> Figure:
    """One line per block over the recorded steps: the residual stream's mean and std after
    the block, and the norm of the block's parameter gradients (log scale). A std that keeps
    growing with depth or time, or a gradient norm that collapses, shows here first."""
    state = _monitor_state(source)
    acts, grads = state.get("activations", {}), state.get("grads", {})
    panels = []
    if acts.get("step"):
        panels.append((acts["step"], acts["mean"], "activation mean"))
        panels.append((acts["step"], acts["std"], "activation std"))
    if grads.get("step"):
        panels.append((grads["step"], grads["norm"], "gradient norm"))
    if not panels:
        raise ValueError(
            "No per-layer statistics recorded. Create the TrainingMonitor with record_layers=True "
            "and call start_step / observe / observe_grads in the training loop."
        )
    fig = Figure(figsize=(5 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (steps, values, label) in zip(axes, panels, strict=True):
        values = np.asarray(values, dtype=float)  # (steps, layers)
        cmap = matplotlib.colormaps["viridis"]
        for layer in range(values.shape[1]):
            color = cmap(layer / max(1, values.shape[1] - 1))
            ax.plot(steps, values[:, layer], color=color, label=f"layer {layer}")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        if label == "gradient norm" and (values > 0).all():
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return _save(fig, path)


# --- attention maps ----------------------------------------------------------------------------


def _token_label(text: str) -> str:
    return text.replace("\n", "\\n").replace("\t", "\\t")


def attention_maps(
    model: GPT, prompt: str | Sequence[int], layers: Sequence[int] | None = None, tokenizer=None
) -> tuple[list[str], dict[int, torch.Tensor]]:
    """The prompt's tokens and, per layer, the attention weights ``(n_head, T, T)``: row i is how
    much query token i takes from each earlier token. Works with either attention
    implementation: the weights are recomputed from the q and k that ``c_attn`` produces.

    ``tokenizer`` needs ``encode(str)`` and ``decode(list[int])`` (default: GPT-2's).
    """
    if tokenizer is None:
        from .tokenizer import get_encoding

        tokenizer = get_encoding()
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
    if not ids:
        raise ValueError("The prompt is empty; give at least one token to attend from.")
    blocks = model.transformer.h
    layers = list(range(len(blocks))) if layers is None else list(layers)
    bad = [i for i in layers if not 0 <= i < len(blocks)]
    if bad:
        raise ValueError(f"layers {bad} do not exist; the model has layers 0 .. {len(blocks) - 1}.")
    n_head, n_embd = model.config.n_head, model.config.n_embd
    weights: dict[int, torch.Tensor] = {}

    def hook_for(layer: int):
        def hook(module, inputs, qkv: torch.Tensor) -> None:
            q, k, _ = upcast(qkv).split(n_embd, dim=2)
            B, T, _ = q.shape
            q = q.view(B, T, n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
            k = k.view(B, T, n_head, -1).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
            causal = torch.ones(T, T, dtype=torch.bool, device=att.device).tril()
            weights[layer] = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)[0].cpu()

        return hook

    hooks = [blocks[i].attn.c_attn.register_forward_hook(hook_for(i)) for i in layers]
    try:
        device = next(model.parameters()).device
        with torch.no_grad(), mode(model, training=False):
            model(torch.tensor([ids], dtype=torch.long, device=device))
    finally:
        for h in hooks:
            h.remove()
    tokens = [_token_label(tokenizer.decode([i])) for i in ids]
    return tokens, weights


def plot_attention(
    model: GPT,
    prompt: str | Sequence[int],
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    tokenizer=None,
    path: str | Path | None = None,
) -> Figure:
    """Attention heatmaps for a prompt, one per (layer, head): rows are the querying tokens,
    columns the tokens they read from. Default: every layer and head."""
    tokens, weights = attention_maps(model, prompt, layers, tokenizer)
    n_head = model.config.n_head
    heads = list(range(n_head)) if heads is None else list(heads)
    bad = [h for h in heads if not 0 <= h < n_head]
    if bad:
        raise ValueError(f"heads {bad} do not exist; the model has heads 0 .. {n_head - 1}.")
    layers = sorted(weights)
    side = max(2.5, 0.28 * len(tokens) + 1)
    fig = Figure(figsize=(side * len(heads) + 1, side * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), len(heads), squeeze=False)
    ticks = np.arange(len(tokens))
    for row, layer in zip(axes, layers, strict=True):
        for ax, head in zip(row, heads, strict=True):
            image = ax.imshow(weights[layer][head].numpy(), vmin=0.0, vmax=1.0, cmap="viridis")
            ax.set_xticks(ticks, tokens, rotation=90, fontsize="small")
            ax.set_yticks(ticks, tokens, fontsize="small")
            ax.set_title(f"layer {layer}, head {head}")
            ax.set_xlabel("key (attended to)")
            ax.set_ylabel("query")
    fig.colorbar(image, ax=axes.ravel().tolist(), label="attention weight", shrink=0.8)
    return _save(fig, path)
