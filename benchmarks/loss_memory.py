"""Peak memory of the output layer + loss: plain (lm_head, then F.cross_entropy) vs fused and chunked.

One forward + backward of ``loss(h @ weight.T, targets)`` with ``h`` (N, C) and ``weight`` (V, C)
requiring grad, as in a training step. Each variant runs in a fresh process, and its peak is that
process's peak resident memory (``VmHWM``, reset once the inputs exist) minus what it held then, so
the number is what the output layer adds at its worst: logits, their softmax and gradient for the
plain path; one vocabulary chunk of them, plus the weight's gradient, for the chunked one.

    python benchmarks/loss_memory.py                  # the main job's B8 x T128 and GPT-2 124M's B16 x T1024
    python benchmarks/loss_memory.py --cases 1024x128
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

VOCAB_SIZE = 50257
# name: (tokens N = B x T, width C)
CASES = {"1024x64": (8 * 128, 64), "1024x128": (8 * 128, 128), "16384x768": (16 * 1024, 768)}
LABELS = {
    "1024x64": "cpu-narrow, B8 x T128 (the main job)",
    "1024x128": "cpu-small, B8 x T128",
    "16384x768": "GPT-2 124M, B16 x T1024",
}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "loss_memory.md"


def _status_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in KiB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> int:
    """Make the peak the current resident memory (writing 5 to /proc/self/clear_refs resets VmHWM,
    Linux 4.0+), so a transient peak from the imports hides nothing; returns that baseline."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def measure(variant: str, n: int, c: int) -> float:
    """MiB the output layer + loss adds to this process's peak (run in a fresh process)."""
    import torch
    import torch.nn.functional as F

    from lessons_lib.chunked_loss import linear_cross_entropy

    torch.manual_seed(0)
    h = torch.randn(n, c, requires_grad=True)
    weight = (0.02 * torch.randn(VOCAB_SIZE, c)).requires_grad_()
    targets = torch.randint(0, VOCAB_SIZE, (n,))
    before = _reset_peak()
    if variant == "plain":
        loss = F.cross_entropy((h @ weight.T).float(), targets)
    else:
        loss = linear_cross_entropy(h, weight, targets)
    loss.backward()
    return (_status_kib("VmHWM") - before) / 1024


def run_case(name: str) -> dict[str, float]:
    n, c = CASES[name]
    peaks = {}
    for variant in ("plain", "chunked"):
        code = f"import json, loss_memory; print(json.dumps(loss_memory.measure({variant!r}, {n}, {c})))"
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]),
            },
        )
        peaks[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    return peaks


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), help="N x C shapes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the results file to write")
    args = parser.parse_args(argv)
    lines = [
        "# Output layer + loss: peak memory, plain vs chunked",
        "",
        f"- **date**: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- **command**: python benchmarks/loss_memory.py {' '.join(sys.argv[1:] if argv is None else argv)}",
        "- **measure**: peak resident memory added by one forward + backward, fp32, a fresh process per "
        "variant",
        "",
        "| case | N x C (V = 50,257) | plain | chunked | plain / chunked |",
        "|---|---|---:|---:|---:|",
    ]
    for name in args.cases:
        n, c = CASES[name]
        peaks = run_case(name)
        ratio = peaks["plain"] / max(peaks["chunked"], 1e-9)
        plain, chunked = (f"{peaks[v]:,.0f} MiB" for v in ("plain", "chunked"))
        lines.append(f"| {LABELS[name]} | {n:,} x {c} | {plain} | {chunked} | {ratio:.1f}x |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(text)
    return text


if __name__ == "__main__":
    main()
