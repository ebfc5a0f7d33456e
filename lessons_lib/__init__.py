"""lessons_lib: the finished code of the GPT-2 course. Each module is what one lesson builds.

Command lines: ``python -m lessons_lib.train`` (train), ``.sample`` (generate text),
``.fineweb`` (prepare token shards), ``.hellaswag`` (evaluate), ``.finetune`` (chat fine-tuning).
"""

import importlib

from .assets import AssetUnavailableError, cache_dir, lesson_file
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .data import DataLoaderLite, load_shakespeare, shakespeare_tokens, train_val_split
from .device import get_device
from .embedding_init import cooccurrence_embedding, init_embedding_from_cooccurrence
from .generation import generate, generate_text, sample_next_token
from .hf import export_hf_gpt2, load_hf_gpt2
from .loop import TrainingDivergedError, estimate_loss, train_loop, train_step
from .model import GPT, MLP, PRESETS, Block, CausalSelfAttention, GPTConfig, KVCache
from .monitor import TrainingMonitor
from .optim import configure_optimizer, cosine_lr
from .precision import resolve_precision
from .tokenizer import EOT_TOKEN, get_encoding
from .utils import UserError, mode, positive_int, seed_everything

# Imported on first use: ``python -m lessons_lib.fineweb`` (or ``.hellaswag``) runs that module as
# __main__, and had the package imported it already, it would exist twice (runpy warns about it).
# The Trainer (run.py) imports fineweb.
_LAZY = {
    "ShardedDataLoader": "fineweb", "prepare_shards": "fineweb",
    "evaluate_hellaswag": "hellaswag", "load_hellaswag": "hellaswag",
    "RECIPES": "run", "RunConfig": "run", "Trainer": "run",
}  # fmt: skip


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "EOT_TOKEN", "GPT", "MLP", "PRESETS", "RECIPES", "AssetUnavailableError", "Block",
    "CausalSelfAttention", "CheckpointError", "DataLoaderLite", "GPTConfig", "KVCache", "RunConfig",
    "ShardedDataLoader", "Trainer", "TrainingDivergedError", "TrainingMonitor", "UserError",
    "cache_dir", "configure_optimizer", "cooccurrence_embedding", "cosine_lr", "estimate_loss",
    "evaluate_hellaswag",
    "export_hf_gpt2", "generate", "generate_text", "get_device", "get_encoding",
    "init_embedding_from_cooccurrence", "lesson_file", "load_checkpoint",
    "load_hellaswag", "load_hf_gpt2", "load_model", "load_shakespeare", "mode", "positive_int",
    "prepare_shards", "resolve_precision", "sample_next_token", "save_checkpoint", "seed_everything",
    "shakespeare_tokens", "train_loop", "train_step", "train_val_split",
]  # fmt: skip
