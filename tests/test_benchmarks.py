"""Smoke tests of benchmarks/train_step.py: it runs and its FLOP count is right. No timing asserts."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from lessons_lib.model import GPT, GPTConfig

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_step_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize("preset", ["cpu-tiny", "cpu-medium", "gpt2"])
def test_flops_per_token_counts_the_models_parameters(bench, preset):
    config = GPTConfig.from_preset(preset)
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = GPT(config)
    n = model.num_params() - model.transformer.wpe.weight.numel()
    T = 100
    assert bench.flops_per_token(config, T) == 6 * n + 12 * config.n_layer * config.n_embd * T


def test_benchmark_config_measures_peers_and_skips_hopeless_variants(bench, monkeypatch):
    monkeypatch.setattr(bench, "VOCAB_SIZE", 256)  # the 50,257-row head would dominate the test's time
    peaks = {"fp32": 1e12, "bf16": 1.0}  # bf16 a trillion times slower: must be skipped, not run
    rows = bench.benchmark_config(
        "cpu-tiny", torch.device("cpu"), (2, 16), ["fp32", "bf16"], peaks, steps=1, warmup=0, repeats=1
    )
    by_key = {(r.precision.split()[0], r.impl): r for r in rows}
    assert set(by_key) == {
        ("fp32", "lessons_lib"),
        ("fp32", "transformers"),
        ("bf16", "lessons_lib"),
        ("bf16", "transformers"),
        ("auto", "lessons_lib best"),
    }
    peer = by_key[("fp32", "transformers")]
    assert peer.tokens_per_s > 0 and peer.ratio == pytest.approx(1.0)
    ours = by_key[("fp32", "lessons_lib")]
    assert ours.ratio == pytest.approx(ours.tokens_per_s / peer.tokens_per_s)
    for impl in ("lessons_lib", "transformers"):
        skipped = by_key[("bf16", impl)]
        assert skipped.tokens_per_s is None and skipped.note.startswith("skipped")


def test_main_writes_the_markdown_table(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "VOCAB_SIZE", 256)
    out = tmp_path / "results" / "train_step.md"
    argv = ["--configs", "cpu-tiny", "--precisions", "fp32", "--steps", "1", "--repeats", "1"]
    text = bench.main([*argv, "--warmup", "0", "--peak-size", "256", "--out", str(out)])
    assert out.read_text() == text
    table = [line for line in text.splitlines() if line.startswith("| cpu-tiny")]
    assert len(table) == 3  # lessons_lib, transformers, lessons_lib best
    assert "measured matmul peak" in text and "load average" in text


def test_every_variant_is_timed_through_the_librarys_train_step(bench, monkeypatch):
    from lessons_lib.loop import train_step

    models = []

    def counting(model, *args, **kwargs):
        models.append(type(model).__name__)
        return train_step(model, *args, **kwargs)

    monkeypatch.setattr(bench, "VOCAB_SIZE", 256)
    monkeypatch.setattr(bench, "train_step", counting)
    bench.benchmark_config(
        "cpu-tiny", torch.device("cpu"), (2, 16), ["fp32"], {"fp32": 1e12, "bf16": 1e12}, 1, 0, 1
    )
    assert {"GPT", "_HFLoss"} <= set(models)
