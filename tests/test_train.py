"""The main job's command line (``python -m lessons_lib.train``), end to end at a tiny size."""

import json
from dataclasses import fields

import pytest

from lessons_lib import sample, train
from lessons_lib.run import RunConfig

TINY_RUN = ["--model", "cpu-tiny", "--batch-size", "2", "--seq-len", "32", "--max-steps", "6",
            "--warmup-steps", "2", "--eval-interval", "3", "--eval-batches", "1",
            "--no-progress"]  # fmt: skip


def test_train_writes_a_run_that_samples(tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*TINY_RUN, "--out-dir", str(out)])
    for name in ("ckpt.pt", "loss.png", "samples.txt", "metrics.jsonl"):
        assert (out / name).stat().st_size > 0, name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(6))
    assert [r["step"] for r in rows if "val_loss" in r] == [0, 3, 5]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert "model cpu-tiny: " in capsys.readouterr().out
    sample.main(["--checkpoint", str(out / "ckpt.pt"), "--prompt", "ROMEO:", "--max-tokens", "3"])
    assert capsys.readouterr().out.count("> ROMEO:") == 4  # the checkpoint samples


def test_resume_continues_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*TINY_RUN, "--max-steps", "4", "--out-dir", str(out)])
    train.main(["--resume", str(out / "ckpt.pt"), "--max-steps", "6", "--no-progress"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(6))
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
