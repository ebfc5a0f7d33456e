"""One training run: its settings (``RunConfig``), the named recipes, and the ``Trainer`` that
runs them, at any size (lessons 07, 08, 10).

On top of lesson 05's step (``lessons_lib.loop.train_step``): mixed precision, optional
``torch.compile``, AdamW with decay on 2-D tensors only, warmup + cosine learning rate, gradient
clipping, gradient accumulation up to a token budget per step, DDP, validation and samples every N
steps, a JSONL metrics log, and checkpoints that resume bit-identically.

Nothing is lost or overwritten: a run refuses a folder that holds another run, saves at its end,
when it stops on an error between two steps and when Ctrl-C stops it (after the step under way),
and never saves a diverged model.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from tqdm import tqdm

from .assets import atomic_write
from .checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from .data import DataLoaderLite, shakespeare_tokens, train_val_split
from .device import get_device, synchronize
from .distributed import DistInfo, barrier, device_for, init_distributed
from .embedding_init import init_embedding_from_cooccurrence
from .fineweb import ShardedDataLoader
from .generation import generate_text
from .loop import TrainingDivergedError, estimate_loss, train_step
from .model import GPT, GPTConfig
from .monitor import TrainingMonitor
from .optim import configure_optimizer, cosine_lr
from .precision import PRECISIONS, autocast, grad_scaler, param_dtype, resolve_precision, set_tf32
from .utils import (
    NON_NEGATIVE,
    NON_NEGATIVE_NUMBER,
    POSITIVE,
    RATE,
    SEED,
    Bounds,
    UserError,
    mode,
    seed_everything,
)

RUN_FILES = ("ckpt.pt", "metrics.jsonl")  # what makes a folder hold a run
EMBEDDING_INITS = ("normal", "cooccurrence")  # RunConfig.embedding_init
COOCCURRENCE_TOKENS = 10_000_000  # the co-occurrence init counts at most this many training tokens


def knob(default, help: str, resumable: bool = True, bounds: Bounds | None = None):
    """A ``RunConfig`` field with its documentation, the text ``python -m lessons_lib.train --help``
    prints. ``resumable=False``: fixed for a run; ``--resume`` refuses a value other than the saved one
    (it shapes the model, the data stream, the optimizer state or the random numbers). ``bounds``: the
    numbers allowed, checked when a ``RunConfig`` is made and by the command-line flag."""
    if not resumable:
        help += " [fixed for a run]"
    return field(default=default, metadata={"help": help, "resumable": resumable, "bounds": bounds})


@dataclass
class RunConfig:
    """The command line starts from ``RECIPES["shakespeare-cpu"]``, not from these defaults.

    Every setting of a training run: each field is a flag of ``python -m lessons_lib.train``, whose
    ``--help`` shows the recipe's values."""

    # model
    model: str = knob("cpu-small", "a GPTConfig preset: cpu-tiny, cpu-narrow, cpu-small, cpu-medium, gpt2 "
                      "... gpt2-xl", resumable=False)  # fmt: skip
    pad_vocab: bool = knob(False, "pad the embedding to a multiple of 64 rows (50,304): faster GPU matmuls",
                           resumable=False)  # fmt: skip
    dropout: float = knob(0.0, "fraction of activations zeroed in training (GPTConfig.dropout, below 1): "
                          "regularises a run that sees its text more than once", resumable=False,
                          bounds=NON_NEGATIVE_NUMBER)  # fmt: skip
    # data
    data: str = knob("shakespeare", "'shakespeare' (Tiny Shakespeare, 90/10 split) or a folder of token "
                     "shards (python -m lessons_lib.fineweb)", resumable=False)  # fmt: skip
    batch_size: int = knob(8, "micro-batch size B: sequences per forward pass and process", resumable=False,
                           bounds=POSITIVE)  # fmt: skip
    seq_len: int = knob(128, "tokens per sequence T (at most the model's block_size)", resumable=False,
                        bounds=POSITIVE)  # fmt: skip
    total_batch_tokens: int = knob(0, "tokens per optimizer step, reached by gradient accumulation; 0 means "
                                   "one micro-batch per process", resumable=False,
                                   bounds=NON_NEGATIVE)  # fmt: skip
    # optimisation
    max_steps: int = knob(592, "optimizer steps of the whole run (the cosine reaches min_lr there); 592 "
                          "is two passes over Tiny Shakespeare's training split at 8 x 128",
                          bounds=POSITIVE)  # fmt: skip
    max_lr: float = knob(6e-3, "learning rate at the end of warmup", bounds=RATE)
    min_lr: float = knob(6e-4, "learning rate at max_steps, where the cosine ends (at most max_lr)",
                         bounds=NON_NEGATIVE_NUMBER)  # fmt: skip
    warmup_steps: int = knob(25, "steps of linear warmup from max_lr/warmup_steps to max_lr",
                             bounds=NON_NEGATIVE)  # fmt: skip
    weight_decay: float = knob(0.1, "AdamW weight decay of the 2-D tensors (matmuls, embeddings)",
                               resumable=False, bounds=NON_NEGATIVE_NUMBER)  # fmt: skip
    beta2: float = knob(0.95, "AdamW's decay of its squared-gradient average (GPT-2's recipe: 0.95); 0.99 "
                        "averages over more steps, steadier for a short run on small batches",
                        resumable=False, bounds=NON_NEGATIVE_NUMBER)  # fmt: skip
    embedding_init: str = knob("normal", "how the token embedding starts: 'normal' (GPT-2's N(0, 0.02)) "
                               "or 'cooccurrence' (the frequent tokens' rows from the training text's "
                               "co-occurrence counts, lessons_lib/embedding_init.py: a head start "
                               "for a run of a few minutes)", resumable=False)  # fmt: skip
    grad_clip: float = knob(1.0, "clip the global gradient norm to this; 0 disables clipping",
                            bounds=NON_NEGATIVE_NUMBER)  # fmt: skip
    # speed
    precision: str = knob("auto", f"number format: {', '.join(PRECISIONS)} (lessons_lib.precision)",
                          resumable=False)  # fmt: skip
    compile: bool = knob(False, "torch.compile the model for training (evaluation runs it plain)")
    # bookkeeping (intervals in steps; 0 disables)
    eval_interval: int = knob(50, "validation loss every N steps and at the last; 0: only at the last",
                              bounds=NON_NEGATIVE)  # fmt: skip
    eval_batches: int = knob(8, "validation batches per estimate (the same ones every time)", bounds=POSITIVE)
    final_eval_batches: int = knob(0, "validation batches of the estimate after the last step (logged as "
                                   "final_val_loss); 0: the whole validation split (give a number for a "
                                   "large one: a FineWeb-Edu shard is 100M tokens)",
                                   bounds=NON_NEGATIVE)  # fmt: skip
    sample_interval: int = knob(0, "log two samples every N steps; 0 disables", bounds=NON_NEGATIVE)
    checkpoint_interval: int = knob(0, "also write ckpt.pt every N steps (a run always saves at its end); "
                                    "0: only at the end", bounds=NON_NEGATIVE)  # fmt: skip
    hellaswag_interval: int = knob(0, "HellaSwag accuracy every N steps and at the last; 0 disables",
                                   bounds=NON_NEGATIVE)  # fmt: skip
    hellaswag_data: str = knob("val", "HellaSwag split name (downloaded once) or a local JSONL path")
    hellaswag_limit: int = knob(0, "evaluate the first N HellaSwag examples; 0 means all",
                                bounds=NON_NEGATIVE)  # fmt: skip
    monitor_interval: int = knob(0, "logit histograms and per-layer stats every N steps "
                                 "(lessons_lib.monitor); 0 disables", bounds=NON_NEGATIVE)  # fmt: skip
    out_dir: str = knob("runs/shakespeare", "folder for ckpt.pt, metrics.jsonl and the plots; a new run "
                        "refuses one that holds another run")  # fmt: skip
    seed: int = knob(1337, "seed of the weights' init and of the samples", resumable=False, bounds=SEED)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.metadata["bounds"] is not None:
                f.metadata["bounds"].check(f.name, getattr(self, f.name))
        if self.beta2 >= 1:
            raise UserError(f"beta2 must be below 1 (AdamW's average would never forget), got {self.beta2}.")
        if self.embedding_init not in EMBEDDING_INITS:
            raise UserError(
                f"embedding_init must be one of {', '.join(EMBEDDING_INITS)}, got {self.embedding_init!r}."
            )
        if self.min_lr > self.max_lr:
            raise UserError(
                f"min_lr={self.min_lr:g} must be <= max_lr={self.max_lr:g}: the learning rate decays from "
                "max_lr to min_lr."
            )

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Named runs. "gpt2-124m" is the reference recipe (FineWeb-Edu 10B tokens, one epoch).
RECIPES: dict[str, RunConfig] = {
    # The main job. Measured choices (README "The main job"): a narrow model is both faster and
    # better in a few minutes; the co-occurrence init and beta2 0.99 are each worth about 0.1-0.2 of
    # validation loss; 100 warmup steps keep the early steps from knocking some seeds off course.
    "shakespeare-cpu": RunConfig(
        model="cpu-narrow", warmup_steps=100, beta2=0.99, embedding_init="cooccurrence"
    ),
    "shakespeare-cpu-tiny": RunConfig(model="cpu-tiny", seq_len=64, max_steps=200, warmup_steps=20),
    "gpt2-124m": RunConfig(
        model="gpt2", pad_vocab=True, data="data/fineweb_edu_10B", batch_size=64, seq_len=1024,
        total_batch_tokens=524_288, max_steps=19_073, max_lr=6e-4, min_lr=6e-5, warmup_steps=715,
        weight_decay=0.1, grad_clip=1.0, precision="auto", compile=True, eval_interval=250,
        eval_batches=20, final_eval_batches=200, sample_interval=250, checkpoint_interval=1000,
        hellaswag_interval=250, out_dir="runs/gpt2-124m",
    ),
}  # fmt: skip


def _rng_state() -> dict:
    keys, pos = np.random.get_state()[1:3]
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(("MT19937", state["numpy"]["keys"].numpy().astype(np.uint32), state["numpy"]["pos"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _StopRequest:
    requested = False


@contextlib.contextmanager
def _stop_after_the_step() -> Iterator[_StopRequest]:
    """Within the block a first Ctrl-C (SIGINT) only sets ``requested``, so that the step under way
    finishes and the run can be saved where it stands; a second one interrupts at once. Off where
    Python does not raise KeyboardInterrupt on Ctrl-C (other threads, SIGINT ignored)."""
    stop = _StopRequest()
    previous = signal.getsignal(signal.SIGINT)
    main_thread = threading.current_thread() is threading.main_thread()
    if not main_thread or previous is not signal.default_int_handler:
        yield stop
        return

    def ask(signum, frame) -> None:
        stop.requested = True
        signal.signal(signal.SIGINT, previous)
        # os.write, not print: a handler may run in the middle of another write to stderr
        os.write(2, b"\nCtrl-C: stopping after this step to save the run; press it again to stop at once.\n")

    signal.signal(signal.SIGINT, ask)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _logged_step(line: str) -> int | None:
    """The step of one metrics.jsonl record; None for a line cut short (a write killed midway)."""
    if not line.endswith("\n"):
        return None
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


class Trainer:
    """One training run. ``Trainer(cfg).fit()`` trains; ``Trainer.resume(path).fit()`` continues."""

    def __init__(self, cfg: RunConfig, device: str | torch.device | None = None) -> None:
        self.cfg = cfg
        device = get_device(str(device) if device is not None else None)
        self.dist: DistInfo = init_distributed(device)
        self.device = device_for(self.dist, device)
        self.precision = resolve_precision(cfg.precision, self.device)
        set_tf32(self.precision == "tf32")
        seed_everything(cfg.seed)
        self.train_loader, self.val_loader = self._build_loaders()
        overrides = {"vocab_multiple": 64} if cfg.pad_vocab else {}
        model = GPT(GPTConfig.from_preset(cfg.model, dropout=cfg.dropout, **overrides))
        if cfg.embedding_init == "cooccurrence":  # every process computes the same rows
            tokens = self.train_loader.load(0)[:COOCCURRENCE_TOKENS]
            tokens = torch.as_tensor(np.asarray(tokens, np.int64))
            init_embedding_from_cooccurrence(model, tokens, seed=cfg.seed)
        self.model = model.to(self.device, param_dtype(self.precision))
        if cfg.seq_len > self.model.config.block_size:
            raise UserError(f"seq_len={cfg.seq_len} exceeds block_size={self.model.config.block_size}.")
        # compile for training only; evaluation and generation run the plain module
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        if self.dist.enabled:
            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            self.forward = torch.nn.parallel.DistributedDataParallel(self.forward, device_ids=ids)
        self.optimizer, self.param_counts = configure_optimizer(
            self.model, lr=cfg.max_lr, weight_decay=cfg.weight_decay, betas=(0.9, cfg.beta2)
        )
        self.scaler = grad_scaler(self.precision, self.device)
        tokens_per_micro = cfg.batch_size * cfg.seq_len * self.dist.world_size
        total = cfg.total_batch_tokens or tokens_per_micro
        if total % tokens_per_micro:
            raise UserError(
                f"total_batch_tokens={total} is not a multiple of batch_size x seq_len x processes "
                f"= {cfg.batch_size} x {cfg.seq_len} x {self.dist.world_size} = {tokens_per_micro}."
            )
        self.grad_accum_steps = total // tokens_per_micro
        self.monitor = None
        if cfg.monitor_interval and self.dist.is_master:
            self.monitor = TrainingMonitor(self.model, every=cfg.monitor_interval, record_layers=True)
        if cfg.hellaswag_interval and self.dist.is_master:
            self._hellaswag_examples()  # a missing or damaged file fails now, not at the first evaluation
        self.step = 0
        self.out_dir = Path(cfg.out_dir)
        self.history: dict[str, list] = {"step": [], "train_loss": [], "val_step": [], "val_loss": []}
        self.final: dict | None = None  # final_evaluation() of the run's last step, once fit reaches it
        self._resumed_from: Path | None = None  # the checkpoint this run continues
        self._saved: tuple[Path, int] | None = None  # the last checkpoint of this run and its step
        self._claimed = False  # out_dir checked to be this run's

    def _build_loaders(self):
        B, T = self.cfg.batch_size, self.cfg.seq_len
        rank = {"process_rank": self.dist.rank, "num_processes": self.dist.world_size}
        if self.cfg.data == "shakespeare":
            train, val = train_val_split(shakespeare_tokens())
            # validation runs on rank 0 alone, over the whole validation stream
            return DataLoaderLite(B, T, train, **rank), DataLoaderLite(B, T, val)
        return ShardedDataLoader(B, T, self.cfg.data, "train", **rank), ShardedDataLoader(
            B, T, self.cfg.data, "val"
        )

    # --- one optimizer step ------------------------------------------------------------------

    def next_step(self) -> dict:
        """``loop.train_step`` at this step's learning rate, over ``grad_accum_steps`` micro-batches;
        returns the step's metrics."""
        t0 = time.perf_counter()
        lr = cosine_lr(self.step, self.cfg.max_lr, self.cfg.min_lr, self.cfg.warmup_steps, self.cfg.max_steps)
        try:
            result = train_step(
                self.forward, self.optimizer, self.train_loader, self.step, lr=lr,
                grad_clip=self.cfg.grad_clip, accum_steps=self.grad_accum_steps,
                precision=self.precision, scaler=self.scaler, monitor=self.monitor,
            )  # fmt: skip
        except TrainingDivergedError as exc:
            raise TrainingDivergedError(f"{exc} Training stopped; {self._last_checkpoint()}.") from exc
        synchronize(self.device)  # a GPU's queued kernels, so the time is the step's
        seconds = time.perf_counter() - t0
        tokens = self.grad_accum_steps * self.cfg.batch_size * self.cfg.seq_len * self.dist.world_size
        metrics = {"step": self.step, "loss": result.loss, "lr": lr, "grad_norm": result.grad_norm,
                   "tokens_per_s": tokens / seconds, "ms_per_step": 1000 * seconds}  # fmt: skip
        self.step += 1
        return metrics

    def evaluate(self, batches: int | None = None) -> float:
        """The validation loss over the first ``batches`` validation batches (default
        ``cfg.eval_batches``), the same ones every time."""
        batches = self.cfg.eval_batches if batches is None else batches
        with autocast(self.precision, self.device):
            return estimate_loss(self.model, self.val_loader, batches)

    def final_evaluation(self) -> dict:
        """The validation loss after the last step, on ``cfg.final_eval_batches`` batches (0: the
        whole split): the run's result, on more text than the estimates along the way."""
        batches = min(self.cfg.final_eval_batches or len(self.val_loader), len(self.val_loader))
        tokens = batches * self.val_loader.B * self.val_loader.T
        return {"step": self.step, "final_val_loss": self.evaluate(batches), "final_val_tokens": tokens}

    # --- the run -----------------------------------------------------------------------------

    def fit(self, until: int | None = None, progress: bool = True) -> dict[str, list]:
        """Train up to step ``until`` (default ``max_steps``); evaluate, sample, log, checkpoint.

        ``out_dir`` must not hold another run (see ``claim_out_dir``). The run is saved to
        ``out_dir/ckpt.pt`` when ``fit`` returns, every ``checkpoint_interval`` steps, and when an
        error stops it between two steps (an evaluation, say). Ctrl-C lets the step under way
        finish, saves, and raises KeyboardInterrupt saying how to resume. A step that diverges
        raises TrainingDivergedError and saves nothing: the last checkpoint stays.

        Under torchrun, every process trains; rank 0 alone evaluates, logs and checkpoints.
        """
        until = self.cfg.max_steps if until is None else min(until, self.cfg.max_steps)
        master = self.dist.is_master
        self.claim_out_dir()
        barrier(self.dist)  # every process has checked out_dir before rank 0 writes in it
        if master:
            log = self._open_log()
        bar = tqdm(
            total=until, initial=self.step, desc="train", disable=not (progress and master), mininterval=1
        )
        between_steps = True  # saving now would resume exactly
        with _stop_after_the_step() as stop:
            try:
                while self.step < until and not stop.requested:
                    record = self._evaluations(self.step)
                    between_steps = False
                    self._train_one(record, log if master else None, bar)
                    between_steps = True
                if master and self.step == self.cfg.max_steps and not stop.requested:
                    self.final = self.final_evaluation()
                    log.write(json.dumps(self.final) + "\n")
                if master and self._unsaved():
                    self.save()
            except BaseException as exc:
                if master and between_steps and self._unsaved():
                    self.save()  # e.g. the final evaluation failed: the steps before it are kept
                if isinstance(exc, KeyboardInterrupt) and master:
                    raise KeyboardInterrupt(self._interrupted(between_steps)) from None
                raise
            finally:
                bar.close()
                if master:
                    log.close()
        if stop.requested:
            raise KeyboardInterrupt(self._interrupted(True) if master else "")
        return self.history

    def _evaluations(self, step: int) -> dict:
        """What is due before ``step``: validation loss, a sample, HellaSwag (rank 0 only)."""
        record = {}
        if not self.dist.is_master:
            return record
        last = step == self.cfg.max_steps - 1
        if self._due(self.cfg.eval_interval, step) or last:
            record["val_loss"] = self.evaluate()
            self.history["val_step"].append(step)
            self.history["val_loss"].append(record["val_loss"])
        if self._due(self.cfg.sample_interval, step) and step > 0:
            record["sample"] = self.sample()[0]
        if self.cfg.hellaswag_interval and (self._due(self.cfg.hellaswag_interval, step) or last):
            record["hellaswag"] = self.hellaswag().to_dict()
        return record

    def _train_one(self, record: dict, log: TextIO | None, bar: tqdm) -> None:
        """One step, its log record, and the checkpoint when one is due."""
        step = self.step
        record = {**self.next_step(), **record}
        self.history["step"].append(step)
        self.history["train_loss"].append(record["loss"])
        if log is None:
            return
        log.write(json.dumps(record) + "\n")
        log.flush()
        postfix = {"loss": f"{record['loss']:.3f}", "lr": f"{record['lr']:.1e}"}
        if self.history["val_loss"]:
            postfix["val"] = f"{self.history['val_loss'][-1]:.3f}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)
        if self._due(self.cfg.checkpoint_interval, self.step):
            self.save()

    def _open_log(self) -> TextIO:
        """metrics.jsonl for appending, without the records of steps from this one on: a run resumed
        from an earlier checkpoint replays them (rewritten atomically; a line cut short goes too)."""
        path = self.out_dir / "metrics.jsonl"
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [line for line in lines if (step := _logged_step(line)) is not None and step < self.step]
            if kept != lines:
                atomic_write(path, lambda f: f.write("".join(kept).encode("utf-8")))
        return open(path, "a", encoding="utf-8")

    def claim_out_dir(self) -> None:
        """Check that ``out_dir`` may hold this run's files, and create it (rank 0): a folder with
        another run's checkpoint or metrics is refused, except the folder of the checkpoint this run
        resumed. Under torchrun every process checks (``fit`` waits for all before writing), so that
        they all stop, not rank 0 alone."""
        if self._claimed:
            return
        out = self.out_dir
        if out.exists() and not out.is_dir():
            raise UserError(f"out_dir {out} is a file, not a folder; choose another --out-dir.")
        found = [name for name in RUN_FILES if (out / name).exists()]
        own = self._resumed_from is not None and self._resumed_from.resolve().parent == out.resolve()
        if found and not own:
            hint = (
                f"continue it with --resume {out / 'ckpt.pt'} (Trainer.resume)"
                if "ckpt.pt" in found
                else "it has no checkpoint to resume"
            )
            raise UserError(
                f"{out} already holds a run ({', '.join(found)}) that this one would overwrite: {hint}, "
                "or choose another --out-dir (out_dir), or delete that folder."
            )
        if self.dist.is_master:
            out.mkdir(parents=True, exist_ok=True)
        self._claimed = True

    def _unsaved(self) -> bool:
        return self._saved != (self.out_dir / "ckpt.pt", self.step)

    def _last_checkpoint(self) -> str:
        if self._saved is None:
            return "no checkpoint of this run was saved"
        path, step = self._saved
        return f"the last checkpoint, {path}, is from step {step}"

    def _interrupted(self, saved: bool) -> str:
        if saved and self._saved is not None:
            path = self._saved[0]
            return (
                f"interrupted at step {self.step}, saved to {path}; continue with: "
                f"python -m lessons_lib.train --resume {path}"
            )
        resume = f"; continue from it with --resume {self._saved[0]}" if self._saved else ""
        lost = f"stopped at once after {self.step} steps, the next one half done and lost"
        return f"{lost}; {self._last_checkpoint()}{resume}"

    @staticmethod
    def _due(interval: int, step: int) -> bool:
        return interval > 0 and step % interval == 0

    def _hellaswag_examples(self) -> list[dict]:
        from .hellaswag import load_hellaswag

        if not hasattr(self, "_hellaswag"):
            self._hellaswag = load_hellaswag(self.cfg.hellaswag_data, self.cfg.hellaswag_limit or None)
        return self._hellaswag

    def hellaswag(self):
        """HellaSwag accuracy of the model on ``cfg.hellaswag_data`` (loaded once)."""
        from .hellaswag import evaluate_hellaswag

        with autocast(self.precision, self.device):
            return evaluate_hellaswag(self.model, self._hellaswag_examples(), progress=False)

    def sample(self, prompt: str = "\n", num_sequences: int = 2, max_new_tokens: int = 32) -> list[str]:
        """``num_sequences`` continuations of ``prompt`` from the model, seeded by the run's seed."""
        with mode(self.model, training=False):
            return generate_text(self.model, prompt, num_sequences, max_new_tokens, seed=self.cfg.seed)

    # --- checkpoints -------------------------------------------------------------------------

    def save(self, path: str | Path | None = None) -> Path:
        """Everything ``resume`` needs, atomically, to ``path`` (default ``out_dir/ckpt.pt``, after
        ``claim_out_dir``)."""
        if path is None:
            self.claim_out_dir()
        written = save_checkpoint(
            path or self.out_dir / "ckpt.pt",
            self.model,
            run_config=asdict(self.cfg),
            step=self.step,
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict(),
            train_loader=self.train_loader.state_dict(),
            rng=_rng_state(),
            history=self.history,
            monitor=self.monitor.state_dict() if self.monitor else None,
        )
        if path is None:
            self._saved = (written, self.step)
        return written

    @classmethod
    def resume(cls, path: str | Path, device: str | torch.device | None = None, **overrides) -> Trainer:
        """Continue a run from its checkpoint exactly where it stopped, with its saved settings.

        ``overrides`` change resumable settings (the schedule, intervals, ...); a setting fixed for
        a run (``knob(resumable=False)``) must keep its saved value. The run writes into the
        checkpoint's own folder, or ``out_dir`` when given: never where the file says it was made.
        Its data folder is the saved one, which must exist here.
        """
        path = Path(path)
        state = load_checkpoint(path, map_location="cpu")
        if "run_config" not in state:
            raise CheckpointError(
                f"{path} holds weights only (no run state); load it with lessons_lib.load_model."
            )
        try:
            saved = RunConfig.from_dict(state["run_config"])
        except (UserError, TypeError) as exc:
            raise CheckpointError(f"{path} holds run settings that are not valid: {exc}") from exc
        fixed = [f.name for f in fields(RunConfig) if not f.metadata["resumable"]]
        changed = [
            f"{name}={overrides[name]!r} (saved: {getattr(saved, name)!r})"
            for name in fixed
            if name in overrides and overrides[name] != getattr(saved, name)
        ]
        if changed:
            raise UserError(
                f"Cannot resume {path} with {', '.join(changed)}: these settings are fixed for a run "
                "(they shape the model, the data stream, the optimizer state or the random numbers). "
                "Drop them to continue the run, or start a new run without --resume."
            )
        cfg = replace(saved, **{**overrides, "out_dir": str(overrides.get("out_dir") or path.parent)})
        if cfg.data != "shakespeare" and not Path(cfg.data).is_dir():
            raise UserError(
                f"{path} was trained on the shards in {cfg.data}, which is not a folder here (relative "
                f"paths start at {Path.cwd()}). Resume from the folder the run started in, or put the "
                "shards there: the data is fixed for a run."
            )
        trainer = cls(cfg, device)
        load_weights(trainer.model, state, path)
        try:
            trainer.optimizer.load_state_dict(state["optimizer"])
            trainer.scaler.load_state_dict(state["scaler"])
            trainer.train_loader.load_state_dict(state["train_loader"])
            trainer.step = state["step"]
            trainer.history = state["history"]
            if trainer.monitor and state.get("monitor"):
                trainer.monitor.load_state_dict(state["monitor"])
            _set_rng_state(state["rng"])
        except UserError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{path}: its run state does not fit this run ({type(exc).__name__}: {exc})"
            ) from exc
        trainer._resumed_from = path
        trainer._saved = (path, trainer.step)
        return trainer
