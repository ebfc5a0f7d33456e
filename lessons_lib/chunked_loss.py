"""The output layer and its cross-entropy without the (N, V) logits, in vocabulary chunks.

GPT-2's last step turns each hidden state (C numbers) into V = 50,257 logits with the tied token
embedding, then takes the cross-entropy. Done plainly, that materialises the (N, V) logits, a
float32 copy, the log-softmax and its gradient: at the main job's batch (N = 8 x 128 tokens)
that is several 200 MB tensors and more than half of a training step's time, spent
moving memory rather than multiplying; at 124M, B16 x T1024, it is gigabytes.

``linear_cross_entropy`` walks the vocabulary in chunks of ``chunk_size`` entries instead, twice.
Pass 1 computes each chunk's logits (N, chunk) and keeps only a running max and sum of exponentials
per row: the log-sum-exp. Pass 2 recomputes each chunk's logits, turns them *in place* into the
loss's gradient (softmax minus one-hot, divided by the number of counted targets) and multiplies
that into the gradients of the hidden states and of the weight. Memory holds one chunk of logits,
never the whole (N, V) matrix; the price is one extra matmul (the recompute). Vocabulary chunks
rather than row chunks: a row chunk would re-read the whole (V, C) weight and its gradient each
time. The gradients are computed in the forward pass (the loss is the last operation before
``backward`` in a training step) and ``backward`` only scales them by the incoming gradient.
Where no gradient can be asked for (``torch.no_grad()``, as in evaluation, or inputs that do not
require grad) pass 2 is skipped: the loss alone costs one matmul per chunk, not three.

Under bf16 autocast the matmuls run in bf16 like the plain path's; the log-sum-exp, the softmax
and every accumulation (loss, weight gradient) stay in float32. Targets equal to ``ignore_index``
(-100, fine-tuning's masked positions) count neither in the loss nor in the mean, as in
``F.cross_entropy``. On the CPU their rows are dropped before the output layer: three quarters of
lesson 11's fine-tuning batches, whose steps then take half the time. On a GPU, counting them would
be a host sync; there they go through and get a zero gradient.
"""

from __future__ import annotations

import torch

from .utils import positive_int

# Vocabulary entries per chunk, chosen by measurement on a 2-core AVX-512 CPU (N = 1024, C = 128,
# one thread: 863 ms fp32 / 547 ms bf16 for the loss forward + backward, vs 946 / 540 at 2048 and
# 967 / 563 at 8192; the plain path took 1,363 / 989 ms).
CHUNK_SIZE = 4096


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ weight.T`` against ``targets``; gradients made in forward."""

    @staticmethod
    def forward(ctx, h, weight, targets, chunk_size, ignore_index, compute_dtype, with_grads):
        acc = torch.promote_types(h.dtype, torch.float32)  # float32, or float64 for fp64 models
        low = compute_dtype != acc  # bf16 matmuls; softmax and sums in float32
        (N, C), V = h.shape, weight.size(0)
        kw = dict(device=h.device, dtype=acc)
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(compute_dtype), weight.to(compute_dtype)
            counted = targets != ignore_index
            # 1 / (number of counted targets) for counted rows, 0 for ignored ones; no host sync
            scale = (counted.to(acc) / counted.sum()).unsqueeze(1)  # (N, 1)
            targets = targets.masked_fill(~counted, 0).unsqueeze(1)  # (N, 1)
            # one chunk's buffers, reused by every chunk: no (N, V) tensor is ever allocated
            buf = torch.empty(N * min(chunk_size, V), **kw)
            buf_low = torch.empty_like(buf, dtype=compute_dtype) if low else None

            def chunk(start: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                """Logits (N, n) of vocabulary entries start .. start + n, in ``acc``; where each
                row's target falls in the chunk (clamped) and whether it does."""
                w = wc[start : start + chunk_size]
                n = w.size(0)
                out = buf[: N * n].view(N, n)
                if low:
                    out.copy_(torch.mm(hc, w.T, out=buf_low[: N * n].view(N, n)))
                else:
                    torch.mm(hc, w.T, out=out)
                local = targets - start
                hit = (local >= 0) & (local < n)
                return out, local.clamp_(0, n - 1), hit.to(acc)

            # pass 1: log-sum-exp over the vocabulary, chunk by chunk (a running max and sum)
            top = torch.full((N, 1), float("-inf"), **kw)
            sum_exp = torch.zeros((N, 1), **kw)
            picked = torch.zeros((N, 1), **kw)  # the targets' logits
            for start in range(0, V, chunk_size):
                logits, local, hit = chunk(start)
                picked += logits.gather(1, local) * hit
                new_top = torch.maximum(top, logits.amax(dim=1, keepdim=True))
                sum_exp.mul_((top - new_top).exp_()).add_(
                    logits.sub_(new_top).exp_().sum(dim=1, keepdim=True)
                )
                top = new_top
            lse = top + sum_exp.log_()  # (N, 1)
            loss = ((lse - picked) * scale).sum()
            if not with_grads:  # no_grad or frozen inputs (evaluation): the loss is all
                return loss

            # pass 2: recompute each chunk's logits, turn them in place into d loss / d logits =
            # (softmax - one_hot) * scale, and multiply that into both gradients. softmax * scale
            # is exp(logits - shift) with shift = lse - log(scale): one subtraction, one exp
            # (an ignored row's shift is +inf: its gradient is exactly 0).
            shift = lse - scale.log()
            grad_h = torch.zeros((N, C), **kw)
            grad_w = torch.empty((V, C), dtype=weight.dtype, device=weight.device)
            for start in range(0, V, chunk_size):
                logits, local, hit = chunk(start)
                grad = logits.sub_(shift).exp_().scatter_add_(1, local, -scale * hit)
                w = wc[start : start + chunk_size]
                if low:
                    grad = buf_low[: grad.numel()].view_as(grad).copy_(grad)
                    grad_w[start : start + w.size(0)] = grad.T @ hc
                    grad_h += grad @ w
                else:
                    if acc == torch.float64:  # MKL's fp64 GEMM: 2x faster with h.T on the left
                        grad_w[start : start + w.size(0)] = torch.mm(hc.T, grad).T
                    else:
                        torch.mm(grad.T, hc, out=grad_w[start : start + w.size(0)])
                    grad_h.addmm_(grad, w)
        # kept on ctx, not saved for backward: backward scales them in place and hands them on, so
        # the (V, C) weight gradient exists once (autograd takes it as weight.grad without a copy)
        ctx.grads = grad_h.to(h.dtype), grad_w
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grads, ctx.grads = getattr(ctx, "grads", None), None
        if grads is None:
            raise RuntimeError(
                "linear_cross_entropy computes its gradients in the forward pass and hands them to one "
                "backward: run a new forward before each backward (retain_graph=True is not supported)."
            )
        grad_h, grad_w = grads
        del grads
        return grad_h.mul_(grad_loss), grad_w.mul_(grad_loss), None, None, None, None, None


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int = CHUNK_SIZE,
    ignore_index: int = -100,
) -> torch.Tensor:
    """``F.cross_entropy(h @ weight.T, targets, ignore_index=...)`` without the (N, V) logits.

    ``h`` (N, C) hidden states, ``weight`` (V, C) the output layer (GPT-2's tied embedding),
    ``targets`` (N,) token ids or ``ignore_index``. Under autocast the matmuls run in the
    autocast dtype and the loss is float32, as with an upcast before ``F.cross_entropy``.
    """
    if h.dim() != 2 or weight.dim() != 2 or h.size(1) != weight.size(1):
        raise ValueError(
            f"h must be (N, C) and weight (V, C), got {tuple(h.shape)} and {tuple(weight.shape)}."
        )
    if targets.shape != h.shape[:1]:
        raise ValueError(f"targets must be (N,) = {tuple(h.shape[:1])}, got {tuple(targets.shape)}.")
    positive_int("chunk_size", chunk_size)
    device = h.device.type
    if device == "cpu":  # drop the ignored rows (most of a fine-tuning batch); a GPU would sync here
        keep = (targets != ignore_index).nonzero().squeeze(1)
        if 0 < keep.numel() < targets.numel():
            h, targets = h.index_select(0, keep), targets.index_select(0, keep)
    compute_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
    with_grads = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return LinearCrossEntropy.apply(h, weight, targets, chunk_size, ignore_index, compute_dtype, with_grads)
