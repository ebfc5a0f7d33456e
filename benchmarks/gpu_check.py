"""One run that says whether lessons_lib works, and how fast, on a lent NVIDIA GPU.

    bash benchmarks/gpu_check.sh        # or: python benchmarks/gpu_check.py [--skip-tests]

A GPU machine may be lent for minutes, with nothing outside it reachable, so everything is checked
in one go (sized for under 8 minutes on one H200; not yet timed there) and written to
``benchmarks/results/gpu_check.md``:

1. **throughput**: GPT-2 124M (vocabulary padded to 50,304), B16 x T1024, bf16 autocast,
   ``torch.compile``, fused AdamW (``configure_optimizer``), TF32 for what stays float32; timed
   through ``lessons_lib.loop.train_step`` after untimed warm-up steps (the compilation). MFU
   against the data-sheet dense bf16 peak of the GPU (``PEAK_BF16_DENSE``), with the model FLOPs
   per token of ``benchmarks/train_step.py`` (``6 N + 12 L C T``).
2. **training**: the same model, fresh and eager, trained for a short run on the bytes of
   lessons_lib's own source (text with structure, no tokenizer or download needed): the loss must
   fall to half of its first value.
3. **kv cache**: greedy generation from that trained model with and without the KV cache must give
   the same tokens (float32, TF32 off, so both paths are as exact as the GPU allows).
4. **unit tests**: ``tests/`` (not the notebooks) with ``LESSONS_TEST_DEVICE=cuda``: the tests
   that take the ``device`` fixture (model, chunked loss, KV cache) run on the GPU.

Each check is recorded as it finishes, so a run cut short keeps what it measured. The exit status
is 0 only if every check passed; without CUDA it is 2, before anything runs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # lessons_lib and benchmarks.train_step without an install
from benchmarks.train_step import flops_per_token  # noqa: E402
from lessons_lib.assets import atomic_write  # noqa: E402
from lessons_lib.cli import positive  # noqa: E402
from lessons_lib.data import DataLoaderLite  # noqa: E402
from lessons_lib.device import synchronize  # noqa: E402
from lessons_lib.generation import generate  # noqa: E402
from lessons_lib.loop import train_step  # noqa: E402
from lessons_lib.model import GPT, GPTConfig, KVCache  # noqa: E402
from lessons_lib.optim import configure_optimizer, cosine_lr  # noqa: E402
from lessons_lib.precision import set_tf32  # noqa: E402
from lessons_lib.utils import mode  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_check.md"
# Dense bf16 tensor-core peaks from NVIDIA's data sheets: (table name, pattern on
# torch.cuda.get_device_name, FLOP/s). torch names the H100 SXM "NVIDIA H100 80GB HBM3"; the
# PCIe and NVL parts are slower and not listed, so they are reported as unknown.
PEAK_BF16_DENSE: list[tuple[str, str, float]] = [
    ("H200", r"H200", 989e12),
    ("H100 SXM", r"H100 (SXM|80GB HBM3)", 989e12),
    ("A100", r"A100", 312e12),
    ("L4", r"\bL4\b", 121e12),  # not the L40 / L40S
]


@dataclass
class Check:
    name: str
    passed: bool
    numbers: dict[str, str] = field(default_factory=dict)  # what it measured, formatted
    note: str = ""


def peak_bf16_flops(device_name: str) -> tuple[str, float] | None:
    """The table's (name, dense bf16 FLOP/s) for a CUDA device name; None when it is not listed."""
    for name, pattern, flops in PEAK_BF16_DENSE:
        if re.search(pattern, device_name):
            return name, flops
    return None


def mfu_text(model_flops_per_s: float, device_name: str) -> str:
    """Model FLOP/s as a share of the GPU's dense bf16 peak, or why it cannot be said."""
    peak = peak_bf16_flops(device_name)
    if peak is None:
        return f"unknown (no dense bf16 peak for {device_name!r} in PEAK_BF16_DENSE)"
    name, flops = peak
    return f"{100 * model_flops_per_s / flops:.1f}% of {flops / 1e12:.0f} TFLOP/s ({name})"


@dataclass
class StepTiming:
    tokens_per_s: float
    ms_per_step: float
    warmup_s: float  # the untimed steps: compilation, autotuning, allocator warm-up
    peak_memory: int | None  # bytes allocated at most during the timed steps (CUDA only)


def time_training_step(
    config: GPTConfig,
    batch: tuple[int, int],
    device: torch.device,
    precision: str = "bf16",
    steps: int = 50,
    warmup: int = 5,
    compile_model: bool = True,
) -> StepTiming:
    """Seconds per ``train_step`` of a fresh model on one fixed random batch (content does not
    change the speed), measured between CUDA syncs after ``warmup`` untimed steps."""
    B, T = batch
    torch.manual_seed(0)
    model = GPT(config).to(device)
    optimizer, _ = configure_optimizer(model)  # fused AdamW on CUDA
    model = torch.compile(model) if compile_model else model
    gen = torch.Generator().manual_seed(0)
    data = DataLoaderLite(B, T, torch.randint(0, config.vocab_size, (B * T + 1,), generator=gen).to(device))
    with mode(model, training=True):
        start = time.perf_counter()
        for step in range(warmup):
            train_step(model, optimizer, data, step, precision=precision)
        synchronize(device)
        warmup_s = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for step in range(warmup, warmup + steps):
            train_step(model, optimizer, data, step, precision=precision)
        synchronize(device)
        seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return StepTiming(B * T / seconds, 1000 * seconds, warmup_s, peak)


def source_bytes() -> torch.Tensor:
    """lessons_lib's own source as byte ids (0-255): real text, on every copy of the repository."""
    text = b"".join(p.read_bytes() for p in sorted((ROOT / "lessons_lib").glob("*.py")))
    return torch.frombuffer(bytearray(text), dtype=torch.uint8).long()


def train_briefly(
    model: GPT, data: DataLoaderLite, steps: int, max_lr: float = 6e-4, precision: str = "bf16"
) -> list[float]:
    """``steps`` steps of the recipe's optimiser and schedule (warm-up, cosine to a tenth, clipping
    at 1); the loss of every step."""
    optimizer, _ = configure_optimizer(model, lr=max_lr)
    warmup = max(1, steps // 10)
    losses = []
    with mode(model, training=True):
        for step in range(steps):
            lr = cosine_lr(step, max_lr, max_lr / 10, warmup, steps)
            result = train_step(model, optimizer, data, step, lr=lr, grad_clip=1.0, precision=precision)
            losses.append(result.loss)
    return losses


def loss_fell(losses: list[float], fraction: float = 0.5, last: int = 10) -> bool:
    """Whether the mean of the ``last`` losses is at most ``fraction`` of the first loss."""
    return statistics.mean(losses[-last:]) <= fraction * losses[0]


def first_difference(a: torch.Tensor, b: torch.Tensor) -> int | None:
    """The first position (column) where two (B, T) token tensors differ; None when equal."""
    columns = (a != b).any(dim=0).nonzero()
    return None if columns.numel() == 0 else int(columns[0])


@dataclass
class CacheComparison:
    identical: bool
    first_difference: int | None  # position in the generated sequences
    max_logit_diff: float  # cached step-by-step logits against one full forward, over the output
    seconds: dict[bool, float]  # generation time with (True) and without (False) the cache


@torch.no_grad()
def compare_kv_cache(model: GPT, prompts: torch.Tensor, new_tokens: int) -> CacheComparison:
    """Greedy ``generate`` with and without the KV cache, and the logits of both paths on the
    cached output (the sizes of their rounding differences, should the tokens differ)."""
    device = prompts.device
    outputs, seconds = {}, {}
    for use_kv_cache in (False, True):
        synchronize(device)
        start = time.perf_counter()
        outputs[use_kv_cache] = generate(model, prompts, new_tokens, temperature=0, use_kv_cache=use_kv_cache)
        synchronize(device)
        seconds[use_kv_cache] = time.perf_counter() - start
    out = outputs[True][:, : model.config.block_size]
    with mode(model, training=False):
        full = model(out)[0]
        cache = KVCache(model.config, out.size(0), out.size(1), device, next(model.parameters()).dtype)
        stepwise = torch.cat([model(out[:, t : t + 1], kv_cache=cache)[0] for t in range(out.size(1))], dim=1)
    return CacheComparison(
        identical=torch.equal(outputs[True], outputs[False]),
        first_difference=first_difference(outputs[True], outputs[False]),
        max_logit_diff=(full - stepwise).abs().max().item(),
        seconds=seconds,
    )


def run_unit_tests(paths: list[str], device: str, timeout_s: float) -> Check:
    """pytest on ``paths`` in a subprocess with ``LESSONS_TEST_DEVICE=device``, without the
    notebooks and without nbval (``-o addopts=``); counts from its JUnit XML report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        cmd = [sys.executable, "-m", "pytest", *paths, "--ignore=tests/test_notebooks.py", "-o", "addopts=",
               "-p", "no:cacheprovider", "-q", f"--junitxml={report}"]  # fmt: skip
        env = {**os.environ, "LESSONS_TEST_DEVICE": device}
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return Check("unit tests", False, note=f"stopped after {timeout_s:.0f} s (--tests-timeout)")
        elapsed = time.perf_counter() - start
        if not report.is_file():
            stderr = proc.stderr.strip()[-300:]
            return Check("unit tests", False, note=f"pytest exited {proc.returncode}: {stderr}")
        suite = ET.parse(report).getroot()
        suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
        failed = [
            f"{case.get('classname')}::{case.get('name')}"
            for case in suite.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None
        ]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    numbers = {
        "LESSONS_TEST_DEVICE": device,
        "passed": str(counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]),
        "failed / errors / skipped": f"{counts['failures']} / {counts['errors']} / {counts['skipped']}",
        "wall time": f"{elapsed:.0f} s",
        "pass if": "pytest exits 0: no test failed",
    }
    note = "failed: " + ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else "") if failed else ""
    return Check("unit tests", proc.returncode == 0 and not failed, numbers, note)


def throughput_check(device: torch.device, steps: int, warmup: int) -> Check:
    config = GPTConfig.from_preset("gpt2", vocab_multiple=64)
    B, T = 16, 1024
    timing = time_training_step(config, (B, T), device, "bf16", steps, warmup, compile_model=True)
    flops = flops_per_token(config, T)
    numbers = {
        "model": f"gpt2 (124M), vocab padded to {config.padded_vocab_size:,}",
        "batch": f"B{B} x T{T}, bf16 autocast, torch.compile, fused AdamW, TF32 on",
        "tokens/s": f"{timing.tokens_per_s:,.0f}",
        "ms/step": f"{timing.ms_per_step:.1f} (mean of {steps}, after {warmup} warm-up steps)",
        "warm-up (compile)": f"{timing.warmup_s:.1f} s",
        "MFU": mfu_text(flops * timing.tokens_per_s, torch.cuda.get_device_name(device)),
        "model FLOPs/token": f"{flops / 1e9:.3f} GFLOP (6 N + 12 L C T)",
        "peak memory": f"{timing.peak_memory / 2**30:.1f} GiB (max_memory_allocated)",
        "pass if": "it runs: a measurement, no threshold",
    }
    return Check("throughput", True, numbers)


def training_check(model: GPT, data: DataLoaderLite, steps: int) -> Check:
    start = time.perf_counter()
    losses = train_briefly(model, data, steps)
    elapsed = time.perf_counter() - start
    numbers = {
        "run": f"{steps} steps, B{data.B} x T{data.T}, bf16, eager, lr 6e-4 cosine, on the source bytes",
        "loss": f"{losses[0]:.3f} at step 0 -> {statistics.mean(losses[-10:]):.3f} (mean of the last 10)",
        "loss every 10 steps": ", ".join(f"{x:.2f}" for x in losses[::10]),
        "wall time": f"{elapsed:.1f} s",
        "pass if": "the mean of the last 10 losses is at most half the first loss",
    }
    return Check("training", loss_fell(losses), numbers)


def kv_cache_check(model: GPT, data: DataLoaderLite, new_tokens: int) -> Check:
    prompts = data.tokens[: 4 * 16].view(4, 16)
    result = compare_kv_cache(model, prompts, new_tokens)
    numbers = {
        "generation": f"4 prompts x 16 tokens + {new_tokens} greedy tokens, float32",
        "identical tokens": str(result.identical)
        + ("" if result.identical else f" (first difference at position {result.first_difference})"),
        "max |logit diff|, cached vs full forward": f"{result.max_logit_diff:.2e}",
        "time with / without cache": f"{result.seconds[True]:.2f} s / {result.seconds[False]:.2f} s",
        "pass if": "the tokens are identical",
    }
    return Check("kv cache", result.identical, numbers)


def render_markdown(checks: list[Check], meta: dict[str, str]) -> str:
    """The results file: the machine, a summary table, then each check's numbers."""
    lines = ["# GPU check", ""]
    lines += [f"- **{k}**: {v}" for k, v in meta.items()]
    lines += ["", "| check | result |", "|---|---|"]
    lines += [f"| {c.name} | {'PASS' if c.passed else 'FAIL'} |" for c in checks]
    for c in checks:
        lines += ["", f"## {c.name}: {'PASS' if c.passed else 'FAIL'}", ""]
        lines += [f"- {k}: {v}" for k, v in c.numbers.items()]
        lines += [f"- note: {c.note}"] if c.note else []
    return "\n".join(lines) + "\n"


def _guarded(name: str, run: Callable[[], Check]) -> Check:
    """``run()``, or a failed check naming the exception: one broken check must not hide the rest."""
    try:
        return run()
    except Exception as exc:
        traceback.print_exc()
        return Check(name, False, note=f"raised {type(exc).__name__}: {exc}"[:500])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=positive, default=50, help="timed steps of the throughput check")
    parser.add_argument("--warmup", type=positive, default=5, help="untimed steps first (torch.compile)")
    parser.add_argument("--train-steps", type=positive, default=200, help="steps of the training check")
    parser.add_argument("--new-tokens", type=positive, default=128, help="greedy tokens, KV cache check")
    parser.add_argument("--tests-timeout", type=float, default=270.0, help="seconds the unit tests may take")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the unit tests")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the results file to write")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA GPU; "
              "gpu_check needs one.", file=sys.stderr)  # fmt: skip
        return 2

    device = torch.device("cuda")
    memory = torch.cuda.get_device_properties(device).total_memory
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": f"{torch.cuda.get_device_name(device)} ({memory / 2**30:.0f} GiB)",
        "torch / CUDA": f"{torch.__version__} / {torch.version.cuda}",
        "python": f"{platform.python_version()} ({sys.executable})",
        "command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    checks: list[Check] = []

    def record(check: Check) -> None:
        checks.append(check)
        text = render_markdown(checks, meta)
        atomic_write(args.out, lambda f: f.write(text.encode()))
        print(f"{check.name}: {'PASS' if check.passed else 'FAIL'} {check.numbers} {check.note}", flush=True)

    set_tf32(True)  # torch.set_float32_matmul_precision("high"): what autocast leaves in float32
    record(_guarded("throughput", lambda: throughput_check(device, args.steps, args.warmup)))
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("gpt2", vocab_multiple=64)).to(device)
    data = DataLoaderLite(16, 1024, source_bytes().to(device))
    record(_guarded("training", lambda: training_check(model, data, args.train_steps)))
    set_tf32(False)  # generation in full float32: both paths as exact as the GPU allows
    record(_guarded("kv cache", lambda: kv_cache_check(model, data, args.new_tokens)))
    if not args.skip_tests:
        record(_guarded("unit tests", lambda: run_unit_tests(["tests"], "cuda", args.tests_timeout)))
    print(f"written to {args.out}")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
