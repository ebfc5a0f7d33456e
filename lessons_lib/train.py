"""Command line, the main job: train a GPT, then sample from it.

    python -m lessons_lib.train                          # small GPT on Tiny Shakespeare, CPU, 2.5-4 min
    python -m lessons_lib.train --max-steps 50           # a quick smoke run
    python -m lessons_lib.train --recipe gpt2-124m       # the GPT-2 124M recipe (GPUs)
    python -m lessons_lib.train --resume runs/shakespeare/ckpt.pt

Every field of ``RunConfig`` (``lessons_lib.run``) is a flag; a recipe sets the defaults, flags
override them. ``--resume`` continues a run with the settings saved in its checkpoint. A new run
refuses an ``--out-dir`` that holds another run; Ctrl-C saves the run after the step under way and
prints the ``--resume`` command that continues it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

from .cli import add_device, command, number, parser
from .distributed import shutdown
from .run import RECIPES, RunConfig, Trainer
from .viz import plot_layer_stats, plot_logit_waterfall, plot_losses

RESUME_HELP = (
    "continue the run saved in this checkpoint, bit-identically, with the settings saved in it; "
    "flags still change the others (e.g. --max-steps to train longer), but a setting marked "
    "[fixed for a run] must keep its saved value, and --recipe is refused. It writes into the "
    "checkpoint's folder, or --out-dir when given (never where the file says it was made)"
)


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace, dict]:
    p = parser(
        "train",
        "Train a GPT (a recipe, then flags), write its checkpoint, metrics and plots, then sample.",
        "Every run setting is a field of lessons_lib.run.RunConfig, documented there. The "
        "defaults shown are the shakespeare-cpu recipe's; another --recipe brings its own.",
    )
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help="named settings to start from (default: shakespeare-cpu); flags override them",
    )
    p.add_argument("--resume", metavar="CKPT", help=RESUME_HELP)
    add_device(p)
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar"
    )
    default_recipe = RECIPES["shakespeare-cpu"]
    for f in fields(RunConfig):
        flag, text = "--" + f.name.replace("_", "-"), f.metadata["help"]
        default = getattr(default_recipe, f.name)
        if f.type in ("bool", bool):
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{text} (default: {default})",
            )
        else:
            bounds = f.metadata["bounds"]
            typ = number(bounds) if bounds else {"int": int, "float": float, "str": str}[f.type]
            p.add_argument(flag, type=typ, default=None, help=f"{text} (default: {default})")
    args = p.parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name) for f in fields(RunConfig) if getattr(args, f.name) is not None
    }
    return p, args, overrides


@command("train")
def main(argv: list[str] | None = None) -> None:
    p, args, overrides = parse_args(argv)
    if args.resume and args.recipe:
        p.error(
            "--recipe cannot be combined with --resume: a resumed run keeps the settings saved in "
            "its checkpoint. Drop --recipe (other flags still override the resumable settings)."
        )
    if args.resume:
        trainer = Trainer.resume(args.resume, args.device, **overrides)
    else:
        trainer = Trainer(replace(RECIPES[args.recipe or "shakespeare-cpu"], **overrides), args.device)
    cfg, model = trainer.cfg, trainer.model
    counts = trainer.param_counts
    trainer.claim_out_dir()  # before anything is printed: a folder with another run is refused
    if trainer.dist.is_master:
        if args.resume:
            data = cfg.data + (f", hellaswag {cfg.hellaswag_data}" if cfg.hellaswag_interval else "")
            print(f"resuming {args.resume} at step {trainer.step} of {cfg.max_steps}, data {data}, "
                  f"writing to {cfg.out_dir}")  # fmt: skip
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
    final = trainer.final  # fit made it at the last step
    print(
        f"trained to step {trainer.step} in {seconds:.0f} s | final train loss "
        f"{history['train_loss'][-1]:.3f} | val loss {final['final_val_loss']:.3f} on "
        f"{final['final_val_tokens']:,} validation tokens"
    )
    print(f"wrote {out / 'ckpt.pt'}, {out / 'metrics.jsonl'}, {out / 'loss.png'}, {out / 'samples.txt'}")
    print("run settings:", asdict(cfg))
    print("sample:\n" + samples[0])


if __name__ == "__main__":
    main()
