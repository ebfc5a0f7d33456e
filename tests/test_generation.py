import pytest
import torch

from lessons_lib import GPT, GPTConfig, KVCache, UserError, generate, generate_text, sample_next_token


@pytest.fixture(scope="module")
def model(device):
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=24, vocab_size=300, n_layer=2, n_head=2, n_embd=32)).to(device).eval()


def run(model, use_kv_cache, max_new_tokens=40, seed=7, **kw):
    """Two prompts extended on the model's device, sampled with a seeded CPU generator."""
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    idx = torch.tensor([[1, 2, 3], [4, 5, 6]], device=device)
    return generate(model, idx, max_new_tokens, generator=g, use_kv_cache=use_kv_cache, **kw)


def test_kv_cache_gives_the_same_tokens_as_recompute(model):
    # 40 new tokens overflow block_size=24, so the fallback past the window is covered too
    assert torch.equal(run(model, True), run(model, False))
    assert torch.equal(run(model, True, temperature=0), run(model, False, temperature=0))


def test_kv_cache_logits_match_full_forward(model, device):
    idx = torch.randint(0, 300, (2, 10)).to(device)
    full, _ = model(idx)
    cache = KVCache(model.config, 2, 24, device, torch.float32)
    first, _ = model(idx[:, :6], kv_cache=cache)
    rest = [model(idx[:, t : t + 1], kv_cache=cache)[0] for t in range(6, 10)]
    stepwise = torch.cat([first, *rest], dim=1)
    assert (stepwise - full).abs().max().item() < 1e-5


def test_seeded_sampling_is_reproducible(model):
    assert torch.equal(run(model, True), run(model, True))
    assert not torch.equal(run(model, True), run(model, True, seed=8))


def test_seeded_samples_are_the_same_tokens_on_every_device(model, device):
    """The draw is made on the CPU from a CPU generator, so the model's device does not change the
    tokens (on the CPU here; on a GPU with LESSONS_TEST_DEVICE=cuda, against a CPU copy)."""
    cpu_model = GPT(model.config).eval()
    cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    assert torch.equal(run(model, True, temperature=0.8).cpu(), run(cpu_model, True, temperature=0.8))


def test_every_sampler_draws_on_the_cpu(monkeypatch):
    """generate (with and without the KV cache), generate_text (the sampling CLI's call) and
    finetune.chat draw with torch.multinomial from CPU probabilities and a CPU generator."""
    from lessons_lib.finetune import chat

    draws = []
    multinomial = torch.multinomial

    def checked(probs, num_samples, *args, generator=None, **kw):
        draws.append((probs.device.type, generator.device.type if generator is not None else "global"))
        return multinomial(probs, num_samples, *args, generator=generator, **kw)

    monkeypatch.setattr(torch, "multinomial", checked)
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=32)).eval()
    generate_text(gpt, "Hello", num_sequences=2, max_new_tokens=3, seed=3)
    generate_text(gpt, "Hello", num_sequences=2, max_new_tokens=3, seed=3, use_kv_cache=False)
    chat(gpt, [{"role": "user", "content": "Hi"}], max_new_tokens=3, temperature=1.0)
    assert len(draws) >= 7 and set(draws) == {("cpu", "cpu")}


def test_a_generator_on_another_device_is_refused():
    class CudaGenerator:  # what torch.Generator(device="cuda") reports, without a GPU
        device = torch.device("cuda")

    with pytest.raises(UserError, match=r"on cuda; .*pass torch\.Generator\(\)\.manual_seed\(seed\)"):
        sample_next_token(torch.zeros(1, 3), generator=CudaGenerator())


def test_greedy_picks_argmax():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, 1.0]])
    assert sample_next_token(logits, temperature=0).flatten().tolist() == [1, 0]


def test_top_k_and_top_p_restrict_the_choice():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_next_token(logits, top_k=2, generator=g).flatten().tolist()) == {0, 1}
    assert set(sample_next_token(logits, top_k=None, top_p=0.8, generator=g).flatten().tolist()) == {0, 1}
    assert set(sample_next_token(logits, top_k=None, top_p=0.81, generator=g).flatten().tolist()) == {0, 1, 2}


def test_bad_sampling_settings_name_the_allowed_range():
    with pytest.raises(UserError, match="temperature must be a number >= 0, got -1"):
        sample_next_token(torch.zeros(1, 3), temperature=-1)
    with pytest.raises(UserError, match=r"top_p must be a number in \(0, 1\], got 1.5"):
        sample_next_token(torch.zeros(1, 3), top_p=1.5)
    with pytest.raises(UserError, match=r"top_k \(0 or None: every token\) must be an integer >= 0, got -1"):
        sample_next_token(torch.zeros(1, 3), top_k=-1)  # once silently the same as top_k=0


def test_generate_text_is_seeded():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=32)).eval()
    a = generate_text(gpt, "Hello", num_sequences=2, max_new_tokens=5, seed=3)
    assert a == generate_text(gpt, "Hello", num_sequences=2, max_new_tokens=5, seed=3)
    assert all(t.startswith("Hello") for t in a)


def test_stop_token_ends_each_row_and_the_loop():
    class Scripted(torch.nn.Module):
        """Logits that make row 0 emit 9 at its 2nd new token and row 1 at its 4th (greedy)."""

        config = GPTConfig(block_size=32, vocab_size=10, n_layer=1, n_head=1, n_embd=8)

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))
            self.calls = 0

        def forward(self, idx, kv_cache=None):
            n = idx.size(1) - 3  # tokens generated so far (the prompt is 3 long)
            logits = torch.zeros(idx.size(0), idx.size(1), 10)
            for row, stop_after in enumerate((1, 3)):
                logits[row, -1, 9 if n >= stop_after else 1] = 1.0
            self.calls += 1
            return logits, None

    model = Scripted()
    idx = torch.zeros(2, 3, dtype=torch.long)
    out = generate(model, idx, 10, temperature=0, use_kv_cache=False, stop_token=9)
    assert out[:, 3:].tolist() == [[1, 9, 9, 9], [1, 1, 1, 9]]  # finished rows repeat the stop token
    assert model.calls == 4  # and decoding ends once every row has stopped
    assert generate(Scripted(), idx, 10, temperature=0, use_kv_cache=False).size(1) == 13  # no stop token


def test_generate_runs_in_eval_mode_and_restores_the_mode(model):
    model.train()
    seen = []
    hook = model.register_forward_hook(lambda m, i, o: seen.append(m.training))
    try:
        generate(model, torch.tensor([[1, 2]], device=next(model.parameters()).device), 3)
    finally:
        hook.remove()
        training = model.training
        model.eval()
    assert seen == [False] * 3 and training
