import math

import pytest
import torch

from lessons_lib import GPT, MLP, Block, CausalSelfAttention, GPTConfig
from lessons_lib.utils import UserError

SMALL = GPTConfig(block_size=32, vocab_size=1000, n_layer=2, n_head=4, n_embd=64)


def small_model(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**SMALL.to_dict(), **overrides})).eval()


def test_shapes():
    model = small_model()
    idx = torch.randint(0, 1000, (3, 17))
    logits, loss = model(idx)
    assert logits.shape == (3, 17, 1000) and loss is None
    x = torch.randn(3, 17, 64)
    assert CausalSelfAttention(SMALL)(x).shape == x.shape
    assert MLP(SMALL)(x).shape == x.shape
    assert Block(SMALL)(x).shape == x.shape


def test_causality_changing_token_t_changes_no_earlier_logit():
    model = small_model()
    idx = torch.randint(0, 1000, (1, 20))
    t = 11
    changed = idx.clone()
    changed[0, t] = (idx[0, t] + 1) % 1000
    a, b = model(idx)[0], model(changed)[0]
    assert torch.equal(a[:, :t], b[:, :t])
    assert not torch.allclose(a[:, t:], b[:, t:])


def test_sdpa_and_explicit_attention_agree(device):
    fast, slow = small_model(attention="sdpa").to(device), small_model(attention="explicit").to(device)
    slow.load_state_dict(fast.state_dict())
    idx = torch.randint(0, 1000, (2, 32)).to(device)
    diff = (fast(idx)[0] - slow(idx)[0]).abs().max().item()
    assert diff < 1e-5


def test_gpt2_parameter_count_and_tying():
    with torch.device("meta"):
        model = GPT(GPTConfig.from_preset("gpt2"))
    assert model.num_params() == 124_439_808
    assert model.lm_head.weight is model.transformer.wte.weight


def test_gpt2_initialisation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=4096, n_layer=8, n_head=4, n_embd=256))
    block = model.transformer.h[0]
    assert abs(block.attn.c_attn.weight.std().item() - 0.02) < 1e-3
    assert abs(block.mlp.c_proj.weight.std().item() - 0.02 / math.sqrt(16)) < 3e-4
    assert abs(block.attn.c_proj.weight.std().item() - 0.02 / math.sqrt(16)) < 3e-4
    assert block.attn.c_attn.bias.abs().max().item() == 0.0
    assert abs(model.transformer.wpe.weight.std().item() - 0.02) < 1e-3


def test_loss_at_initialisation_is_ln_vocab():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, n_layer=2, n_head=2, n_embd=64))
    idx = torch.randint(0, 50257, (4, 64))
    _, loss = model(idx, torch.randint(0, 50257, (4, 64)))
    assert abs(loss.item() - math.log(50257)) < 0.1


def test_small_model_overfits_one_batch(device):
    model = small_model().to(device).train()
    torch.manual_seed(1)
    x, y = torch.randint(0, 1000, (2, 16)).to(device), torch.randint(0, 1000, (2, 16)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        loss = model(x, y)[1]
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_ignore_index_targets():
    model = small_model()
    idx = torch.randint(0, 1000, (1, 8))
    targets = idx.clone()
    targets[0, :4] = -100
    logits, loss = model(idx, targets)
    expected = torch.nn.functional.cross_entropy(logits[0, 4:], idx[0, 4:])
    assert torch.allclose(loss, expected)


def test_presets():
    assert GPTConfig.from_preset("gpt2-xl").n_embd == 1600
    assert GPTConfig.from_preset("cpu-small", block_size=64).block_size == 64
    with pytest.raises(ValueError, match="Unknown preset 'gpt3'"):
        GPTConfig.from_preset("gpt3")


# --- bad input -------------------------------------------------------------------------------


def test_sequence_longer_than_block_size():
    with pytest.raises(ValueError, match=r"length 33 .*block_size=32.*Crop"):
        small_model()(torch.zeros(1, 33, dtype=torch.long))


def test_non_integer_token_ids():
    with pytest.raises(TypeError, match=r"integer token ids, got dtype torch.float32"):
        small_model()(torch.zeros(1, 4))


@pytest.mark.parametrize("bad", [1000, 5000, -1])
def test_out_of_vocabulary_ids(bad):
    idx = torch.tensor([[1, 2, bad]])
    with pytest.raises(ValueError, match=rf"Token id {bad} is outside the vocabulary \[0, 1000\)"):
        small_model()(idx)


def test_wrong_rank_input():
    with pytest.raises(ValueError, match=r"2-D tensor of token ids \(B, T\), got \(5,\)"):
        small_model()(torch.zeros(5, dtype=torch.long))


def test_n_embd_not_divisible_by_n_head():
    with pytest.raises(ValueError, match="n_embd=100 is not divisible by n_head=12"):
        GPTConfig(n_embd=100, n_head=12)


def test_non_positive_config():
    with pytest.raises(ValueError, match="n_layer must be a positive integer, got 0"):
        GPTConfig(n_layer=0)


def test_padded_vocabulary_leaves_real_logits_unchanged():
    plain = small_model()
    padded = small_model(vocab_multiple=64)
    assert padded.config.padded_vocab_size == 1024 and padded.lm_head.weight.shape == (1024, 64)
    with torch.no_grad():
        for p, q in zip(padded.parameters(), plain.parameters(), strict=True):
            p.copy_(
                q if p.shape == q.shape else torch.cat([q, torch.randn(p.size(0) - q.size(0), q.size(1))])
            )
    idx = torch.randint(0, 1000, (2, 16))
    (a, la), (b, lb) = plain(idx, idx), padded(idx, idx)
    assert b.shape == (2, 16, 1000)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert GPTConfig(vocab_multiple=64).padded_vocab_size == 50304


def test_dropout_acts_in_training_only_and_at_zero_draws_no_random_numbers():
    torch.manual_seed(0)
    idx = torch.randint(0, 100, (2, 8))
    cfg = dict(block_size=8, vocab_size=100, n_layer=2, n_head=2, n_embd=16)
    plain, dropped = GPT(GPTConfig(**cfg)), GPT(GPTConfig(**cfg, dropout=0.5))
    dropped.load_state_dict(plain.state_dict())
    plain.train()
    state = torch.get_rng_state()
    out = plain(idx)[0]
    assert torch.equal(torch.get_rng_state(), state)  # dropout=0: the lessons' random streams unchanged
    assert not torch.allclose(dropped.train()(idx)[0], out)
    assert torch.equal(dropped.eval()(idx)[0], plain.eval()(idx)[0])
    with pytest.raises(UserError, match=r"dropout=1.0 must be in \[0, 1\)"):
        GPTConfig(**cfg, dropout=1.0)
