"""What the command lines share, and that every option of every command line explains itself."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lessons_lib import GPT, GPTConfig, UserError, finetune, fineweb, hellaswag, sample, save_checkpoint
from lessons_lib import train as train_cli
from lessons_lib.cli import add_model_source, command, model_from_args, number, parser, positive
from lessons_lib.utils import POSITIVE, RATE

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "train": train_cli,
    "sample": sample,
    "fineweb": fineweb,
    "hellaswag": hellaswag,
    "finetune": finetune,
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_a_help_text(name, monkeypatch):
    parsers = []

    def capture(self, args=None, namespace=None):
        parsers.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        COMMANDS[name].main([])
    (parser,) = parsers
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert options and all(a.help for a in options), [a.dest for a in options if not a.help]


def test_positive_accepts_positive_integers_only():
    assert positive("3") == 3
    for bad in ("0", "-2", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a positive integer"):
            positive(bad)


def test_model_from_a_checkpoint_or_a_pretrained_folder(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    p = argparse.ArgumentParser()
    add_model_source(p)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=100, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(tmp_path / "ckpt.pt", model)
    loaded = model_from_args(p.parse_args(["--checkpoint", str(tmp_path / "ckpt.pt"), "--device", "cpu"]))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), loaded.parameters(), strict=True))
    GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=16, vocab_size=100)
    ).save_pretrained(tmp_path / "hf")
    pretrained = model_from_args(p.parse_args(["--pretrained", str(tmp_path / "hf")]))
    assert pretrained.config.vocab_size == 100 and pretrained.config.n_layer == 1
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "a", "--pretrained", "b"])  # exactly one source


def _fails(exc: BaseException):
    """A decorated command whose body raises ``exc``."""

    def body(argv=None):
        raise exc

    return command("demo")(body)


@pytest.mark.parametrize(
    "exc, status, line",
    [
        (UserError("max_lr must be a number > 0, got 0."), 1,
         "python -m lessons_lib.demo: error: max_lr must be a number > 0, got 0."),
        (FileNotFoundError("No HellaSwag file at x.jsonl.\nPass a JSONL file."), 1,
         "python -m lessons_lib.demo: error: No HellaSwag file at x.jsonl. Pass a JSONL file."),
        (KeyboardInterrupt("interrupted at step 3; continue with --resume r/ckpt.pt"), 130,
         "python -m lessons_lib.demo: interrupted at step 3; continue with --resume r/ckpt.pt"),
        (KeyboardInterrupt(), 130, "python -m lessons_lib.demo: interrupted"),
    ],
)  # fmt: skip
def test_a_user_error_is_one_line_on_stderr_and_a_failing_status(exc, status, line, capsys):
    with pytest.raises(SystemExit) as info:
        _fails(exc)([])
    assert info.value.code == status
    captured = capsys.readouterr()
    assert captured.err == line + "\n" and captured.out == ""


def test_a_bug_keeps_its_exception_and_traceback():
    with pytest.raises(TypeError, match="a bug"):
        _fails(TypeError("a bug"))([])
    with pytest.raises(ValueError, match="not a UserError"):  # a plain ValueError is not the user's
        _fails(ValueError("not a UserError"))([])


def test_a_bad_flag_is_one_line_with_status_2(capsys):
    p = parser("demo", "A demo.")
    p.add_argument("--steps", type=number(POSITIVE), help="steps")
    p.add_argument("--lr", type=number(RATE), help="rate")
    for argv, message in [
        (["--steps", "0"], "argument --steps: '0' is not a positive integer"),
        (["--lr", "-0.001"], "argument --lr: '-0.001' is not a number > 0"),
        (["--lr", "nan"], "argument --lr: 'nan' is not a number > 0"),
        (["--nope"], "unrecognized arguments: --nope"),
    ]:
        with pytest.raises(SystemExit) as info:
            p.parse_args(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err == f"python -m lessons_lib.demo: error: {message} (--help lists the options)\n"


@pytest.mark.parametrize(
    "name, argv",
    [
        ("sample", ["--checkpoint", "MISSING"]),
        ("hellaswag", ["--checkpoint", "MISSING", "--data", str(ROOT / "tests/data/hellaswag_mini.jsonl")]),
        ("finetune", ["--checkpoint", "MISSING", "--data", str(ROOT / "tests/data/chat_mini.jsonl"),
                      "--out-dir", "OUT"]),
        ("train", ["--resume", "MISSING"]),
    ],
)  # fmt: skip
def test_every_command_reports_a_missing_checkpoint_in_one_line(name, argv, tmp_path, capsys):
    argv = [str(tmp_path / a) if a in ("MISSING", "OUT") else a for a in argv]
    with pytest.raises(SystemExit) as info:
        COMMANDS[name].main(argv)
    assert info.value.code == 1
    err = capsys.readouterr().err
    hint = "Train one with `python -m lessons_lib.train`."
    assert err == f"python -m lessons_lib.{name}: error: No checkpoint at {tmp_path / 'MISSING'}. {hint}\n"


def test_a_random_bytes_checkpoint_is_one_line_in_a_real_process(tmp_path):
    """The command line as a user runs it: one line on stderr, no traceback, status 1."""
    (tmp_path / "ckpt.pt").write_bytes(os.urandom(4096))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "lessons_lib.sample", "--checkpoint", str(tmp_path / "ckpt.pt")]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.splitlines() == [
        f"python -m lessons_lib.sample: error: {tmp_path / 'ckpt.pt'} is not a checkpoint (torch.save writes "
        "a zip archive, this is not one): truncated, corrupt, or another kind of file?"
    ]
