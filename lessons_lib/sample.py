"""Command line: generate text from a checkpoint or a pretrained GPT-2.

    python -m lessons_lib.sample --checkpoint runs/shakespeare/ckpt.pt --prompt "ROMEO:" \\
        --num-seq 3 --max-tokens 64
"""

from __future__ import annotations

import argparse

from .checkpoint import load_model
from .device import get_device
from .generation import generate_text
from .model import GPT


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Generate text from a checkpoint or a pretrained GPT-2.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a checkpoint written by `python -m lessons_lib.train`")
    src.add_argument("--pretrained", help="gpt2 ... gpt2-xl, or a Hugging Face GPT-2 folder")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--num-seq", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    device = get_device(args.device)
    if args.checkpoint:
        model = load_model(args.checkpoint, device)
    else:
        model = GPT.from_pretrained(args.pretrained).to(device)
    model.eval()
    texts = generate_text(
        model, args.prompt, args.num_seq, args.max_tokens, args.seed,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
    )  # fmt: skip
    for text in texts:
        print(">", text)
        print()


if __name__ == "__main__":
    main()
