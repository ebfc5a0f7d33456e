"""Checkpoints that survive crashes, show damage, and never execute code when loaded.

Saving turns the state into plain data first (a ``Path`` becomes a string, a numpy scalar a Python
number) and refuses anything else the loader would reject, so every file written here loads. It
stores a sha256 of the whole state beside it, and writes atomically (``assets.atomic_write``): a
crash or a full disk mid-save leaves the previous checkpoint intact.

Loading uses ``torch.load(weights_only=True)``, which refuses any pickled object other than
tensors and plain containers, so a tampered file cannot run code; then it recomputes the sha256,
so bytes flipped on a disk or in a copy are refused instead of trained on. The checksum detects
damage, not tampering (whoever edits a file can store a new one). Checkpoints written before it
existed still load, with a warning that they cannot be checked.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
from collections import OrderedDict
from pathlib import Path, PurePath

import numpy as np
import torch

from .assets import atomic_write
from .model import GPT, PRESETS, GPTConfig
from .utils import UserError

CHECKSUM_KEY = "sha256"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
PLAIN_TYPES = (bool, int, float, complex, str, bytes, type(None), torch.Size, torch.dtype, torch.device)
# the GPTConfig fields a model's weights depend on (``attention`` only picks a kernel)
WEIGHT_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "vocab_multiple")


class CheckpointError(UserError):
    """A checkpoint cannot be used: missing, damaged, of another model size, or not plain data."""


def _plain(obj, where: str):
    """``obj`` as data that ``torch.load(weights_only=True)`` accepts, or a CheckpointError at ``where``."""
    if isinstance(obj, torch.Tensor) or type(obj) in PLAIN_TYPES:
        return obj
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, np.generic):  # np.float64(0.5) -> 0.5
        return _plain(obj.item(), where)
    if isinstance(obj, dict):
        items = ((_plain(k, f"{where} key {k!r}"), _plain(v, f"{where}[{k!r}]")) for k, v in obj.items())
        return OrderedDict(items) if isinstance(obj, OrderedDict) else dict(items)
    if type(obj) in (list, tuple, set):
        return type(obj)(_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise CheckpointError(
        f"Cannot save {where}: a {type(obj).__module__}.{type(obj).__qualname__} is not plain data, and "
        "the loader refuses objects it would have to unpickle. Save tensors, numbers, strings, lists, "
        "tuples and dicts instead (e.g. dataclasses.asdict(x), x.tolist(), torch.from_numpy(x))."
    )


def _digest(obj, h) -> None:
    """Feed ``obj`` to the hash ``h``: tensors by dtype, shape and bytes, containers by structure."""
    if isinstance(obj, torch.Tensor):
        flat = obj.detach().contiguous().view(-1)
        h.update(f"tensor {flat.dtype} {tuple(obj.shape)};".encode())
        h.update(flat.view(torch.uint8).cpu().numpy())
    elif isinstance(obj, dict):
        h.update(f"dict {len(obj)};".encode())
        for key, value in obj.items():
            _digest(key, h)
            _digest(value, h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"list {len(obj)};".encode())
        for value in obj:
            _digest(value, h)
    elif isinstance(obj, set):  # iteration order differs between processes
        h.update(f"set {sorted(_checksum(v) for v in obj)};".encode())
    else:
        h.update(f"{type(obj).__name__} {obj!r};".encode())


def _first_line(exc: BaseException) -> str:
    """The first sentence of an error message (torch's go on for lines), without C++ source lines."""
    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return re.sub(r"^\[enforce fail at [^\]]*\] \. ", "", line).split(". ")[0]


def _checksum(obj) -> str:
    h = hashlib.sha256()
    _digest(obj, h)
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: GPT, **extra) -> Path:
    """Write ``model``'s weights and config plus ``extra`` plain data (step, optimizer state...).

    Paths in ``extra`` are saved as strings and numpy scalars as Python numbers; any other object
    the loader would refuse raises CheckpointError before anything is written, and so do weights
    that hold NaN or infinite values (a diverged model). A crash, or a full disk
    (``assets.DiskFullError``), leaves the previous file at ``path`` intact.
    """
    if reserved := {"config", CHECKSUM_KEY} & set(extra):
        raise CheckpointError(f"{sorted(reserved)}: names the checkpoint uses itself; rename that data.")
    tensors = [*model.named_parameters(), *model.named_buffers()]  # tied weights once
    broken = [name for name, t in tensors if t.is_floating_point() and not t.isfinite().all()]
    if broken:
        kept = f"the previous {Path(path).name} is intact" if Path(path).exists() else "nothing was written"
        more = f" and {len(broken) - 1} more tensor(s)" if len(broken) > 1 else ""
        raise CheckpointError(
            f"Not saving {path}: {broken[0]}{more} hold NaN or infinite values (the model diverged); {kept}. "
            "A lower learning rate, or a longer warmup, may help."
        )
    state = _plain({"model": model.state_dict(), "config": model.config.to_dict(), **extra}, "checkpoint")
    state[CHECKSUM_KEY] = _checksum(state)
    return atomic_write(Path(path), lambda f: torch.save(state, f))


def _read(path: Path, map_location) -> object:
    """``torch.load(weights_only=True)`` with every way a file can fail said in one sentence."""
    if path.is_dir():
        inside = path / "ckpt.pt"
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint file"
            + (f"; the checkpoint in it is {inside}." if inside.is_file() else ".")
        )
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}. Train one with `python -m lessons_lib.train`.")
    try:
        with open(path, "rb") as f:
            magic = f.read(len(ZIP_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    if magic != ZIP_MAGIC:
        what = "empty" if not magic else "not a checkpoint (torch.save writes a zip archive, this is not one)"
        raise CheckpointError(f"{path} is {what}: truncated, corrupt, or another kind of file?")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message goes unshown: it suggests weights_only=False, i.e. running the code
        name = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if name:
            raise CheckpointError(
                f"Refusing to load {path}: it holds a pickled Python object ({name[1]}), not plain data, "
                "and unpickling it could run code. save_checkpoint never writes one: the file is "
                "damaged, or was made another way or tampered with. Use a checkpoint you trust."
            ) from None
        reason = re.search(r"WeightsUnpickler error: \s*(.+)", str(exc))
        raise CheckpointError(
            f"{path} is corrupt: its data cannot be read ({reason[1] if reason else 'bad pickle'})."
        ) from None
    except Exception as exc:  # zip and storage errors, or garbage that trips the unpickler
        raise CheckpointError(
            f"{path} is truncated or corrupt: torch cannot read it ({_first_line(exc)})."
        ) from exc


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The state ``save_checkpoint`` wrote, after checking it is whole (CheckpointError if not)."""
    path = Path(path)
    state = _read(path, map_location)
    if not (isinstance(state, dict) and all(isinstance(state.get(k), dict) for k in ("model", "config"))):
        raise CheckpointError(f"{path} is a torch file but not a lessons_lib checkpoint (no model/config).")
    stored = state.pop(CHECKSUM_KEY, None)
    if stored is None:
        warnings.warn(
            f"{path} has no checksum (saved by an older lessons_lib), so damage in it cannot be detected. "
            "Saving it again adds one.",
            stacklevel=2,
        )
    elif stored != _checksum(state):
        raise CheckpointError(
            f"{path} is damaged: its contents differ from the checksum stored when it was saved "
            "(bytes changed on disk or in a copy). Use another copy, or an earlier checkpoint."
        )
    return state


def _describe(config: GPTConfig) -> str:
    """The preset ``config`` has the size of, or "custom"."""
    presets = (name for name, p in PRESETS.items() if all(getattr(config, k) == v for k, v in p.items()))
    return next(presets, "custom")


def _saved_config(state: dict, source: str | os.PathLike) -> GPTConfig:
    try:
        return GPTConfig.from_dict(state["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source} holds an invalid model config: {exc}") from exc


def load_weights(model: GPT, state: dict, source: str | os.PathLike) -> GPT:
    """Copy a checkpoint's weights into ``model``; a checkpoint of another size is refused in one line
    naming both configs (``source`` names the checkpoint in the message)."""
    saved = _saved_config(state, source)
    differ = [f"{k} {getattr(saved, k)} vs {getattr(model.config, k)}" for k in WEIGHT_FIELDS
              if getattr(saved, k) != getattr(model.config, k)]  # fmt: skip
    if differ:
        raise CheckpointError(
            f"{source} holds a {_describe(saved)} model, but this one is {_describe(model.config)} "
            f"({', '.join(differ)}). Build the model from the checkpoint's config (e.g. with the "
            "matching --model, or load_model)."
        )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{source}: its weights do not fit its own config ({_first_line(exc)})"
        ) from exc
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> GPT:
    """The model saved in a checkpoint, built from the config stored with it, on ``device``."""
    state = load_checkpoint(path, map_location=device)
    return load_weights(GPT(_saved_config(state, path)), state, path).to(device)
