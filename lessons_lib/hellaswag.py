"""HellaSwag: does the model pick the sensible ending of an everyday scene? (lesson 10)

Each example is a context and four endings, one of them right. The model never sees the choices
side by side; instead every ending is appended to the context ("completion style") and scored by
the model's loss on the ending tokens only. The least surprising ending is the model's answer:

- ``acc``: lowest *summed* loss over the ending's tokens (favours short endings);
- ``acc_norm``: lowest *mean* loss per ending token (length-normalised; the number usually quoted).

Same rendering and scoring as Karpathy's build-nanogpt ``hellaswag.py``. EleutherAI's harness
instead normalises by the ending's length in bytes and presents the choices as multiple choice,
so its numbers differ a little (GPT-2 124M: acc_norm 0.3114 there).

Reference numbers for a full run on the 10,042 validation examples (``--data val``):

- random chance: 0.25
- OpenAI GPT-2 124M: acc_norm 0.2955 (acc 0.2859), this completion style
- GPT-3 Small (125M parameters, 300B training tokens): 0.337 (GPT-3 paper)

    python -m lessons_lib.hellaswag --pretrained gpt2
    python -m lessons_lib.hellaswag --checkpoint runs/gpt2-124m/ckpt.pt --limit 1000
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .assets import AssetUnavailableError, cache_dir, download, jsonl_records
from .cli import add_model_source, command, model_from_args, parser, positive
from .precision import upcast
from .tokenizer import get_encoding
from .utils import UserError, mode, positive_int

SPLITS = ("train", "val", "test")
BASE_URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/"
URLS = {s: f"{BASE_URL}hellaswag_{s}.jsonl" for s in SPLITS}
NUM_ENDINGS = 4


def hellaswag_path(split: str = "val") -> Path:
    """The official JSONL of ``split``, downloaded once into ``cache_dir("hellaswag")``."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; choose one of {SPLITS}, or pass the path of a JSONL file.")
    dest = cache_dir("hellaswag") / f"hellaswag_{split}.jsonl"
    if not dest.is_file():
        try:
            download(URLS[split], dest, timeout=60)
        except AssetUnavailableError as exc:
            raise AssetUnavailableError(
                f"HellaSwag {split} is not cached at {dest} and could not be downloaded ({exc}). "
                f"Fetch {URLS[split]} on a machine with internet and copy it to {dest}, or pass the "
                "path of a local copy: `--data PATH` on the command line, load_hellaswag(PATH) in Python."
            ) from exc
    return dest


def _check_example(ex, where: str) -> dict:
    if not isinstance(ex, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(ex).__name__}.")
    missing = [k for k in ("ctx", "endings", "label") if k not in ex]
    if missing:
        hint = " (the test split's labels are not public: evaluate on 'val')" if "label" in missing else ""
        raise UserError(f"{where}: missing key(s) {missing}{hint}.")
    ctx, endings, label = ex["ctx"], ex["endings"], ex["label"]
    if not isinstance(ctx, str):
        raise UserError(f"{where}: 'ctx' must be a string, got {ctx!r}.")
    if not isinstance(endings, list) or [type(e) for e in endings] != [str] * NUM_ENDINGS:
        raise UserError(f"{where}: 'endings' must be a list of {NUM_ENDINGS} strings, got {endings!r}.")
    if isinstance(label, str) and label.isdigit():  # the Hugging Face copy stores labels as strings
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < NUM_ENDINGS:
        raise UserError(f"{where}: 'label' must be an ending index 0-{NUM_ENDINGS - 1}, got {label!r}.")
    return {**ex, "label": label}


def load_hellaswag(source: str | os.PathLike = "val", limit: int | None = None) -> list[dict]:
    """Examples (dicts with ``ctx``, ``endings``, ``label``, ...) from a split name or a JSONL path.

    Every line is checked, so a damaged file fails here with its line number rather than as a
    wrong accuracy later.
    """
    if isinstance(source, str) and source in SPLITS:
        path = hellaswag_path(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"No HellaSwag file at {path}. Pass a JSONL file in the official format or a split "
                f"name ({', '.join(SPLITS)})."
            )
    if limit is not None:
        positive_int("limit (examples to load; None for all)", limit)
    records = islice(jsonl_records(path), limit)  # limit=None: every line
    examples = [_check_example(ex, f"{path}, line {n}") for n, ex in records]
    if not examples:
        raise UserError(f"{path} holds no examples.")
    return examples


def _rows(example: dict) -> list[tuple[list[int], int]]:
    """Each ending as (context + ending tokens, number of context tokens).

    The text is data, so it is encoded as plain text: a literal "<|endoftext|>" in it is scored as
    the characters it is, never as the end-of-text token.
    """
    enc = get_encoding()
    ctx = enc.encode_ordinary(example["ctx"])
    # the leading space makes the ending's first word the token GPT-2 would see mid-sentence
    return [(ctx + enc.encode_ordinary(" " + ending), len(ctx)) for ending in example["endings"]]


def _pack(rows: list[tuple[list[int], int]], block_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad rows into ``(tokens, mask)``; keep only the last ``block_size`` tokens of each."""
    cropped = []
    for toks, n_ctx in rows:
        mask = [0] * n_ctx + [1] * (len(toks) - n_ctx)
        if block_size is not None:
            toks, mask = toks[-block_size:], mask[-block_size:]
        cropped.append((toks, mask))
    T = max(len(t) for t, _ in cropped)
    tokens = torch.zeros(len(rows), T, dtype=torch.long)
    masks = torch.zeros(len(rows), T, dtype=torch.long)
    for i, (toks, mask) in enumerate(cropped):
        tokens[i, : len(toks)] = torch.tensor(toks)
        masks[i, : len(mask)] = torch.tensor(mask)
    return tokens, masks


def render_example(example: dict, block_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``tokens`` and ``mask`` of shape ``(4, T)`` and the label; ``mask`` is 1 on ending tokens.

    Rows are right-padded with token 0 (masked out). Rows longer than ``block_size`` lose their
    oldest context tokens, since the model only ever sees its last ``block_size`` tokens.
    """
    tokens, mask = _pack(_rows(example), block_size)
    return tokens, mask, example["label"]


def completion_losses(model, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed and mean cross-entropy of the masked tokens of each row, both of shape ``(rows,)``.

    Position t predicts token t + 1, so a row's very first token is never scored: after a crop
    that cut into the ending, its first remaining ending token does not count.
    """
    out = model(tokens)
    logits = out[0] if isinstance(out, tuple) else out
    scored = mask[:, 1:].bool()
    # only the ending positions go through the softmax: a fraction of the (rows, T, vocab) logits
    losses = F.cross_entropy(upcast(logits[:, :-1][scored]), tokens[:, 1:][scored], reduction="none")
    rows = scored.nonzero()[:, 0]
    sum_loss = torch.zeros(len(tokens), device=losses.device, dtype=losses.dtype).index_add_(0, rows, losses)
    return sum_loss, sum_loss / scored.sum(dim=1)


@dataclass
class HellaSwagResult:
    n: int  # examples scored
    acc: float  # fraction right when the lowest summed ending loss is the answer
    acc_norm: float  # fraction right when the lowest mean loss per ending token is the answer
    pred: list[int]  # per example: the ending chosen by summed loss
    pred_norm: list[int]  # per example: the ending chosen by mean loss
    labels: list[int]

    def to_dict(self) -> dict:
        """The headline numbers, ready for a metrics log."""
        return {"n": self.n, "acc": self.acc, "acc_norm": self.acc_norm}

    def __str__(self) -> str:
        return f"HellaSwag: {self.n} examples, acc {self.acc:.4f}, acc_norm {self.acc_norm:.4f}"


def _device_of(model) -> torch.device:
    param = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def evaluate_hellaswag(
    model,
    examples: Sequence[dict],
    batch_size: int = 4,
    device: str | torch.device | None = None,
    limit: int | None = None,
    block_size: int | None = None,
    progress: bool = True,
) -> HellaSwagResult:
    """Score ``examples`` with ``model`` (called as ``model(idx) -> (logits, loss)``).

    ``batch_size`` examples (4x as many rows) go through each forward pass. ``block_size``
    defaults to ``model.config.block_size`` when the model has one. Inputs go to ``device``
    (default: where the model's parameters are); the model is not moved.
    """
    positive_int("batch_size", batch_size)
    if block_size is None:
        block_size = getattr(getattr(model, "config", None), "block_size", None)
    if block_size is not None and block_size < 2:
        raise UserError(f"block_size={block_size}: scoring an ending needs at least 2 tokens of context.")
    examples = list(examples)[:limit] if limit is not None else list(examples)
    if not examples:
        raise ValueError("No HellaSwag examples to evaluate; load some with load_hellaswag().")
    device = torch.device(device) if device is not None else _device_of(model)
    pred, pred_norm = [], []
    bar = tqdm(total=len(examples), desc="hellaswag", unit="ex", disable=not progress, mininterval=1.0)
    with mode(model, training=False) if isinstance(model, nn.Module) else nullcontext(), bar:
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            tokens, mask = _pack([row for ex in batch for row in _rows(ex)], block_size)
            sum_loss, mean_loss = completion_losses(model, tokens.to(device), mask.to(device))
            pred += sum_loss.view(-1, NUM_ENDINGS).argmin(dim=1).tolist()
            pred_norm += mean_loss.view(-1, NUM_ENDINGS).argmin(dim=1).tolist()
            bar.update(len(batch))
    labels = [ex["label"] for ex in examples]
    n = len(labels)
    return HellaSwagResult(
        n=n,
        acc=sum(p == y for p, y in zip(pred, labels, strict=True)) / n,
        acc_norm=sum(p == y for p, y in zip(pred_norm, labels, strict=True)) / n,
        pred=pred,
        pred_norm=pred_norm,
        labels=labels,
    )


@command("hellaswag")
def main(argv: list[str] | None = None) -> HellaSwagResult:
    p = parser("hellaswag", "HellaSwag accuracy of a checkpoint or a pretrained GPT-2.")
    add_model_source(p)
    p.add_argument(
        "--data", default="val", help="a split: train, val, test (downloaded once), or a JSONL path"
    )
    p.add_argument(
        "--limit", type=positive, default=None, help="score only the first N examples (default: all)"
    )
    p.add_argument("--batch-size", type=positive, default=4, help="examples per forward pass (4 rows each)")
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar"
    )
    args = p.parse_args(argv)
    examples = load_hellaswag(args.data, limit=args.limit)
    model = model_from_args(args)
    result = evaluate_hellaswag(model, examples, batch_size=args.batch_size, progress=args.progress)
    print(result)
    return result


if __name__ == "__main__":
    main()
