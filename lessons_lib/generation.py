"""Sampling text from a GPT: temperature, top-k, top-p, and a KV cache (lesson 06)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import GPT, KVCache
from .precision import upcast
from .utils import NON_NEGATIVE, NON_NEGATIVE_NUMBER, Bounds, UserError, mode

TOP_P = Bounds(low=0, high=1, open_low=True)


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = 50,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row of ``logits`` (B, V) -> (B, 1).

    ``temperature=0`` is greedy. Top-k keeps the k most likely tokens (``0`` or ``None``: all),
    top-p the smallest set whose probability reaches p (``None``: off); both cut off the long tail
    of unlikely tokens that makes plain sampling wander off.

    The draw is made on the CPU, from ``generator`` (a CPU ``torch.Generator``; ``None``: torch's
    global one), whatever device the logits are on: a CUDA or MPS generator gives another stream
    for the same seed, so a seeded sample would change with the device.
    """
    if generator is not None and generator.device.type != "cpu":
        raise UserError(
            f"The generator is on {generator.device}; sampling draws on the CPU so that a seed gives the "
            "same tokens on every device: pass torch.Generator().manual_seed(seed)."
        )
    NON_NEGATIVE_NUMBER.check("temperature", temperature)
    if top_k is not None:
        NON_NEGATIVE.check("top_k (0 or None: every token)", top_k)
    if top_p is not None:
        TOP_P.check("top_p", top_p)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = upcast(logits) / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cum - sorted_logits.softmax(dim=-1) >= top_p  # mass before this token already >= p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = F.softmax(logits, dim=-1).cpu()  # (B, V): one small copy per new token
    return torch.multinomial(probs, num_samples=1, generator=generator).to(logits.device)


@torch.no_grad()
def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = 50,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_kv_cache: bool = True,
    stop_token: int | None = None,
) -> torch.Tensor:
    """Extend ``idx`` (B, T) by up to ``max_new_tokens`` sampled tokens, in eval mode.

    With the KV cache, each step feeds only the newest token; without it, every step re-runs
    the whole (cropped) context. Both give the same tokens. Once the text outgrows the context
    window, the cache can no longer be reused (positions shift), so it falls back to recompute.

    ``stop_token`` (e.g. ``<|endoftext|>``): a row that samples it is finished, and every later
    position of that row repeats it; decoding ends as soon as every row is finished.
    """
    block_size = model.config.block_size
    param = next(model.parameters())
    cache = (
        KVCache(model.config, idx.size(0), block_size, param.device, param.dtype) if use_kv_cache else None
    )
    done = torch.zeros(idx.size(0), 1, dtype=torch.bool, device=idx.device)
    with mode(model, training=False):
        for _ in range(max_new_tokens):
            if cache is not None and idx.size(1) <= block_size:
                logits, _ = model(idx[:, cache.pos :], kv_cache=cache)
            else:
                logits, _ = model(idx[:, -block_size:])
            next_id = sample_next_token(logits[:, -1, :], temperature, top_k, top_p, generator).to(idx.device)
            if stop_token is not None:
                next_id = next_id.masked_fill(done, stop_token)
                done |= next_id == stop_token
            idx = torch.cat((idx, next_id), dim=1)
            if stop_token is not None and bool(done.all()):
                break
    return idx


def generate_text(
    model: GPT,
    prompt: str,
    num_sequences: int = 4,
    max_new_tokens: int = 32,
    seed: int = 42,
    **sampling,
) -> list[str]:
    """Decode ``num_sequences`` continuations of ``prompt``; the same seed gives the same text."""
    from .tokenizer import get_encoding

    enc = get_encoding()
    device = next(model.parameters()).device
    ids = enc.encode(prompt, allowed_special={"<|endoftext|>"})
    if not ids:
        raise UserError("The prompt is empty; give at least one character (e.g. '\\n').")
    idx = torch.tensor([ids] * num_sequences, dtype=torch.long, device=device)
    generator = torch.Generator().manual_seed(seed)  # a CPU generator: the same text on every device
    out = generate(model, idx, max_new_tokens, generator=generator, **sampling)
    return [enc.decode(row.tolist()) for row in out]
