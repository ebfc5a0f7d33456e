"""Command line: generate text from a checkpoint or a pretrained GPT-2.

    python -m lessons_lib.sample --checkpoint runs/shakespeare/ckpt.pt --prompt "ROMEO:" \\
        --num-seq 3 --max-tokens 64
"""

from __future__ import annotations

from .cli import add_model_source, command, model_from_args, number, parser, positive
from .generation import TOP_P, generate_text
from .utils import NON_NEGATIVE, NON_NEGATIVE_NUMBER, SEED


@command("sample")
def main(argv: list[str] | None = None) -> None:
    p = parser("sample", "Generate text from a checkpoint or a pretrained GPT-2.")
    add_model_source(p)
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--num-seq", type=positive, default=4, help="continuations to generate")
    p.add_argument("--max-tokens", type=positive, default=64, help="new tokens per continuation")
    p.add_argument("--temperature", type=number(NON_NEGATIVE_NUMBER), default=1.0,
                   help="0 is greedy; higher is more random")  # fmt: skip
    p.add_argument("--top-k", type=number(NON_NEGATIVE), default=50,
                   help="sample among the k most likely tokens; 0: all")  # fmt: skip
    p.add_argument("--top-p", type=number(TOP_P), default=None, help="sample among the smallest set whose "
                   "probability reaches p, in (0, 1] (default: off)")  # fmt: skip
    p.add_argument("--seed", type=number(SEED), default=42, help="the same seed gives the same text")
    args = p.parse_args(argv)
    model = model_from_args(args)
    texts = generate_text(
        model, args.prompt, args.num_seq, args.max_tokens, args.seed,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
    )  # fmt: skip
    for text in texts:
        print(">", text)
        print()


if __name__ == "__main__":
    main()
