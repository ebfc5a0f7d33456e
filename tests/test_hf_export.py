"""Export to Hugging Face format: transformers and lessons_lib both load the folder back exactly."""

import json

import pytest
import torch
from transformers import GPT2LMHeadModel

from lessons_lib import EOT_TOKEN, GPT, GPTConfig, generate, generate_text, sample
from lessons_lib.hf import export_hf_gpt2


def random_model(vocab_multiple):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, n_layer=2, n_head=4, n_embd=32, vocab_multiple=vocab_multiple))
    with torch.no_grad():  # random LayerNorms and biases: a missed copy cannot hide behind ones/zeros
        for p in model.parameters():
            if p.dim() == 1:
                p.normal_(0.0, 0.5)
    return model.eval()


@pytest.fixture(scope="module", params=[1, 64], ids=["vocab-50257", "padded-50304"])
def exported(request, tmp_path_factory):
    model = random_model(request.param)
    folder = export_hf_gpt2(model, tmp_path_factory.mktemp("export") / "gpt2-out")
    return model, folder


def test_folder_holds_a_gpt2_config_and_safetensors(exported):
    model, folder = exported
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "config.json", "generation_config.json", "model.safetensors"
    ]  # fmt: skip
    config = json.loads((folder / "config.json").read_text())
    assert (config["n_positions"], config["n_embd"], config["n_layer"], config["n_head"]) == (32, 32, 2, 4)
    assert config["vocab_size"] == 50257 and config["activation_function"] == "gelu_new"
    assert config["resid_pdrop"] == config["embd_pdrop"] == config["attn_pdrop"] == 0.0
    assert not any(p.name.startswith(".gpt2-out") for p in folder.parent.iterdir())  # no leftovers


def test_round_trip_logits_match(exported):
    model, folder = exported
    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    back = GPT.from_pretrained(str(folder)).eval()
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # still tied
    idx = torch.randint(0, 50257, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(idx)[0]
        assert ours.shape == (2, 32, 50257)
        assert (hf(idx).logits - ours).abs().max().item() <= 1e-5
        assert (back(idx)[0] - ours).abs().max().item() <= 1e-5
    assert back.config.vocab_size == 50257 and back.config.padded_vocab_size == 50257


def test_transformers_generate_agrees_with_ours(exported):
    model, folder = exported
    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    prompt = torch.tensor([[15496, 11, 314, 1101]])  # "Hello, I'm"
    with torch.no_grad():
        theirs = hf.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=EOT_TOKEN)
    ours = generate(model, prompt, 6, temperature=0)
    assert theirs.tolist() == ours.tolist()


def test_sampling_command_runs_on_the_export(exported, capsys):
    model, folder = exported
    sample.main(["--pretrained", str(folder), "--prompt", "Hi", "--num-seq", "1", "--max-tokens", "3"])
    (expected,) = generate_text(model, "Hi", num_sequences=1, max_new_tokens=3, seed=42)  # its defaults
    assert capsys.readouterr().out == f"> {expected}\n\n"
