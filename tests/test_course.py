"""The course harness: run sizes and the stand-in GPT-2 weights the CI-size lessons load."""

import os

import pytest
import torch
from transformers import GPT2LMHeadModel

from lessons_lib import course
from lessons_lib.course import STANDIN_CONFIG, gpt2_weights_source
from lessons_lib.hf import load_hf_gpt2


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path))
    monkeypatch.setenv("LESSONS_SIZE", "ci")
    return tmp_path


def test_full_size_is_the_real_gpt2_and_ci_size_a_local_folder(cache):
    assert gpt2_weights_source("full") == "gpt2"
    path = gpt2_weights_source()
    assert path == str(cache / "hf" / "gpt2-standin")
    assert os.path.isfile(os.path.join(path, "config.json"))
    with pytest.raises(ValueError, match="size='huge'"):
        gpt2_weights_source("huge")


def test_standin_loads_and_matches_transformers(cache):
    path = gpt2_weights_source()
    model = load_hf_gpt2(path).eval()
    hf = GPT2LMHeadModel.from_pretrained(path).eval()
    assert model.config.n_layer == STANDIN_CONFIG["n_layer"]
    assert model.config.vocab_size == 50257 and model.config.block_size == STANDIN_CONFIG["n_positions"]
    assert model.lm_head.weight is model.transformer.wte.weight
    # no LayerNorm weight is a plain 1: a missed copy would show in the logits
    assert not torch.equal(model.transformer.ln_f.weight, torch.ones_like(model.transformer.ln_f.weight))
    torch.manual_seed(0)
    idx = torch.randint(0, 50257, (2, 40))
    with torch.no_grad():
        ours, _ = model(idx)
        ref = hf(idx).logits
    assert (ours - ref).abs().max().item() <= 1e-5


def test_standin_is_created_once_and_deterministic(cache, tmp_path_factory, monkeypatch):
    path = gpt2_weights_source()
    weights = os.path.join(path, "model.safetensors")
    mtime = os.stat(weights).st_mtime_ns
    assert gpt2_weights_source() == path and os.stat(weights).st_mtime_ns == mtime  # reused
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path_factory.mktemp("other-cache")))
    other = gpt2_weights_source()
    assert other != path
    a, b = load_hf_gpt2(path).state_dict(), load_hf_gpt2(other).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same weights


def test_half_written_standin_is_rebuilt(cache):
    folder = cache / "hf" / "gpt2-standin"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{")  # interrupted write
    path = gpt2_weights_source()
    assert load_hf_gpt2(path).config.n_embd == STANDIN_CONFIG["n_embd"]


def test_run_size_and_by_size(monkeypatch):
    monkeypatch.setenv("LESSONS_SIZE", "full")
    assert course.run_size() == "full" and course.by_size(ci=1, full=2) == 2
    assert course.precision() == "auto"
    monkeypatch.setenv("LESSONS_SIZE", "")
    assert course.run_size() == "ci" and course.by_size(ci=1, full=2) == 1
    assert course.precision() == "fp64"
    monkeypatch.setenv("LESSONS_SIZE", "medium")
    with pytest.raises(ValueError, match="LESSONS_SIZE='medium'; set it to 'ci' or 'full'"):
        course.run_size()


def test_setup_sets_the_default_dtype_of_the_size(monkeypatch):
    before = torch.get_default_dtype()
    try:
        monkeypatch.setenv("LESSONS_SIZE", "ci")
        assert course.setup() == "ci" and torch.get_default_dtype() == torch.float64
        monkeypatch.setenv("LESSONS_SIZE", "full")
        assert course.setup() == "full" and torch.get_default_dtype() == torch.float32
    finally:
        torch.set_default_dtype(before)
