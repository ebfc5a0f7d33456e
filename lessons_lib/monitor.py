"""What the network does while it trains: logit histograms and per-layer statistics every N steps.

The loss says *whether* training works; these say *how*. Logits that spread out, blocks whose
activations grow step after step, or layers whose gradients vanish are visible here long before
the loss curve shows anything. Recording is cheap: nothing happens on the other steps, and a
recording step histograms a few positions' logits and reads one mean/std per block.

Plugging it into a loop (``lessons_lib.viz`` draws what it records)::

    monitor = TrainingMonitor(model, every=50, record_layers=True)
    for step in range(max_steps):
        monitor.start_step(step)                # arms the block hooks on recording steps
        logits, loss = model(x, y)
        monitor.observe(step, logits)           # logit histogram on recording steps
        loss.backward()
        monitor.observe_grads(step)             # per-block gradient norms (after unscaling, if any)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    save_checkpoint(path, model, monitor=monitor.state_dict())   # plain data: loads weights_only
    monitor.remove()                            # detach the hooks

With gradient accumulation call ``start_step`` once per step and ``observe`` after every
micro-batch: only the step's first micro-batch is recorded.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .model import Block
from .precision import upcast
from .utils import positive_int


class TrainingMonitor:
    """Records, every ``every`` steps, a ``bins``-bin histogram of the logits of
    ``positions`` positions (the full vocabulary at each) and, with ``record_layers``, the mean
    and std of every block's output and the gradient norm of every block's parameters.

    ``logit_range=(lo, hi)`` fixes the bins, so steps compare bin for bin (values outside are
    counted in ``below``/``above``); ``None`` fits the bins to each step's own min and max.
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = 50,
        bins: int = 64,
        logit_range: tuple[float, float] | None = None,
        record_layers: bool = False,
        positions: int = 16,
    ) -> None:
        self.every = positive_int("TrainingMonitor every", every)
        self.bins = positive_int("TrainingMonitor bins", bins)
        self.positions = positive_int("TrainingMonitor positions", positions)
        if logit_range is not None:
            lo, hi = (float(v) for v in logit_range)
            if not lo < hi:
                raise ValueError(f"logit_range must be (lo, hi) with lo < hi, got {logit_range!r}.")
            logit_range = (lo, hi)
        self.logit_range = logit_range
        self.record_layers = record_layers
        self.blocks = [m for m in model.modules() if isinstance(m, Block)]
        if record_layers and not self.blocks:
            raise ValueError(
                f"record_layers=True needs a model made of lessons_lib Blocks; {type(model).__name__} "
                "has none. Pass a lessons_lib.GPT, or record_layers=False."
            )
        self.logits: dict[str, list] = {"step": [], "range": [], "counts": [], "below": [], "above": [],
                                         "mean": [], "std": []}  # fmt: skip
        self.activations: dict[str, list] = {"step": [], "mean": [], "std": []}
        self.grads: dict[str, list] = {"step": [], "norm": []}
        self._armed: int | None = None  # the step whose block outputs the hooks should capture
        self._pending: dict[int, torch.Tensor] = {}
        self._hooks = []
        if record_layers:
            self._hooks = [b.register_forward_hook(self._block_hook(i)) for i, b in enumerate(self.blocks)]

    def due(self, step: int) -> bool:
        return step % self.every == 0

    # --- recording ---------------------------------------------------------------------------

    def start_step(self, step: int) -> bool:
        """Call before the step's first forward pass: arms the block hooks if ``step`` records."""
        self._armed = step if self.record_layers and self.due(step) else None
        self._pending = {}
        return self.due(step)

    def _block_hook(self, layer: int):
        def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
            if self._armed is None or layer in self._pending:
                return
            with torch.no_grad():
                x = upcast(output.detach())
                self._pending[layer] = torch.stack([x.mean(), x.std()])  # stays on device: no sync

        return hook

    @torch.no_grad()
    def observe(self, step: int, logits: torch.Tensor) -> bool:
        """Histogram ``logits`` (``(..., vocab)``) if ``step`` records; True if it did."""
        if not self.due(step) or (self.logits["step"] and self.logits["step"][-1] == step):
            return False
        if not isinstance(logits, torch.Tensor) or logits.dim() < 2:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"logits must be a tensor of shape (..., vocab), got {shape}.")
        rows = logits.detach().reshape(-1, logits.size(-1))
        # evenly spaced positions, not random ones: the training RNG must not move
        stride = max(1, rows.size(0) // self.positions)
        sample = upcast(rows[::stride][: self.positions]).flatten()
        sample = sample[sample.isfinite()]  # a diverged step is the loss check's to report, not ours
        if sample.numel() == 0:
            return False
        if self.logit_range is None:
            lo, hi = sample.min().item(), sample.max().item()
            hi = hi if hi > lo else lo + 1.0  # all equal: one non-empty bin instead of an error
        else:
            lo, hi = self.logit_range
        counts = torch.histc(sample, bins=self.bins, min=lo, max=hi)
        below, above = (sample < lo).sum().to(sample.dtype), (sample > hi).sum().to(sample.dtype)
        stats = [below, above, sample.mean(), sample.std(correction=0)]
        below, above, mean, std = torch.stack(stats).tolist()  # one device sync for all four
        self.logits["step"].append(step)
        self.logits["range"].append([lo, hi])
        self.logits["counts"].append([int(c) for c in counts.tolist()])
        self.logits["below"].append(int(below))
        self.logits["above"].append(int(above))
        self.logits["mean"].append(mean)
        self.logits["std"].append(std)
        self._flush_activations()
        return True

    def _flush_activations(self) -> None:
        if self._armed is None or len(self._pending) < len(self.blocks):
            return
        mean, std = torch.stack([self._pending[i] for i in range(len(self.blocks))]).T.tolist()
        self.activations["step"].append(self._armed)
        self.activations["mean"].append(mean)
        self.activations["std"].append(std)
        self._armed, self._pending = None, {}

    @torch.no_grad()
    def observe_grads(self, step: int) -> bool:
        """Record the L2 norm of each block's parameter gradients; call after ``backward`` (and
        after ``scaler.unscale_``, or the norms carry the loss scale)."""
        if not (self.record_layers and self.due(step)):
            return False
        if self.grads["step"] and self.grads["step"][-1] == step:
            return False
        norms = []
        for block in self.blocks:
            grads = [upcast(p.grad.detach()).norm() for p in block.parameters() if p.grad is not None]
            norms.append(torch.stack(grads).norm() if grads else torch.zeros(()))
        self.grads["step"].append(step)
        self.grads["norm"].append(torch.stack(norms).tolist())
        self._flush_activations()  # in case observe() was not called with the logits
        return True

    # --- checkpointing -----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything recorded, as lists and numbers: safe for ``torch.load(weights_only=True)``."""
        return {
            "every": self.every,
            "bins": self.bins,
            "positions": self.positions,
            "logit_range": None if self.logit_range is None else list(self.logit_range),
            "logits": {k: list(v) for k, v in self.logits.items()},
            "activations": {k: list(v) for k, v in self.activations.items()},
            "grads": {k: list(v) for k, v in self.grads.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue the records of a resumed run; the settings stay those given to ``__init__``."""
        missing = {"logits", "activations", "grads"} - set(state)
        if missing:
            raise ValueError(f"Not a TrainingMonitor state: missing {sorted(missing)}.")
        self.logits = {k: list(state["logits"].get(k, [])) for k in self.logits}
        self.activations = {k: list(state["activations"].get(k, [])) for k in self.activations}
        self.grads = {k: list(state["grads"].get(k, [])) for k in self.grads}

    def remove(self) -> None:
        """Detach the hooks from the model; the records stay."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._armed, self._pending = None, {}
