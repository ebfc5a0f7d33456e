"""The main job's command line (``python -m lessons_lib.train``), end to end at a tiny size."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest

from lessons_lib import load_checkpoint, sample, train
from lessons_lib.run import RunConfig, Trainer

TINY_RUN = ["--model", "cpu-tiny", "--batch-size", "2", "--seq-len", "32", "--max-steps", "6",
            "--warmup-steps", "2", "--eval-interval", "3", "--eval-batches", "1",
            "--final-eval-batches", "2", "--no-progress"]  # fmt: skip


def test_train_writes_a_run_that_samples(tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*TINY_RUN, "--out-dir", str(out)])
    for name in ("ckpt.pt", "loss.png", "samples.txt", "metrics.jsonl"):
        assert (out / name).stat().st_size > 0, name
    *rows, final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(6))
    assert [r["step"] for r in rows if "val_loss" in r] == [0, 3, 5]
    assert rows[-1]["loss"] < rows[0]["loss"]
    printed = capsys.readouterr().out
    assert "model cpu-tiny: " in printed
    assert (
        final["step"] == 6
        and f"val loss {final['final_val_loss']:.3f} on {final['final_val_tokens']:,}" in printed
    )
    sample.main(["--checkpoint", str(out / "ckpt.pt"), "--prompt", "ROMEO:", "--max-tokens", "3"])
    assert capsys.readouterr().out.count("> ROMEO:") == 4  # the checkpoint samples


def test_resume_continues_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*TINY_RUN, "--max-steps", "4", "--out-dir", str(out)])
    train.main(["--resume", str(out / "ckpt.pt"), "--max-steps", "6", "--no-progress"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(6))
    assert [r["step"] for r in rows if "final_val_loss" in r] == [6]  # step 4's was dropped
    assert "trained to step 6" in capsys.readouterr().out


def test_seq_len_longer_than_block_size_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(["--model", "cpu-tiny", "--seq-len", "128", "--out-dir", str(tmp_path)])
    assert "seq_len=128 exceeds block_size=64" in capsys.readouterr().err


def test_resume_refuses_a_recipe_and_fixed_settings(tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*TINY_RUN, "--max-steps", "2", "--out-dir", str(out)])
    capsys.readouterr()
    ckpt = str(out / "ckpt.pt")
    with pytest.raises(SystemExit):
        train.main(["--resume", ckpt, "--recipe", "gpt2-124m"])
    assert "--recipe cannot be combined with --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--resume", ckpt, "--seq-len", "16"])
    assert "seq_len=16 (saved: 32)" in capsys.readouterr().err


def test_help_documents_every_run_setting(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for f in fields(RunConfig):
        assert " ".join(f.metadata["help"].split()) in text, f.name
    assert "[fixed for a run]" in text and "--recipe is refused" in text


@pytest.mark.parametrize(
    "flag, value, allowed",
    [
        ("--min-lr", "-1", "a number >= 0"),
        ("--max-lr", "0", "a number > 0"),
        ("--total-batch-tokens", "-512", "an integer >= 0"),
        ("--max-steps", "0", "a positive integer"),
        ("--eval-batches", "0", "a positive integer"),
        ("--warmup-steps", "-1", "an integer >= 0"),
        ("--grad-clip", "-1", "a number >= 0"),
        ("--weight-decay", "-0.1", "a number >= 0"),
        ("--checkpoint-interval", "-1", "an integer >= 0"),
        ("--seed", "-1", "an integer in [0, 4,294,967,295]"),
        ("--batch-size", "2.5", "a positive integer"),
    ],
)
def test_a_number_out_of_range_is_refused_by_its_flag_in_one_line(flag, value, allowed, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        train.main([*TINY_RUN, flag, value, "--out-dir", str(tmp_path)])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"python -m lessons_lib.train: error: argument {flag}: '{value}' is not {allowed} "
        "(--help lists the options)\n"
    )
    assert not any(tmp_path.iterdir())


def test_min_lr_above_max_lr_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        train.main([*TINY_RUN, "--max-lr", "0.01", "--min-lr", "0.1", "--out-dir", str(tmp_path)])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m lessons_lib.train: error: min_lr=0.1 must be <= max_lr=0.01")
    assert err.count("\n") == 1


def test_a_new_run_into_a_folder_with_a_run_is_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*TINY_RUN, "--max-steps", "2", "--out-dir", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        train.main([*TINY_RUN, "--max-steps", "2", "--out-dir", str(out)])
    assert info.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert (
        f"already holds a run (ckpt.pt, metrics.jsonl) that this one would overwrite: continue it with "
        f"--resume {out / 'ckpt.pt'}" in captured.err
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_writes_into_the_folder_of_the_checkpoint_it_reads(tmp_path, capsys):
    out, copy = tmp_path / "run", tmp_path / "copy"
    train.main([*TINY_RUN, "--max-steps", "2", "--out-dir", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    copy.mkdir()
    shutil.copy(out / "ckpt.pt", copy / "ckpt.pt")  # its run_config.out_dir still names run/
    capsys.readouterr()
    train.main(["--resume", str(copy / "ckpt.pt"), "--max-steps", "4", "--no-progress"])
    printed = capsys.readouterr().out
    assert f"resuming {copy / 'ckpt.pt'} at step 2 of 4, data shakespeare, writing to {copy}\n" in printed
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert load_checkpoint(copy / "ckpt.pt")["step"] == 4
    assert {"ckpt.pt", "metrics.jsonl", "loss.png", "samples.txt"} <= {p.name for p in copy.iterdir()}


def test_ctrl_c_saves_the_run_and_prints_the_command_that_resumes_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    step = Trainer.next_step

    def ctrl_c_after_step_2(self):
        metrics = step(self)
        if metrics["step"] == 2:
            signal.raise_signal(signal.SIGINT)
        return metrics

    monkeypatch.setattr(Trainer, "next_step", ctrl_c_after_step_2)
    with pytest.raises(SystemExit) as info:
        train.main([*TINY_RUN, "--out-dir", str(out)])
    assert info.value.code == 130
    last = capsys.readouterr().err.splitlines()[-1]
    ckpt = out / "ckpt.pt"
    assert last == (
        f"python -m lessons_lib.train: interrupted at step 3, saved to {ckpt}; continue with: "
        f"python -m lessons_lib.train --resume {ckpt}"
    )
    monkeypatch.undo()
    train.main(last.split("continue with: python -m lessons_lib.train ")[1].split() + ["--no-progress"])
    assert "trained to step 6" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [*range(6), 6]  # each step once, then the final evaluation


def test_ctrl_c_in_a_real_process_exits_130_without_a_traceback(tmp_path):
    out = tmp_path / "run"
    argv = [*TINY_RUN, "--max-steps", "100000", "--eval-interval", "0", "--out-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "lessons_lib.train", *argv], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        log = out / "metrics.jsonl"
        while not log.is_file() or log.read_text().count("\n") < 2:  # two steps done
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    resume = f"continue with: python -m lessons_lib.train --resume {out / 'ckpt.pt'}"
    assert err.splitlines()[-1].endswith(resume)
    assert load_checkpoint(out / "ckpt.pt")["step"] >= 2
