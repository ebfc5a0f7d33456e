"""Command line, the main job: train a GPT, then sample from it.

    python -m lessons_lib.train                          # small GPT on Tiny Shakespeare, CPU, ~4 min
    python -m lessons_lib.train --max-steps 50           # a quick smoke run
    python -m lessons_lib.train --recipe gpt2-124m       # the GPT-2 124M recipe (GPUs)
    python -m lessons_lib.train --resume runs/shakespeare/ckpt.pt

Every field of ``RunConfig`` is a flag; a recipe sets the defaults, flags override them.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

from .distributed import shutdown
from .trainer import RECIPES, RunConfig, Trainer
from .viz import plot_layer_stats, plot_logit_waterfall, plot_losses


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", choices=sorted(RECIPES), default="shakespeare-cpu")
    p.add_argument("--resume", help="continue the run saved in this checkpoint")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    for f in fields(RunConfig):
        kind = argparse.BooleanOptionalAction if f.type in ("bool", bool) else None
        typ = {"int": int, "float": float, "str": str}.get(f.type, f.type)
        if kind:
            p.add_argument("--" + f.name.replace("_", "-"), action=kind, default=None)
        else:
            p.add_argument("--" + f.name.replace("_", "-"), type=typ, default=None)
    args = p.parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name) for f in fields(RunConfig) if getattr(args, f.name) is not None
    }
    return args, overrides


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(argv)
    if args.resume:
        trainer = Trainer.resume(args.resume, args.device, **overrides)
    else:
        trainer = Trainer(replace(RECIPES[args.recipe], **overrides), args.device)
    cfg, model = trainer.cfg, trainer.model
    counts = trainer.param_counts
    if trainer.dist.is_master:
        print(
            f"device {trainer.device} | precision {trainer.precision} | model {cfg.model}: "
            f"{model.num_params():,} parameters | {trainer.grad_accum_steps} micro-batch(es) of "
            f"{cfg.batch_size}x{cfg.seq_len} per step on {trainer.dist.world_size} process(es)"
        )
        print(
            f"weight decay on {counts.decayed_tensors} tensors ({counts.decayed_params:,} parameters), "
            f"not on {counts.other_tensors} ({counts.other_params:,})"
        )
    t0 = time.perf_counter()
    history = trainer.fit(progress=args.progress)
    seconds = time.perf_counter() - t0
    shutdown(trainer.dist)
    if not trainer.dist.is_master:
        return

    out = Path(cfg.out_dir)
    plot_losses(history, path=out / "loss.png")
    if trainer.monitor:
        plot_logit_waterfall(trainer.monitor, path=out / "logits_waterfall.png")
        plot_layer_stats(trainer.monitor, path=out / "layer_stats.png")
    samples = trainer.sample("\n", num_sequences=3, max_new_tokens=64)
    (out / "samples.txt").write_text("\n\n---\n\n".join(samples) + "\n", encoding="utf-8")
    print(
        f"trained to step {trainer.step} in {seconds:.0f} s | final train loss "
        f"{history['train_loss'][-1]:.3f} | val loss {history['val_loss'][-1]:.3f}"
    )
    print(f"wrote {out / 'ckpt.pt'}, {out / 'metrics.jsonl'}, {out / 'loss.png'}, {out / 'samples.txt'}")
    print("run settings:", asdict(cfg))
    print("sample:\n" + samples[0])


if __name__ == "__main__":
    main()
