"""Command line, the main job: train a small GPT on Tiny Shakespeare, then sample from it.

python -m lessons_lib.train                    # about 4 minutes on 2 CPU cores
python -m lessons_lib.train --max-steps 50     # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .checkpoint import save_checkpoint
from .data import DataLoaderLite, shakespeare_tokens, train_val_split
from .device import get_device, seed_everything
from .generation import generate_text
from .model import GPT, GPTConfig
from .training import TrainConfig, train_loop
from .viz import plot_losses


def main(argv: list[str] | None = None) -> None:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(description="Train a small GPT on Tiny Shakespeare, then sample from it.")
    for name, value in asdict(defaults).items():
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    args = p.parse_args(argv)
    device = get_device(args.device)
    cfg = TrainConfig(**{k: getattr(args, k) for k in asdict(defaults)})
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    seed_everything(cfg.seed)
    model_config = GPTConfig.from_preset(cfg.preset)
    if cfg.seq_len > model_config.block_size:
        raise SystemExit(
            f"--seq-len {cfg.seq_len} exceeds the {cfg.preset} block_size {model_config.block_size}."
        )
    train_tokens, val_tokens = train_val_split(shakespeare_tokens())
    train_loader = DataLoaderLite(cfg.batch_size, cfg.seq_len, train_tokens)
    val_loader = DataLoaderLite(cfg.batch_size, cfg.seq_len, val_tokens)
    model = GPT(model_config).to(device)
    print(f"device {device} | model {cfg.preset}: {model.num_params():,} parameters | "
          f"{len(train_tokens):,} train / {len(val_tokens):,} val tokens")  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    t0 = time.perf_counter()
    history = train_loop(
        model, train_loader, optimizer, cfg.max_steps, val_loader, cfg.eval_interval, cfg.eval_batches
    )
    seconds = time.perf_counter() - t0

    save_checkpoint(out / "ckpt.pt", model, train_config=asdict(cfg), step=cfg.max_steps)
    (out / "history.json").write_text(json.dumps(history))
    plot_losses(history, path=out / "loss.png")
    samples = generate_text(model.eval(), "\n", num_sequences=3, max_new_tokens=64, seed=cfg.seed)
    (out / "samples.txt").write_text("\n\n---\n\n".join(samples) + "\n", encoding="utf-8")
    print(f"trained {cfg.max_steps} steps in {seconds:.0f} s | final train loss "
          f"{history['train_loss'][-1]:.3f} | val loss {history['val_loss'][-1]:.3f}")  # fmt: skip
    print(f"wrote {out / 'ckpt.pt'}, {out / 'loss.png'}, {out / 'samples.txt'}")
    print("sample:\n" + samples[0])


if __name__ == "__main__":
    main()
