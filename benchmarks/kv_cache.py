"""Time L.generate with and without the KV cache on the same model; write a Markdown table.

    python benchmarks/kv_cache.py --preset cpu-small --new-tokens 256

The model is randomly initialised (seeded): speed does not depend on the weights. The two variants
are interleaved across repeats so that load changes on the machine hit both alike; the best of the
repeats is reported. The token outputs of the two variants must be identical.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lessons_lib as L  # noqa: E402
from lessons_lib.cli import positive  # noqa: E402
from lessons_lib.device import synchronize  # noqa: E402


def time_generate(
    model, idx, new_tokens: int, use_kv_cache: bool, seed: int, device
) -> tuple[float, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)  # sampling draws on the CPU
    synchronize(device)
    t0 = time.perf_counter()
    out = L.generate(model, idx, new_tokens, generator=g, use_kv_cache=use_kv_cache)
    synchronize(device)
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cpu-medium", help=f"one of {', '.join(L.PRESETS)}")
    p.add_argument("--new-tokens", type=positive, default=256, help="tokens to generate per run")
    p.add_argument("--batch", type=positive, default=1, help="sequences generated together")
    p.add_argument("--repeats", type=positive, default=3, help="interleaved rounds; the median is kept")
    p.add_argument("--prompt-len", type=positive, default=8, help="random prompt tokens")
    p.add_argument("--seed", type=int, default=0, help="seed of the model, the prompt and the sampling")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--out", default="benchmarks/results/kv_cache.md", help="the results file to write")
    args = p.parse_args(argv)

    device = L.get_device(args.device)
    torch.manual_seed(args.seed)
    config = L.GPTConfig.from_preset(args.preset)
    model = L.GPT(config).to(device).eval()
    idx = torch.randint(0, config.vocab_size, (args.batch, args.prompt_len), device=device)
    past_window = args.prompt_len + args.new_tokens - 1 > config.block_size  # the last token is never fed

    time_generate(model, idx, min(8, args.new_tokens), True, args.seed, device)  # warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    outputs: dict[bool, torch.Tensor] = {}
    for r in range(args.repeats):
        order = (False, True) if r % 2 == 0 else (True, False)  # interleave, alternating who goes first
        for use_kv_cache in order:
            dt, out = time_generate(model, idx, args.new_tokens, use_kv_cache, args.seed, device)
            times[use_kv_cache].append(dt)
            outputs[use_kv_cache] = out
            print(f"repeat {r}: kv_cache={use_kv_cache!s:5} {dt:.3f} s", flush=True)
    identical = torch.equal(outputs[False], outputs[True])

    tokens = args.batch * args.new_tokens
    best = {k: min(v) for k, v in times.items()}
    speedup = best[False] / best[True]
    rows = [
        ("recompute (no cache)", best[False], tokens / best[False]),
        ("KV cache", best[True], tokens / best[True]),
    ]
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine() or "cpu"
    lines = [
        "# KV cache benchmark",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- torch {torch.__version__}, Python {platform.python_version()}",
        f"- device: {device} ({device_name}), threads: {torch.get_num_threads()}",
        f"- model: `{args.preset}` ({model.num_params():,} parameters, block_size {config.block_size}), "
        "random init",
        f"- batch {args.batch}, prompt {args.prompt_len} tokens, {args.new_tokens} new tokens"
        + (" (runs past block_size: the cache falls back to recompute there)" if past_window else ""),
        f"- repeats {args.repeats}, interleaved; best time reported",
        f"- outputs identical: {identical}",
        "",
        "| variant | best time (s) | tokens/s | all times (s) |",
        "|---|---:|---:|---|",
    ]
    for (name, t, tps), key in zip(rows, (False, True), strict=True):
        lines.append(f"| {name} | {t:.3f} | {tps:.1f} | {', '.join(f'{x:.3f}' for x in times[key])} |")
    lines += ["", f"**Speed-up: {speedup:.2f}x**", ""]
    text = "\n".join(lines)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    if not identical:
        sys.exit("KV cache and recompute produced different tokens")


if __name__ == "__main__":
    main()
