import pytest
import torch

from lessons_lib import GPT, GPTConfig, UserError
from lessons_lib.embedding_init import cooccurrence_embedding, init_embedding_from_cooccurrence


def corpus(repeats: int = 200) -> torch.Tensor:
    """Tokens 1 and 2 always sit between 10 and 11; token 3 between 20 and 21; 5 occurs twice."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(repeats):
        middle = [1, 2][int(torch.randint(2, (1,), generator=g))]
        rows += [10, middle, 11, 20, 3, 21]
    return torch.tensor(rows + [5, 30, 5])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


def test_tokens_with_the_same_neighbours_get_similar_vectors():
    ids, vec = cooccurrence_embedding(corpus(), vocab_size=64, dim=4)
    row = {t: vec[i] for i, t in enumerate(ids.tolist())}
    assert cosine(row[1], row[2]) > 0.9  # same neighbours
    assert cosine(row[1], row[3]) < 0.1  # other neighbours
    assert cosine(row[10], row[11]) > cosine(row[10], row[21])


def test_rows_are_the_frequent_types_sorted_at_the_requested_std():
    tokens = corpus()
    ids, vec = cooccurrence_embedding(tokens, vocab_size=64, dim=4, std=0.05)
    assert ids.tolist() == [1, 2, 3, 10, 11, 20, 21]  # 5 and 30 occur fewer than 3 times
    assert vec.shape == (7, 4)
    assert vec.std().item() == pytest.approx(0.05, rel=1e-5)
    ids, _ = cooccurrence_embedding(tokens, vocab_size=64, dim=4, min_count=1)
    assert ids.tolist() == [1, 2, 3, 5, 10, 11, 20, 21, 30]
    ids, _ = cooccurrence_embedding(tokens, vocab_size=64, dim=4, max_types=4)
    assert ids.tolist() == [3, 10, 11, 20]  # the 4 most frequent (ties: the lower id first)


def test_the_same_seed_gives_the_same_vectors_and_the_global_rng_is_untouched():
    state = torch.get_rng_state()
    _, a = cooccurrence_embedding(corpus(), vocab_size=64, dim=4, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    _, b = cooccurrence_embedding(corpus(), vocab_size=64, dim=4, seed=3)
    assert torch.equal(a, b)


def test_fewer_types_than_dimensions_pads_with_zeros():
    ids, vec = cooccurrence_embedding(corpus(), vocab_size=64, dim=16)
    assert vec.shape == (7, 16) and torch.count_nonzero(vec[:, 7:]) == 0


def test_too_little_text_says_what_to_do():
    with pytest.raises(UserError, match="too little text.*embedding_init='normal'"):
        cooccurrence_embedding(torch.tensor([1, 2, 3, 4]), vocab_size=8, dim=4)


def test_init_sets_the_frequent_rows_of_the_tied_matrix_and_leaves_the_others():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=64))
    before = model.lm_head.weight.detach().clone()
    n = init_embedding_from_cooccurrence(model, corpus())
    ids, vec = cooccurrence_embedding(corpus(), vocab_size=64, dim=8)
    assert n == len(ids) == 7
    assert torch.equal(model.transformer.wte.weight[ids], vec)
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied
    others = torch.ones(64, dtype=torch.bool)
    others[ids] = False
    assert torch.equal(model.lm_head.weight[others], before[others])


def test_each_direction_has_a_canonical_sign():
    # an SVD's singular vectors come with arbitrary signs; the thread count can flip them
    _, vec = cooccurrence_embedding(corpus(), vocab_size=64, dim=4)
    largest = vec.gather(0, vec.abs().argmax(0, keepdim=True))
    assert (largest > 0).all()
