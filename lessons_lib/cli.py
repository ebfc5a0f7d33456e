"""What the command lines share: their parser, the device flag, where the model comes from (a
checkpoint or a pretrained GPT-2), and integer flags that must be positive."""

from __future__ import annotations

import argparse

from .checkpoint import load_model
from .device import DEVICE_ENV, get_device
from .hf import OPENAI_SIZES, load_hf_gpt2
from .model import GPT
from .utils import positive_int


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" to an option's help, unless it has none (None) or says it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or "(default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def parser(command: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``python -m lessons_lib.<command>``: every option shows its default."""
    return argparse.ArgumentParser(
        prog=f"python -m lessons_lib.{command}",
        description=description,
        epilog=epilog,
        formatter_class=_HelpFormatter,
    )


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", help=f"cpu, cuda, cuda:1, mps (default: ${DEVICE_ENV}, else the best available)"
    )


def add_model_source(p: argparse.ArgumentParser) -> None:
    """``--checkpoint`` or ``--pretrained`` (exactly one), and ``--device``."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--checkpoint", metavar="PATH", help="a checkpoint written by lessons_lib (train or finetune)"
    )
    src.add_argument(
        "--pretrained",
        metavar="NAME",
        help=f"{', '.join(OPENAI_SIZES)} (downloaded once from the Hugging Face hub), or a local "
        "Hugging Face GPT-2 folder",
    )
    add_device(p)


def model_from_args(args: argparse.Namespace) -> GPT:
    """The model ``add_model_source``'s flags name, on the device they name."""
    device = get_device(args.device)
    if args.checkpoint:
        return load_model(args.checkpoint, device)
    return load_hf_gpt2(args.pretrained).to(device)


def positive(text: str) -> int:
    """An argparse ``type``: a positive integer, or a usage error that says so."""
    try:
        return positive_int("the value", int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from exc
