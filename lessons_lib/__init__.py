"""lessons_lib: the finished code of the GPT-2 course. Each module is what one lesson builds."""

from .assets import AssetUnavailableError, cache_dir
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .data import DataLoaderLite, load_shakespeare, shakespeare_tokens, train_val_split
from .device import by_size, get_device, run_size, seed_everything
from .generation import generate, generate_text, sample_next_token
from .model import GPT, MLP, PRESETS, Block, CausalSelfAttention, GPTConfig, KVCache
from .tokenizer import EOT_TOKEN, get_encoding
from .training import TrainConfig, estimate_loss, train_loop

__all__ = [
    "AssetUnavailableError", "Block", "CausalSelfAttention", "CheckpointError", "DataLoaderLite",
    "EOT_TOKEN", "GPT", "GPTConfig", "KVCache", "MLP", "PRESETS", "TrainConfig", "by_size",
    "cache_dir", "estimate_loss", "generate", "generate_text", "get_device", "get_encoding",
    "load_checkpoint", "load_model", "load_shakespeare", "run_size", "sample_next_token",
    "save_checkpoint", "seed_everything", "shakespeare_tokens", "train_loop", "train_val_split",
]  # fmt: skip
