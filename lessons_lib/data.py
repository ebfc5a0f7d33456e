"""Text as token ids, and batches of it: Tiny Shakespeare and ``DataLoaderLite``, the one batch
loader (lesson 01)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .assets import lesson_file
from .utils import UserError, positive_int

# karpathy/char-rnn's data/tinyshakespeare/input.txt, shipped in the wheel (lesson_data/SOURCES.md)
SHAKESPEARE_FILE = "tinyshakespeare.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def load_shakespeare() -> str:
    """Tiny Shakespeare as one string (1,115,394 characters): the canonical file, shipped with the
    package, so every learner (online or offline, in a checkout or in Colab) trains on the same text."""
    return lesson_file(SHAKESPEARE_FILE).read_text(encoding="utf-8")


def shakespeare_tokens() -> torch.Tensor:
    """Tiny Shakespeare encoded with the GPT-2 tokenizer, as a 1-D int64 tensor."""
    from .tokenizer import get_encoding

    return torch.tensor(get_encoding().encode_ordinary(load_shakespeare()), dtype=torch.long)


def train_val_split(tokens: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``1 - val_fraction`` of the stream for training, the rest for validation.

    A contiguous split (not a shuffle): validation text is text the model has never seen.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
    n = int(len(tokens) * (1.0 - val_fraction))
    return tokens[:n], tokens[n:]


class DataLoaderLite:
    """Contiguous ``(B, T)`` batches from token shards; targets are the inputs shifted by one.

    ``tokens`` is one 1-D token stream held in memory, a single shard, or a sequence of shards read
    in order (``ShardedDataLoader`` passes files on disk). Each process (``process_rank`` of
    ``num_processes``) reads its own B*T slice of every B*T*num_processes chunk, so ranks never
    overlap. When the next chunk does not fit in the current shard, every rank moves to the next
    shard at the same step (the few tokens left over are skipped); after the last shard it wraps
    to the first. Its state is ``{"shard", "position"}``: where the next chunk starts.
    """

    error = UserError  # what a shard too small for one batch, or a state that does not fit, raises

    def __init__(
        self,
        B: int,
        T: int,
        tokens: torch.Tensor | Sequence | None = None,
        process_rank: int = 0,
        num_processes: int = 1,
    ) -> None:
        self.B, self.T = positive_int("B", B), positive_int("T", T)
        positive_int("num_processes", num_processes)
        if not 0 <= process_rank < num_processes:
            raise ValueError(f"process_rank={process_rank} must be in [0, num_processes={num_processes}).")
        self.process_rank, self.num_processes = process_rank, num_processes
        if tokens is None:
            tokens = train_val_split(shakespeare_tokens())[0]
        if isinstance(tokens, (torch.Tensor, np.ndarray)):
            tokens = [tokens]
        self.shards = [self._in_memory(t) if isinstance(t, (torch.Tensor, np.ndarray)) else t for t in tokens]
        if not self.shards:
            raise ValueError("No token shards to read from.")
        needed = B * T * num_processes + 1
        self.lengths = []
        for i in range(len(self.shards)):  # check them all now, not hours into training
            n = len(self.load(i))
            if n < needed:
                raise self.error(
                    f"{self.name(i)} has {n} tokens but one batch needs {needed} (B={B} x T={T} x "
                    f"{num_processes} process(es) + 1 for the shifted target). Use a smaller B or T, "
                    "or more tokens per shard."
                )
            self.lengths.append(n)
        self.reset()

    @staticmethod
    def _in_memory(tokens) -> torch.Tensor:
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be a 1-D stream of ids, got shape {tuple(tokens.shape)}.")
        return tokens

    def name(self, i: int) -> str:
        """What error messages call shard ``i``."""
        return "The corpus" if len(self.shards) == 1 else f"Shard {i}"

    def load(self, i: int) -> torch.Tensor | np.ndarray:
        """The tokens of shard ``i`` (in memory here; ``ShardedDataLoader`` maps a file)."""
        return self.shards[i]

    def reset(self) -> None:
        self._seek(0, 0)

    def _seek(self, shard: int, position: int) -> None:
        self.shard, self.position = shard, position  # position: start of this step's shared chunk
        self.tokens = self.load(shard)

    def __len__(self) -> int:
        """Batches per epoch (one pass over every shard) for this process."""
        return sum((n - 1) // (self.B * self.T * self.num_processes) for n in self.lengths)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = self.B, self.T
        start = self.position + B * T * self.process_rank
        buf = self.tokens[start : start + B * T + 1]
        if isinstance(buf, np.ndarray):  # a uint16 shard on disk
            buf = torch.from_numpy(buf.astype(np.int64))
        x = buf[:-1].view(B, T)  # inputs
        y = buf[1:].view(B, T)  # targets: the next token at every position
        self.position += B * T * self.num_processes
        # every rank moves on at the same step, when the next whole chunk no longer fits
        if self.position + B * T * self.num_processes + 1 > len(self.tokens):
            self._seek((self.shard + 1) % len(self.shards), 0)
        return x, y

    def state_dict(self) -> dict[str, int]:
        return {"shard": self.shard, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        shard, position = int(state["shard"]), int(state["position"])
        if not 0 <= shard < len(self.shards) or not 0 <= position < self.lengths[shard]:
            raise self.error(
                f"Loader state {state} does not fit the {len(self.shards)} shard(s) here; "
                "was the checkpoint made with other data?"
            )
        self._seek(shard, position)
