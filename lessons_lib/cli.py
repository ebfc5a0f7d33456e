"""What the command lines share: their parser, how they report errors, the device flag, where the
model comes from (a checkpoint or a pretrained GPT-2), and number flags checked against a range."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import TypeVar

from .checkpoint import load_model
from .device import DEVICE_ENV, get_device
from .hf import OPENAI_SIZES, load_hf_gpt2
from .model import GPT
from .utils import POSITIVE, Bounds, UserError

R = TypeVar("R")
INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" to an option's help, unless it has none (None) or says it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or "(default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def _prog(command: str) -> str:
    return f"python -m lessons_lib.{command}"


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A flag error in one line (argparse's exit status 2), not the whole usage text."""
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (--help lists the options)\n")


def parser(command: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``python -m lessons_lib.<command>``: every option shows its default, and a bad
    flag is reported in one line."""
    return _Parser(
        prog=_prog(command),
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


def command(name: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorates the ``main(argv)`` of ``python -m lessons_lib.<name>``: a ``UserError`` or an
    ``OSError`` (a file or folder that cannot be used, a full disk) is printed as one line on stderr
    and exits with status 1; Ctrl-C exits with status 130 and its message, if any (the trainer's
    says how to resume). Any other exception is a bug and keeps its traceback."""

    def decorate(main: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> R:
            try:
                return main(argv)
            except KeyboardInterrupt as exc:
                print(f"{_prog(name)}: {_one_line(str(exc)) or 'interrupted'}", file=sys.stderr)
                raise SystemExit(INTERRUPTED) from None
            except (UserError, OSError) as exc:
                print(f"{_prog(name)}: error: {_one_line(str(exc)) or type(exc).__name__}", file=sys.stderr)
                raise SystemExit(1) from None

        return run

    return decorate


def number(bounds: Bounds) -> Callable[[str], int | float]:
    """An argparse ``type``: a number within ``bounds``, or a usage error that names the range."""

    def parse(text: str) -> int | float:
        try:
            return bounds.check("the value", int(text) if bounds.integer else float(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {bounds}") from None

    return parse


positive = number(POSITIVE)
