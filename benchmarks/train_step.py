"""Training-step speed: lessons_lib's GPT against transformers' GPT2LMHeadModel, and its MFU.

One step is what a training loop pays per batch: ``lessons_lib.loop.train_step``, the step every
loop in the library takes (``zero_grad``, forward with the loss, backward, AdamW ``step``), with
its features off; transformers' model goes through the same function. Both models get the same
shape (n_layer, n_head, n_embd, block_size, vocab 50,257, no dropout), the same batch, the same
number format and the same optimiser with the same flags, so the ratio between them is a fair
peer comparison. A third row, "lessons_lib best", uses lessons_lib's own choices:
``configure_optimizer`` (fused AdamW, decay groups), the vocabulary padded to a multiple of 64,
precision ``auto`` and, with ``--compile``, ``torch.compile``.

Variants run interleaved (A, B, C, then C, B, A, ...) so that noise from a shared machine hits
all of them; each reports the median over ``--repeats``.

MFU (model FLOPs utilisation) = achieved model FLOPs / peak FLOPs. Model FLOPs per token follow
the PaLM / nanoGPT estimate ``6 N + 12 L C T``: N counts every parameter that does a matmul or
elementwise op per token (blocks, final LayerNorm, and the lm_head / tied token embedding, once),
not the position table; ``12 L C T`` is attention's q.k and att.v over the full context, forward
and backward. The unpadded vocabulary is used for every row, so padding counts as overhead. The
peak is not a datasheet number: it is measured in the same run, on the same device, as the best
square-matmul throughput in each number format.

    python benchmarks/train_step.py --configs cpu-small cpu-medium
    python benchmarks/train_step.py --configs gpt2 --device cuda --compile
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from lessons_lib.cli import positive
from lessons_lib.data import DataLoaderLite
from lessons_lib.device import synchronize
from lessons_lib.loop import train_step
from lessons_lib.model import GPT, PRESETS, GPTConfig
from lessons_lib.optim import configure_optimizer
from lessons_lib.precision import autocast, cpu_has_native_bf16, resolve_precision, set_tf32

# (B, T) per preset and device type: the CPU sizes match the course's; CUDA fills a GPU better.
BATCH_SHAPES: dict[str, dict[str, tuple[int, int]]] = {
    "cpu": {
        "cpu-tiny": (4, 64),
        "cpu-narrow": (8, 128),
        "cpu-small": (8, 128),
        "cpu-medium": (4, 256),
        "gpt2": (1, 1024),
    },
    "cuda": {
        "cpu-tiny": (64, 64),
        "cpu-narrow": (64, 128),
        "cpu-small": (64, 128),
        "cpu-medium": (32, 256),
        "gpt2": (16, 1024),
    },
}
VOCAB_SIZE = 50257
LR, WEIGHT_DECAY, BETAS = 6e-4, 0.1, (0.9, 0.95)
PEER = "transformers"
NANOGPT = "nanoGPT"  # karpathy/nanoGPT's model.py, vendored unchanged in benchmarks/vendor/
IMPLS = ("lessons_lib", PEER, NANOGPT)  # the rows of each precision; then "lessons_lib best"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "train_step.md"


@dataclass
class Variant:
    """One model + optimiser + number format, ready to take training steps on a fixed batch."""

    impl: str  # one of IMPLS or "lessons_lib best"
    precision: str  # as requested: "fp32", "bf16", "auto"
    resolved: str  # what actually runs
    step: Callable[[], None]
    times: list[float] = field(default_factory=list)  # seconds per step, one per repeat
    skipped: str = ""  # why it was not measured

    @property
    def label(self) -> str:
        return self.precision if self.precision == self.resolved else f"{self.precision} (= {self.resolved})"


@dataclass
class Row:
    config: str
    batch: tuple[int, int]
    precision: str
    impl: str
    tokens_per_s: float | None
    ms_per_step: float | None
    ratio: float | None  # tokens/s over transformers' at the same precision (best row: vs fp32)
    ratio_nanogpt: float | None  # tokens/s over nanoGPT's, the same way
    mfu: float | None
    note: str = ""


def flops_per_token(config: GPTConfig, seq_len: int) -> float:
    """Model FLOPs of one training token (forward + backward): ``6 N + 12 L C T``."""
    L, C, V = config.n_layer, config.n_embd, config.vocab_size
    n = L * (12 * C * C + 13 * C) + 2 * C + V * C  # blocks, ln_f, lm_head (= wte, tied)
    return 6 * n + 12 * L * C * seq_len


def measure_peak_flops(
    device: torch.device, precision: str, max_size: int = 2048, min_time: float = 0.25, tries: int = 3
) -> float:
    """Best square-matmul FLOP/s in ``precision`` (resolved) on ``device``.

    The size doubles from 256 until one call takes ``min_time`` or reaches ``max_size``, so a format
    that is emulated and hundreds of times slower (bf16 on CPUs without AVX512-BF16) is measured in
    a second rather than minutes.
    """
    size, elapsed = 256, 0.0
    while True:
        a = torch.randn(size, size, device=device)
        b = torch.randn(size, size, device=device)
        with autocast(precision, device):
            a @ b  # first call: kernel selection, allocation
            synchronize(device)
            start = time.perf_counter()
            a @ b
            synchronize(device)
            elapsed = time.perf_counter() - start
        if elapsed >= min_time or size >= max_size:
            break
        size *= 2
    calls = max(1, math.ceil(min_time / max(elapsed, 1e-9)))
    best = math.inf
    with autocast(precision, device):
        for _ in range(tries):
            start = time.perf_counter()
            for _ in range(calls):
                a @ b
            synchronize(device)
            best = min(best, (time.perf_counter() - start) / calls)
    return 2 * size**3 / best


def _hf_model(config: GPTConfig) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_config = GPT2Config(
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_embd=config.n_embd,
        n_positions=config.block_size,
        vocab_size=config.vocab_size,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        attn_implementation="sdpa",
        loss_type="ForCausalLM",  # the default, named so transformers does not warn
    )
    return GPT2LMHeadModel(hf_config)


class _HFLoss(torch.nn.Module):
    """``GPT2LMHeadModel`` called like lessons_lib's GPT, ``model(x, y) -> (logits, loss)``, so the
    same ``train_step`` drives it. transformers shifts ``labels`` itself, so it gets the inputs."""

    def __init__(self, hf: torch.nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, return_logits: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.hf(input_ids=x, labels=x)  # transformers always makes the logits
        return out.logits, out.loss


class _NanoGPTLoss(torch.nn.Module):
    """nanoGPT's ``GPT`` called like lessons_lib's: its ``forward(idx, targets)`` already returns
    ``(logits, loss)``, always with the full logits."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        sys.path.insert(0, str(Path(__file__).resolve().parent / "vendor"))
        try:
            import nanogpt_model
        finally:
            sys.path.pop(0)
        nano = nanogpt_model.GPTConfig(block_size=config.block_size, vocab_size=config.vocab_size,
                                       n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd,
                                       dropout=0.0, bias=True)  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its parameter count
            self.gpt = nanogpt_model.GPT(nano)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, return_logits: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gpt(x, y)


def make_variant(
    impl: str,
    config: GPTConfig,
    precision: str,
    data: DataLoaderLite,
    compile_model: bool = False,
) -> Variant:
    """Build the model and optimiser of one row; ``impl`` picks which (see the module docstring)."""
    device = data.tokens.device
    resolved = resolve_precision(precision, device)
    torch.manual_seed(0)
    if impl == PEER:
        model = _HFLoss(_hf_model(config)).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS)
    elif impl == NANOGPT:
        model = _NanoGPTLoss(config).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS)
    elif impl in ("lessons_lib", "lessons_lib best"):
        best = impl == "lessons_lib best"
        model = GPT(GPTConfig(**{**config.to_dict(), "vocab_multiple": 64 if best else 1})).to(device).train()
        if best:
            optimizer, _ = configure_optimizer(model, lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS)
        else:
            optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS)
        model = torch.compile(model) if best and compile_model else model
    else:
        raise ValueError(f"impl={impl!r}; choose one of {IMPLS} or 'lessons_lib best'.")

    def step() -> None:
        train_step(model, optimizer, data, precision=resolved)

    return Variant(impl, precision, resolved, step)


def _time_steps(variant: Variant, steps: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        variant.step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def benchmark_config(
    name: str,
    device: torch.device,
    batch: tuple[int, int],
    precisions: list[str],
    peaks: dict[str, float],
    steps: int = 3,
    warmup: int = 1,
    repeats: int = 3,
    compile_model: bool = False,
    max_variant_s: float = 120.0,
) -> list[Row]:
    """Measure every variant of one preset; rows come back in table order.

    A variant whose estimated time (the first variant's warm-up step, scaled by the ratio of the
    measured matmul peaks) exceeds ``max_variant_s`` is skipped, with the estimate in its note.
    """
    B, T = batch
    config = GPTConfig.from_preset(name, vocab_size=VOCAB_SIZE)
    if T > config.block_size:
        raise ValueError(f"Sequence length {T} is longer than {name}'s block_size={config.block_size}.")
    gen = torch.Generator().manual_seed(0)
    # B*T+1 random tokens on the device: a loader whose every batch is the same one
    data = DataLoaderLite(B, T, torch.randint(0, VOCAB_SIZE, (B * T + 1,), generator=gen).to(device))

    variants = [make_variant(impl, config, p, data) for p in precisions for impl in IMPLS]
    variants.append(make_variant("lessons_lib best", config, "auto", data, compile_model))
    # Fastest number format first: its warm-up time is the yardstick for the estimates.
    order = sorted(variants, key=lambda v: -peaks[v.resolved])
    reference: tuple[float, float] | None = None  # (seconds per step, peak) of the first variant
    for v in tqdm(order, desc=f"{name} warm-up", leave=False):
        if reference is not None:
            estimate = reference[0] * reference[1] / peaks[v.resolved]
            total = estimate * (warmup + steps * repeats)
            if total > max_variant_s:
                v.skipped = (
                    f"skipped: est. {estimate:.0f} s/step ({v.resolved} matmuls measured at "
                    f"{peaks[v.resolved] / 1e9:.2g} GFLOP/s)"
                )
                continue
        seconds = _time_steps(v, max(warmup, 1), device)
        if reference is None:
            reference = (seconds, peaks[v.resolved])

    live = [v for v in order if not v.skipped]
    with tqdm(total=repeats * len(live), desc=f"{name} timing", leave=False) as bar:
        for r in range(repeats):
            for v in live if r % 2 == 0 else live[::-1]:
                v.times.append(_time_steps(v, steps, device))
                bar.update()

    tokens_per_step = B * T
    speed = {(v.impl, v.precision): tokens_per_step / statistics.median(v.times) for v in live}
    rows = []
    for v in variants:
        tps = speed.get((v.impl, v.precision))
        same = "fp32" if v.impl == "lessons_lib best" else v.precision
        peer, nano = speed.get((PEER, same)), speed.get((NANOGPT, same))
        rows.append(
            Row(
                config=name,
                batch=batch,
                precision=v.label,
                impl=v.impl + (" (compiled)" if v.impl == "lessons_lib best" and compile_model else ""),
                tokens_per_s=tps,
                ms_per_step=None if tps is None else 1000 * tokens_per_step / tps,
                ratio=None if tps is None or peer is None else tps / peer,
                ratio_nanogpt=None if tps is None or nano is None else tps / nano,
                mfu=None if tps is None else flops_per_token(config, T) * tps / peaks[v.resolved],
                note=v.skipped,
            )
        )
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_markdown(rows: list[Row], meta: dict[str, str]) -> str:
    """The results file: run metadata as a list, then one table row per measured variant."""
    lines = ["# Training-step throughput", ""]
    lines += [f"- **{k}**: {v}" for k, v in meta.items()]
    lines += [
        "",
        "| config | B x T | precision | implementation | tokens/s | ms/step | vs transformers | vs nanoGPT "
        "| MFU |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio, nano = (_fmt(x, ".2f") + ("x" if x is not None else "") for x in (r.ratio, r.ratio_nanogpt))
        mfu = "-" if r.mfu is None else f"{100 * r.mfu:.1f}%"
        tps = r.note or _fmt(r.tokens_per_s, ",.0f")
        lines.append(
            f"| {r.config} | {r.batch[0]} x {r.batch[1]} | {r.precision} | {r.impl} | {tps} | "
            f"{_fmt(r.ms_per_step, ',.0f')} | {ratio} | {nano} | {mfu} |"
        )
    lines += [
        "",
        "`vs transformers`, `vs nanoGPT`: tokens/s over `GPT2LMHeadModel`'s, nanoGPT's `model.py`'s, at "
        "the same precision and optimiser; for `lessons_lib best` over their fp32 (their default).",
        "MFU: `(6 N + 12 L C T)` model FLOPs per token x tokens/s, over the matmul peak measured above "
        "for the row's precision.",
        "",
    ]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` is either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["cpu-small", "cpu-medium"], choices=list(PRESETS),
                        help="model presets to measure")  # fmt: skip
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                        help="number formats of the peer rows")  # fmt: skip
    parser.add_argument("--steps", type=positive, default=3, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first")
    parser.add_argument("--repeats", type=positive, default=3, help="interleaved rounds; the median is kept")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default: cuda where available)")  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="torch.compile the 'lessons_lib best' model")
    parser.add_argument("--max-variant-seconds", type=float, default=120.0, help="skip slower variants")
    parser.add_argument("--peak-size", type=int, default=None, help="largest matmul for the peak")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the results file to write")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type not in BATCH_SHAPES:
        parser.error(f"--device {args.device!r}: this benchmark knows batch shapes for cpu and cuda only.")

    set_tf32(False)  # fp32 rows mean real fp32, also on GPUs
    needed = {resolve_precision(p, device) for p in [*args.precisions, "auto"]}
    peak_size = args.peak_size or (2048 if device.type == "cpu" else 8192)
    peaks = {p: measure_peak_flops(device, p, peak_size) for p in sorted(needed)}
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows: list[Row] = []
    for name in args.configs:
        rows += benchmark_config(
            name,
            device,
            BATCH_SHAPES[device.type][name],
            args.precisions,
            peaks,
            args.steps,
            args.warmup,
            args.repeats,
            args.compile,
            args.max_variant_seconds,
        )
        gc.collect()
    load_after = os.getloadavg()

    import transformers

    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": f"{device.type}: {device_name(device)}",
        "torch / transformers": f"{torch.__version__} / {transformers.__version__}",
        "threads": str(torch.get_num_threads()) + f" (of {os.cpu_count()} CPUs)",
        "native bf16 on CPU": str(cpu_has_native_bf16()),
        "measured matmul peak": ", ".join(f"{p} {v / 1e9:,.1f} GFLOP/s" for p, v in peaks.items()),
        "load average (1 min) before / after": f"{load_before[0]:.2f} / {load_after[0]:.2f}",
        "steps x repeats (warm-up)": f"{args.steps} x {args.repeats} ({args.warmup}), median kept",
        "wall time": f"{time.perf_counter() - started:.0f} s",
        "command": "python benchmarks/train_step.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    text = render_markdown(rows, meta)
    write_atomic(args.out, text)
    print(text)
    return text


if __name__ == "__main__":
    main()
