"""DDP on CPU with gloo: 2 processes train exactly like 1 process with the same global batch."""

import json
import subprocess
import sys

from lessons_lib import load_checkpoint
from lessons_lib.distributed import torchrun_unavailable

RUN = ["--model", "cpu-tiny", "--batch-size", "2", "--seq-len", "16", "--max-steps", "3",
       "--warmup-steps", "1", "--max-lr", "1e-4", "--min-lr", "1e-5", "--eval-interval", "0",
       "--eval-batches", "1", "--final-eval-batches", "4", "--precision", "fp32",
       "--total-batch-tokens", "64", "--no-progress",
       # GPT-2's init: its loss is about 10.8 on every batch, so 3 small steps show a fall (the
       # co-occurrence init of the default recipe varies more from batch to batch than that)
       "--embedding-init", "normal"]  # fmt: skip


def test_two_gloo_processes_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "lessons_lib.train", *RUN, "--out-dir", str(one)], check=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*torchrun, "-m", "lessons_lib.train", *RUN, "--out-dir", str(two)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 micro-batch(es) of 2x16 per step on 1 process(es)" not in proc.stdout
    assert "1 micro-batch(es) of 2x16 per step on 2 process(es)" in proc.stdout
    a, b = load_checkpoint(one / "ckpt.pt")["model"], load_checkpoint(two / "ckpt.pt")["model"]
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff <= 1e-6
    rows = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (one, two)]
    losses = [[r["loss"] for r in run if "loss" in r] for run in rows]  # the training steps
    assert len(losses[0]) == 3 and max(abs(x - y) for x, y in zip(*losses, strict=True)) <= 1e-6
    finals = [run[-1]["final_val_loss"] for run in rows]  # rank 0's evaluation after the last step
    assert abs(finals[0] - finals[1]) <= 1e-6
    assert losses[0][-1] < losses[0][0]  # it did train


def test_torchrun_is_unavailable_on_windows_only():
    assert torchrun_unavailable("linux") is None and torchrun_unavailable("darwin") is None
    assert "libuv" in torchrun_unavailable("win32")
