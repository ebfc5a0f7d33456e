"""A head start for the token embedding: vectors from how the training text's tokens co-occur.

GPT-2 starts every token vector as noise (normal, std 0.02) and learns them all by gradient
descent. With a long run that costs nothing. On a few minutes of a CPU it costs most of the run:
the tied (V, C) embedding is 90% of a small model's parameters, a row learns what its token means
only from the steps where that token occurs (elsewhere the softmax just pushes it down), and two
passes over 300k tokens show a token seen 20 times just 40 times.

Counting is cheaper than learning. Tokens that appear next to the same neighbours play the same
part (" thee" and " him", " three" and " two": lesson 04 prints such neighbours), and the positive
pointwise mutual information of adjacent pairs,

    PPMI(a, b) = max(0, log p(a, b) / (p(a) p(b))),

factorised by a truncated SVD, ``U sqrt(S)``, gives vectors whose dot products reflect exactly that
(word2vec's skip-gram implicitly factorises a shifted PMI matrix: Levy & Goldberg, 2014). Pairs
are counted in both orders because the tied matrix serves twice: as the input embedding and as
the output layer that scores the next token.

``cooccurrence_embedding`` computes the vectors of the ``max_types`` most frequent token types seen
at least ``min_count`` times, from a sparse K x K matrix (only pairs that occur can have a positive
PMI); every other row keeps GPT-2's init. It is an initialisation only: the model, its loss and its
training are unchanged. ``RunConfig.embedding_init = "cooccurrence"`` (the main job's recipe) applies it.
"""

from __future__ import annotations

import torch

from .utils import UserError, positive_int


def cooccurrence_embedding(
    tokens: torch.Tensor,
    vocab_size: int,
    dim: int,
    min_count: int = 3,
    max_types: int = 8192,
    std: float = 0.05,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``(K,)`` and their vectors ``(K, dim)`` from the PPMI of adjacent tokens in
    ``tokens`` (a 1-D stream of ids), scaled to standard deviation ``std``.

    ``seed`` seeds the randomised SVD (``torch.svd_lowrank``) without touching the global RNG.
    """
    positive_int("dim", dim)
    positive_int("min_count", min_count)
    positive_int("max_types", max_types)
    tokens = torch.as_tensor(tokens, dtype=torch.long).flatten()
    counts = torch.bincount(tokens, minlength=vocab_size)
    order = counts.argsort(descending=True, stable=True)[:max_types]
    ids = order[counts[order] >= min_count].sort().values
    K = ids.numel()
    if K < 2:
        raise UserError(
            f"Only {K} token type(s) occur {min_count}+ times in the {tokens.numel():,} training tokens: "
            "too little text for a co-occurrence embedding. Use embedding_init='normal' or more text."
        )
    index = torch.full((vocab_size,), -1, dtype=torch.long)
    index[ids] = torch.arange(K)
    a, b = index[tokens[:-1]], index[tokens[1:]]
    kept = (a >= 0) & (b >= 0)
    a, b = a[kept], b[kept]
    # both orders: the tied matrix is the input and the output layer. Only pairs that occur can
    # have a positive PMI, so the matrix is sparse (0.4% of Tiny Shakespeare's 5,991^2 entries).
    # float64 throughout: the SVD's result then does not depend on the thread count (float32's
    # rounding differences turn into different singular vectors, and DDP's ranks must agree)
    pair, n = torch.cat([a * K + b, b * K + a]).unique(return_counts=True)
    row, col, n = pair // K, pair % K, n.double()
    p = torch.zeros(K, dtype=torch.float64).index_add_(0, row, n) / n.sum()  # p(a) = p(b): symmetric
    pmi = torch.log(n / n.sum() / (p[row] * p[col]))
    positive = pmi > 0
    ppmi = torch.sparse_coo_tensor(
        torch.stack([row, col])[:, positive], pmi[positive], (K, K), check_invariants=True
    )
    # a randomised SVD finds the top ``dim`` directions reliably only with room to spare: with
    # q = 2 * dim and 8 power iterations the subspace no longer depends on the seed
    q = min(2 * dim, K)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        U, S, _ = torch.svd_lowrank(ppmi.coalesce(), q=q, niter=8)
    k = min(dim, K)
    U = U[:, :k] * S[:k].sqrt()
    # a singular vector's sign is arbitrary: make each one's largest entry positive
    U *= U.gather(0, U.abs().argmax(0, keepdim=True)).sign()
    vectors = torch.zeros(K, dim, dtype=torch.float64)
    vectors[:, :k] = U
    vectors *= std / vectors.std()
    return ids, vectors.float()


@torch.no_grad()
def init_embedding_from_cooccurrence(model: torch.nn.Module, tokens: torch.Tensor, **kwargs) -> int:
    """Overwrite the rows of ``model.transformer.wte`` (tied to the output layer) of the frequent
    token types with ``cooccurrence_embedding`` vectors; returns how many rows it set."""
    weight = model.transformer.wte.weight
    ids, vectors = cooccurrence_embedding(tokens, weight.size(0), weight.size(1), **kwargs)
    weight[ids.to(weight.device)] = vectors.to(weight.device, weight.dtype)
    return ids.numel()
