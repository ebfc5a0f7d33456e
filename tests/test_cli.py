"""What the command lines share, and that every option of every command line explains itself."""

import argparse

import pytest
import torch

from lessons_lib import GPT, GPTConfig, finetune, fineweb, hellaswag, sample, save_checkpoint, train
from lessons_lib.cli import add_model_source, model_from_args, positive

COMMANDS = {
    "train": train,
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
