"""Hugging Face GPT-2 folders: import (``load_hf_gpt2``) matches transformers weight for weight,
and export (``export_hf_gpt2``) writes a folder that transformers and lessons_lib both load back."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lessons_lib import EOT_TOKEN, GPT, GPTConfig, UserError, generate, generate_text, sample
from lessons_lib.hf import export_hf_gpt2, load_hf_gpt2

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A randomly initialised small GPT-2 saved in Hugging Face format: a stand-in for the hub."""
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2, n_head=4, n_embd=64, n_positions=32, vocab_size=1000,
        bos_token_id=999, eos_token_id=999, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    hf = GPT2LMHeadModel(config).eval()
    # random LayerNorm and bias values so a missed copy cannot hide behind ones/zeros
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 1:
                p.normal_(0.0, 0.5)
    path = tmp_path_factory.mktemp("hf-gpt2")
    hf.save_pretrained(path)
    return path, hf


def test_logits_and_loss_match_transformers(hf_folder):
    path, hf = hf_folder
    model = load_hf_gpt2(str(path)).eval()
    torch.manual_seed(1)
    idx = torch.randint(0, 1000, (2, 32))
    with torch.no_grad():
        ours_logits, _ = model(idx)
        ref = hf(idx, labels=idx)
        _, ours_loss = model(idx[:, :-1], idx[:, 1:])
    assert (ours_logits - ref.logits).abs().max().item() <= 1e-5
    assert abs(ours_loss.item() - ref.loss.item()) <= 1e-5


def test_load_hf_gpt2_copies_the_exact_weights(hf_folder):
    path, hf = hf_folder
    model = load_hf_gpt2(str(path))
    sd, sd_hf = model.state_dict(), hf.state_dict()
    assert torch.equal(
        sd["transformer.h.1.attn.c_attn.weight"], sd_hf["transformer.h.1.attn.c_attn.weight"].t()
    )
    assert torch.equal(
        sd["transformer.h.0.mlp.c_proj.weight"], sd_hf["transformer.h.0.mlp.c_proj.weight"].t()
    )
    assert torch.equal(sd["transformer.ln_f.bias"], sd_hf["transformer.ln_f.bias"])
    assert model.config.block_size == 32 and model.config.vocab_size == 1000


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match=r"Unknown pretrained model 'gpt5'.*gpt2, gpt2-medium"):
        load_hf_gpt2("gpt5")


def test_a_folder_that_does_not_load_is_named_with_the_reason(hf_folder, tmp_path):
    with pytest.raises(UserError, match="is not a Hugging Face model folder that loads: .*(found|config)"):
        load_hf_gpt2(str(tmp_path))
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(hf_folder[0] / "config.json", broken)
    (broken / "pytorch_model.bin").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)  # a cut zip
    with pytest.raises(UserError) as err:
        load_hf_gpt2(str(broken))
    assert str(err.value) == (
        f"{broken} is not a Hugging Face model folder that loads: PytorchStreamReader failed reading zip "
        "archive: failed finding central directory."
    )
    marker = tmp_path / "pwned"
    torch.save({"transformer.wte.weight": Exploit(marker)}, broken / "pytorch_model.bin")
    with pytest.raises(UserError) as err:
        load_hf_gpt2(str(broken))
    assert str(err.value).endswith(": its weights file holds pickled Python objects, which could run code.")
    assert "weights_only" not in str(err.value) and not marker.exists()


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- export -------------------------------------------------------------------------------------


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
    back = load_hf_gpt2(str(folder)).eval()
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


def test_offline_pretrained_name_fails_fast_without_the_hub(tmp_path):
    env = {**os.environ, "LESSONS_OFFLINE": "1", "HF_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    code = "from lessons_lib import load_hf_gpt2; load_hf_gpt2('gpt2')"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "LESSONS_OFFLINE is set and 'gpt2' is not in the Hugging Face cache" in run.stderr
