"""The chunked output layer + loss equals the plain one: loss and both gradients."""

from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lessons_lib import GPT, GPTConfig
from lessons_lib.chunked_loss import linear_cross_entropy

N, C, V = 70, 16, 1000  # V not a multiple of the chunk size: the last chunk is partial


def inputs(dtype=torch.float32, ignored=7, device="cpu"):
    """Drawn on the CPU, then moved: the same numbers on every device."""
    torch.manual_seed(0)
    h = torch.randn(N, C, dtype=dtype)
    w = 0.5 * torch.randn(V, C, dtype=dtype)
    targets = torch.randint(0, V, (N,))
    targets[torch.randperm(N)[:ignored]] = -100  # fine-tuning's masked positions
    return h.to(device).requires_grad_(), w.to(device).requires_grad_(), targets.to(device)


def loss_and_grads(fn, h, w, targets, bf16=False):
    h.grad = w.grad = None
    with torch.autocast(h.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = fn(h, w, targets)
    (2.0 * loss).backward()  # a non-unit incoming gradient must scale both gradients
    return loss.detach(), h.grad.clone(), w.grad.clone()


def plain(h, w, targets):
    logits = h @ w.T
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), targets)


def chunked(chunk_size):
    return lambda h, w, targets: linear_cross_entropy(h, w, targets, chunk_size=chunk_size)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("chunk_size", [96, 1000, 4096])
def test_equals_the_plain_path(dtype, tol, chunk_size, device):
    h, w, targets = inputs(dtype, device=device)
    ours = loss_and_grads(chunked(chunk_size), h, w, targets)
    ref = loss_and_grads(plain, h, w, targets)
    assert ours[0].dtype == ref[0].dtype == dtype
    for a, b in zip(ours, ref, strict=True):  # tol relative to the size: the loss is ~9, a float32 ulp 1e-6
        assert (a - b).abs().max().item() < tol * max(1.0, b.abs().max().item())


def test_ignored_targets_count_neither_in_the_loss_nor_in_the_mean():
    h, w, targets = inputs(ignored=0)
    full = linear_cross_entropy(h, w, targets, chunk_size=96)
    targets[:10] = -100
    kept = linear_cross_entropy(h[10:], w, targets[10:], chunk_size=96)
    assert linear_cross_entropy(h, w, targets, chunk_size=96).item() == pytest.approx(kept.item(), abs=1e-6)
    assert abs(full.item() - kept.item()) > 1e-3  # the rows did matter before they were masked


def test_an_all_ignored_batch_gives_nan_as_the_plain_path_does(device):
    h, w, targets = inputs(device=device)
    targets.fill_(-100)
    assert plain(h, w, targets).isnan() and linear_cross_entropy(h, w, targets, chunk_size=96).isnan()


def test_bf16_autocast_is_as_close_to_float64_as_the_plain_path(device):
    """Under bf16 autocast both paths round the matmuls' inputs and outputs to bf16 (8 bits of
    mantissa); the chunked one accumulates in float32. Stated tolerance: its error against the
    float64 result is at most 2x the plain path's, and under 1e-2 relative for every output."""
    h, w, targets = inputs(torch.float64, device=device)
    exact = loss_and_grads(plain, h, w, targets)
    h32, w32 = h.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    ours = loss_and_grads(chunked(96), h32, w32, targets, bf16=True)
    theirs = loss_and_grads(plain, h32, w32, targets, bf16=True)
    assert ours[0].dtype == torch.float32
    for o, t, e in zip(ours, theirs, exact, strict=True):
        scale = e.abs().max().item()
        err_ours, err_plain = (o.double() - e).abs().max().item(), (t.double() - e).abs().max().item()
        assert err_ours <= 2 * err_plain + 1e-6 * scale
        assert err_ours < 1e-2 * scale


@pytest.mark.parametrize("how, matmuls", [("training", 3), ("no_grad", 1), ("frozen inputs", 1)])
def test_without_gradients_only_the_loss_is_computed(how, matmuls, device):
    """Evaluation needs the loss only: pass 2 (the recompute and both gradient matmuls) is skipped,
    so the FLOPs are those of one (rows, C) x (C, V) product instead of three. On the CPU the rows
    are the counted ones only (the ignored ones are dropped first); elsewhere all N."""
    h, w, targets = inputs(device=device)
    if how == "frozen inputs":
        h, w = h.detach(), w.detach()
    with FlopCounterMode(display=False) as flops, torch.no_grad() if how == "no_grad" else nullcontext():
        loss = linear_cross_entropy(h, w, targets, chunk_size=96)
    rows = (targets != -100).sum().item() if device.type == "cpu" else N
    assert rows < N
    assert flops.get_total_flops() == matmuls * 2 * rows * C * V
    assert loss.requires_grad == (how == "training")
    assert (loss - plain(h, w, targets)).abs().item() < 1e-6


def test_gradients_accumulate_over_forwards_and_one_backward_per_forward_is_enforced():
    """Gradient accumulation (two forwards, two backwards) sums as with the plain path; the
    gradients made in a forward serve one backward, and a second one says so instead of
    returning gradients scaled twice."""
    h, w, targets = inputs()

    def accumulated_weight_grad(fn):
        w.grad = None
        for half in (slice(0, 35), slice(35, N)):
            (0.5 * fn(h[half], w, targets[half])).backward()
        return w.grad

    ours, ref = accumulated_weight_grad(chunked(96)), accumulated_weight_grad(plain)
    assert (ours - ref).abs().max().item() < 1e-6
    loss = linear_cross_entropy(h, w, targets, chunk_size=96)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="run a new forward before each backward"):
        loss.backward()


def test_bad_shapes_are_refused_with_the_expected_shapes():
    h, w, targets = inputs()
    with pytest.raises(ValueError, match=r"targets must be \(N,\) = \(70,\)"):
        linear_cross_entropy(h, w, targets[:5])
    with pytest.raises(ValueError, match="weight"):
        linear_cross_entropy(h, w[:, :3], targets)
    with pytest.raises(ValueError, match="chunk_size"):
        linear_cross_entropy(h, w, targets, chunk_size=0)


@pytest.mark.parametrize("vocab_multiple", [1, 64])
def test_model_return_logits_false_gives_the_same_loss_and_gradients(vocab_multiple, device):
    config = GPTConfig(
        block_size=16, vocab_size=1000, n_layer=2, n_head=2, n_embd=32, vocab_multiple=vocab_multiple
    )
    torch.manual_seed(0)
    model = GPT(config).double().to(device)
    idx = torch.randint(0, 1000, (3, 16))
    targets = torch.randint(0, 1000, (3, 16))
    targets[0, :5] = -100
    idx, targets = idx.to(device), targets.to(device)
    results = []
    for return_logits in (True, False):
        model.zero_grad(set_to_none=True)
        logits, loss = model(idx, targets, return_logits=return_logits)
        loss.backward()
        results.append((logits, loss.item(), [p.grad.clone() for p in model.parameters()]))
    (logits, loss, grads), (no_logits, fused_loss, fused_grads) = results
    assert logits.shape == (3, 16, 1000) and no_logits is None
    assert fused_loss == pytest.approx(loss, abs=1e-12)
    assert max((a - b).abs().max().item() for a, b in zip(grads, fused_grads, strict=True)) < 1e-12
