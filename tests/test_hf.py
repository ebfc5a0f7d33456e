import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lessons_lib import GPT

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
    model = GPT.from_pretrained(str(path)).eval()
    torch.manual_seed(1)
    idx = torch.randint(0, 1000, (2, 32))
    with torch.no_grad():
        ours_logits, _ = model(idx)
        ref = hf(idx, labels=idx)
        _, ours_loss = model(idx[:, :-1], idx[:, 1:])
    assert (ours_logits - ref.logits).abs().max().item() <= 1e-5
    assert abs(ours_loss.item() - ref.loss.item()) <= 1e-5


def test_from_pretrained_loads_exact_weights(hf_folder):
    path, hf = hf_folder
    model = GPT.from_pretrained(str(path))
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
        GPT.from_pretrained("gpt5")


def test_offline_pretrained_name_fails_fast_without_the_hub(tmp_path):
    env = {**os.environ, "LESSONS_OFFLINE": "1", "HF_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    code = "from lessons_lib import GPT; GPT.from_pretrained('gpt2')"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "LESSONS_OFFLINE is set and 'gpt2' is not in the Hugging Face cache" in run.stderr
