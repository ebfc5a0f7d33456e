"""The sampling command (``python -m lessons_lib.sample``)."""

import pytest
import torch

from lessons_lib import GPT, GPTConfig, generate_text, sample, save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=16))
    return model, save_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt.pt", model)


def test_prints_the_seeded_continuations_of_generate_text(checkpoint, capsys):
    model, path = checkpoint
    argv = ["--checkpoint", str(path), "--prompt", "ROMEO:", "--num-seq", "2", "--max-tokens", "5",
            "--temperature", "0.8", "--top-k", "10", "--seed", "3"]  # fmt: skip
    sample.main(argv)
    first = capsys.readouterr().out
    texts = generate_text(model, "ROMEO:", 2, 5, seed=3, temperature=0.8, top_k=10)
    assert first == "".join(f"> {t}\n\n" for t in texts)
    sample.main(argv)
    assert capsys.readouterr().out == first  # seeded


def test_bad_counts_are_usage_errors(checkpoint, capsys):
    with pytest.raises(SystemExit):
        sample.main(["--checkpoint", str(checkpoint[1]), "--num-seq", "0"])
    assert "'0' is not a positive integer" in capsys.readouterr().err
