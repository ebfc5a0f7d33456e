"""The main job and the generation command, end to end at a tiny size."""

import json

from lessons_lib import sample, train

TINY_RUN = ["--preset", "cpu-tiny", "--batch-size", "2", "--seq-len", "32", "--max-steps", "6",
            "--eval-interval", "3", "--eval-batches", "1"]  # fmt: skip


def test_train_then_generate(tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*TINY_RUN, "--out-dir", str(out)])
    for name in ("ckpt.pt", "loss.png", "samples.txt", "history.json"):
        assert (out / name).stat().st_size > 0, name
    history = json.loads((out / "history.json").read_text())
    assert len(history["train_loss"]) == 6 and history["val_step"] == [0, 3, 5]
    assert history["train_loss"][-1] < history["train_loss"][0]
    capsys.readouterr()

    argv = ["--checkpoint", str(out / "ckpt.pt"), "--prompt", "ROMEO:", "--num-seq", "2", "--max-tokens", "5"]
    sample.main(argv)
    first = capsys.readouterr().out
    assert first.count("> ROMEO:") == 2
    sample.main(argv)
    assert capsys.readouterr().out == first  # seeded


def test_seq_len_longer_than_block_size_is_refused(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="--seq-len 128 exceeds the cpu-tiny block_size 64"):
        train.main(["--preset", "cpu-tiny", "--seq-len", "128", "--out-dir", str(tmp_path)])
