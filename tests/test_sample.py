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


@pytest.mark.parametrize(
    "flag, value, allowed",
    [
        ("--num-seq", "0", "a positive integer"),
        ("--max-tokens", "-1", "a positive integer"),
        ("--max-tokens", "0", "a positive integer"),
        ("--top-k", "-1", "an integer >= 0"),  # once silently the same as 0 (no limit)
        ("--top-p", "0", "a number in (0, 1]"),
        ("--top-p", "1.5", "a number in (0, 1]"),
        ("--temperature", "-0.5", "a number >= 0"),
        ("--seed", "-1", "an integer in [0, 4,294,967,295]"),
    ],
)
def test_a_bad_flag_is_one_line_naming_the_range(checkpoint, flag, value, allowed, capsys):
    with pytest.raises(SystemExit) as info:
        sample.main(["--checkpoint", str(checkpoint[1]), flag, value])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"python -m lessons_lib.sample: error: argument {flag}: '{value}' is not {allowed} "
        "(--help lists the options)\n"
    )


def test_an_empty_prompt_is_one_line(checkpoint, capsys):
    with pytest.raises(SystemExit) as info:
        sample.main(["--checkpoint", str(checkpoint[1]), "--prompt", ""])
    assert info.value.code == 1
    assert capsys.readouterr().err == (
        "python -m lessons_lib.sample: error: The prompt is empty; give at least one character "
        "(e.g. '\\n').\n"
    )
