"""Supervised fine-tuning on conversations: teach a pretrained GPT to answer.

The data is conversational JSONL: one conversation per line, a JSON object whose ``messages``
list holds the turns in order, each ``{"role": ..., "content": ...}`` with role ``"system"``,
``"user"`` or ``"assistant"`` and a non-empty string content. Every conversation needs at least
one assistant turn, since only those are learned. Blank lines are skipped. Example line::

    {"messages": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}]}

GPT-2's vocabulary has no chat tokens, so the template marks turns with plain text that the
tokenizer encodes like any other::

    <|system|>\\n{content}\\n<|user|>\\n{content}\\n<|assistant|>\\n{content}<|endoftext|>

Each assistant turn ends with ``<|endoftext|>`` (id 50256) so the model learns when to stop;
the next turn's marker follows it directly. The loss covers the assistant's tokens and that
end token only: the model should learn to answer, not to imitate its users.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from tqdm import tqdm

from .assets import jsonl_records
from .checkpoint import save_checkpoint
from .cli import add_model_source, command, model_from_args, number, parser, positive
from .generation import generate
from .loop import train_step
from .model import GPT
from .optim import configure_optimizer, cosine_lr
from .tokenizer import EOT_TOKEN, get_encoding
from .utils import NON_NEGATIVE, NON_NEGATIVE_NUMBER, RATE, SEED, Bounds, UserError, mode, positive_int

ROLES = ("system", "user", "assistant")
IGNORE_INDEX = -100  # F.cross_entropy skips targets equal to this

Conversation = list[dict[str, str]]


def _marker(role: str) -> str:
    return f"<|{role}|>\n"


def check_messages(messages, require_assistant: bool = True) -> Conversation:
    """``messages`` if it is a valid conversation, else a ``UserError`` saying what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise UserError(f"'messages' must be a non-empty list of turns, got {messages!r:.80}.")
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise UserError(f"message {i} must be an object with 'role' and 'content', got {m!r:.80}.")
        if m["role"] not in ROLES:
            raise UserError(f"message {i} has unknown role {m['role']!r}; use one of {', '.join(ROLES)}.")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise UserError(f"message {i} ({m['role']}) has empty content; give it some text.")
    if require_assistant and not any(m["role"] == "assistant" for m in messages):
        raise UserError("no assistant message: the conversation has nothing to learn from.")
    return messages


def load_conversations(path: str | os.PathLike) -> list[Conversation]:
    """Read a conversational JSONL file (format in the module docstring), checking every line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No conversations file at {path}; give a JSONL file, a conversation a line.")
    conversations = []
    for n, obj in jsonl_records(path):
        if not isinstance(obj, dict) or "messages" not in obj:
            raise UserError(f"{path}, line {n}: no 'messages' key; expected {{\"messages\": [...]}}.")
        try:
            conversations.append(check_messages(obj["messages"]))
        except ValueError as exc:
            raise UserError(f"{path}, line {n}: {exc}") from exc
    if not conversations:
        raise UserError(f"{path} holds no conversations.")
    return conversations


def render_chat(messages: Conversation) -> str:
    """The conversation as the text the model sees (what ``encode_conversation`` tokenizes)."""
    parts = []
    for m in messages:
        end = "<|endoftext|>" if m["role"] == "assistant" else "\n"
        parts.append(_marker(m["role"]) + m["content"] + end)
    return "".join(parts)


def encode_conversation(messages: Conversation) -> tuple[list[int], list[int]]:
    """Token ids of the templated conversation and a mask that is 1 on the assistant's tokens.

    Each piece is encoded on its own, so an answer's tokens never merge with a marker, and
    a prompt ending in ``<|assistant|>\\n`` tokenizes exactly as in training. Contents are
    encoded as plain text: a literal "<|endoftext|>" typed by a user is not the end token.
    """
    enc = get_encoding()
    ids, mask = [], []
    for m in check_messages(messages, require_assistant=False):
        if m["role"] == "assistant":
            head = enc.encode(_marker("assistant"))
            body = enc.encode(m["content"], disallowed_special=()) + [EOT_TOKEN]
        else:
            head = enc.encode(_marker(m["role"]) + m["content"] + "\n", disallowed_special=())
            body = []
        ids += head + body
        mask += [0] * len(head) + [1] * len(body)
    return ids, mask


def conversation_example(messages: Conversation, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (1-D, same length, at most ``block_size``) of one conversation.

    Targets are the next token where that token is the assistant's, -100 elsewhere. A
    conversation longer than ``block_size + 1`` tokens keeps its beginning: later turns are
    cut off, possibly mid-answer. One whose first answer starts past the cut is refused.
    """
    ids, mask = encode_conversation(messages)
    ids, mask = ids[: block_size + 1], mask[: block_size + 1]
    if not any(mask[1:]):
        raise UserError(
            f"The first assistant answer starts after token {block_size + 1}, past the model's "
            f"context (block_size={block_size}); shorten the earlier turns or drop the conversation."
        )
    x = torch.tensor(ids[:-1], dtype=torch.long)
    targets = [t if keep else IGNORE_INDEX for t, keep in zip(ids[1:], mask[1:], strict=True)]
    y = torch.tensor(targets, dtype=torch.long)
    return x, y


def pad_batch(examples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack examples into ``(B, T)`` with T the longest: inputs padded with EOT, targets with -100.

    Padding goes on the right, where causal attention keeps it from touching real positions.
    """
    T = max(len(x) for x, _ in examples)
    xb = torch.full((len(examples), T), EOT_TOKEN, dtype=torch.long)
    yb = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        xb[i, : len(x)], yb[i, : len(y)] = x, y
    return xb, yb


class ChatBatches:
    """Endless ``(x, y)`` batches of conversations, reshuffled every epoch from ``seed``."""

    def __init__(self, conversations: list[Conversation], batch_size: int, block_size: int, seed: int = 0):
        positive_int("batch_size", batch_size)
        examples = []
        for i, messages in enumerate(conversations):
            try:
                examples.append(conversation_example(messages, block_size))
            except ValueError as exc:
                raise UserError(f"conversation {i}: {exc}") from exc
        if not examples:
            raise UserError("No conversations to fine-tune on.")
        self.examples = examples
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        picked = []
        while len(picked) < self.batch_size:
            if not self.order:
                self.order = torch.randperm(len(self.examples), generator=self.generator).tolist()
            picked.append(self.examples[self.order.pop()])
        return pad_batch(picked)


def finetune(
    model: GPT,
    conversations: list[Conversation],
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-4,
    min_lr: float | None = None,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list]:
    """Train ``model`` in place on the assistant turns of ``conversations``; return the history.

    Each step is ``loop.train_step`` on a ``ChatBatches`` batch, whose targets are -100 outside
    the answers. AdamW at ``lr``; with ``min_lr`` set, a warmup + cosine schedule down to it
    instead of a constant rate. A small rate (1e-5 .. 1e-4) adapts a pretrained model without
    wiping out what pretraining taught it. ``grad_clip=0`` disables clipping. The model's
    train/eval mode is restored afterwards.
    """
    positive_int("steps", steps)
    RATE.check("lr", lr)
    if min_lr is not None:
        Bounds(low=0, high=lr).check("min_lr (at most lr)", min_lr)
    NON_NEGATIVE.check("warmup_steps", warmup_steps)
    NON_NEGATIVE_NUMBER.check("weight_decay", weight_decay)
    NON_NEGATIVE_NUMBER.check("grad_clip", grad_clip)
    SEED.check("seed", seed)
    batches = ChatBatches(conversations, batch_size, model.config.block_size, seed)
    optimizer, _ = configure_optimizer(model, lr=lr, weight_decay=weight_decay)
    history: dict[str, list] = {"step": [], "loss": [], "lr": []}
    bar = tqdm(range(steps), desc="finetune", disable=not progress, mininterval=1.0)
    with mode(model, training=True):
        for step in bar:
            step_lr = lr if min_lr is None else cosine_lr(step, lr, min_lr, warmup_steps, steps)
            result = train_step(model, optimizer, batches, step, lr=step_lr, grad_clip=grad_clip)
            history["step"].append(step)
            history["loss"].append(result.loss)
            history["lr"].append(step_lr)
            bar.set_postfix(loss=f"{result.loss:.3f}", refresh=False)
    return history


def chat(
    model: GPT,
    messages: Conversation,
    max_new_tokens: int = 128,
    seed: int = 0,
    temperature: float = 0.7,
    top_k: int | None = 50,
) -> str:
    """The model's next assistant turn after ``messages``, ending where it emits <|endoftext|>.

    ``generate`` with ``<|endoftext|>`` as its stop token; ``temperature=0`` is greedy. Once the
    text outgrows the context, earlier tokens drop off.
    """
    enc = get_encoding()
    device = next(model.parameters()).device
    ids = encode_conversation(messages)[0] + enc.encode(_marker("assistant"))
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    generator = torch.Generator().manual_seed(seed)  # sampling draws on the CPU: the same on every device
    out = generate(model, idx, max_new_tokens, temperature, top_k, generator=generator, stop_token=EOT_TOKEN)
    reply = out[0, len(ids) :].tolist()
    return enc.decode(reply[: reply.index(EOT_TOKEN)] if EOT_TOKEN in reply else reply)


def _check_out_dir(out: Path, source: str | None) -> None:
    """Refuse an output folder that holds a checkpoint (or the one being fine-tuned)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out-dir {out} is a file, not a folder; choose another --out-dir.")
    source_dir = source is not None and Path(source).resolve().parent == out.resolve()
    if source_dir or (out / "ckpt.pt").exists():
        what = f"the checkpoint being fine-tuned, {source}" if source_dir else f"a checkpoint, {out}/ckpt.pt"
        raise UserError(f"--out-dir {out} holds {what}; fine-tuning writes there. Choose another --out-dir.")


@command("finetune")
def main(argv: list[str] | None = None) -> None:
    p = parser("finetune", "Fine-tune a GPT on conversations (JSONL), then chat once.")
    p.add_argument("--data", required=True, help='JSONL, one {"messages": [...]} conversation per line')
    add_model_source(p)
    p.add_argument("--out-dir", required=True, help="where ckpt.pt is written; a folder that holds a "
                   "checkpoint (such as the one being fine-tuned) is refused")  # fmt: skip
    p.add_argument("--steps", type=positive, default=200, help="optimizer steps")
    p.add_argument("--batch-size", type=positive, default=8, help="conversations per step")
    p.add_argument("--lr", type=number(RATE), default=5e-5,
                   help="AdamW learning rate (the peak, with --min-lr)")  # fmt: skip
    p.add_argument("--min-lr", type=number(NON_NEGATIVE_NUMBER), default=None,
                   help="cosine decay to this, at most --lr (default: constant lr)")  # fmt: skip
    p.add_argument("--warmup-steps", type=number(NON_NEGATIVE), default=0,
                   help="linear warmup steps (with --min-lr)")  # fmt: skip
    p.add_argument("--weight-decay", type=number(NON_NEGATIVE_NUMBER), default=0.0,
                   help="AdamW weight decay of the 2-D tensors")  # fmt: skip
    p.add_argument("--grad-clip", type=number(NON_NEGATIVE_NUMBER), default=1.0,
                   help="clip the gradient norm to this; 0 disables")  # fmt: skip
    p.add_argument("--max-tokens", type=positive, default=128, help="length limit of the sample reply")
    p.add_argument("--seed", type=number(SEED), default=0,
                   help="seed of the batch order and of the sample reply")  # fmt: skip
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar"
    )
    args = p.parse_args(argv)
    _check_out_dir(Path(args.out_dir), args.checkpoint)
    conversations = load_conversations(args.data)
    model = model_from_args(args)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)  # a folder that cannot be written fails now
    history = finetune(
        model, conversations, args.steps, args.batch_size, args.lr, args.min_lr, args.warmup_steps,
        args.weight_decay, args.grad_clip, args.seed, args.progress,
    )  # fmt: skip
    path = save_checkpoint(Path(args.out_dir) / "ckpt.pt", model, finetune=vars(args), history=history)
    print(f"fine-tuned {len(conversations)} conversations for {args.steps} steps | loss "
          f"{history['loss'][0]:.3f} -> {history['loss'][-1]:.3f} | wrote {path}")  # fmt: skip
    prompt = conversations[0][: next(i for i, m in enumerate(conversations[0]) if m["role"] == "assistant")]
    if prompt:
        print(f"{prompt[-1]['role']}:", prompt[-1]["content"])
        print("assistant:", chat(model, prompt, args.max_tokens, seed=args.seed))


if __name__ == "__main__":
    main()
