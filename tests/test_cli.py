"""The main job and the sampling command, end to end at a tiny size."""

import json

import pytest

from lessons_lib import sample, train

TINY_RUN = ["--model", "cpu-tiny", "--batch-size", "2", "--seq-len", "32", "--max-steps", "6",
            "--warmup-steps", "2", "--eval-interval", "3", "--eval-batches", "1",
            "--no-progress"]  # fmt: skip


def test_train_then_sample(tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*TINY_RUN, "--out-dir", str(out)])
    for name in ("ckpt.pt", "loss.png", "samples.txt", "metrics.jsonl"):
        assert (out / name).stat().st_size > 0, name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(6))
    assert [r["step"] for r in rows if "val_loss" in r] == [0, 3, 5]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert "model cpu-tiny: " in capsys.readouterr().out

    argv = ["--checkpoint", str(out / "ckpt.pt"), "--prompt", "ROMEO:", "--num-seq", "2", "--max-tokens", "5"]
    sample.main(argv)
    first = capsys.readouterr().out
    assert first.count("> ROMEO:") == 2
    sample.main(argv)
    assert capsys.readouterr().out == first  # seeded


def test_resume_continues_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*TINY_RUN, "--max-steps", "4", "--out-dir", str(out)])
    train.main(["--resume", str(out / "ckpt.pt"), "--max-steps", "6", "--no-progress"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(6))
    assert "trained to step 6" in capsys.readouterr().out


def test_seq_len_longer_than_block_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="seq_len=128 exceeds block_size=64"):
        train.main(["--model", "cpu-tiny", "--seq-len", "128", "--out-dir", str(tmp_path)])
