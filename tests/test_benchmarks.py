"""Smoke tests of the benchmarks: train_step.py runs and its FLOP count is right; gpu_check.py's
pieces work on the CPU with a tiny model. No timing asserts beyond what excludes the warm-up."""

import importlib.util
import sys
import time
from pathlib import Path

import pytest
import torch

from lessons_lib.model import GPT, GPTConfig

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = GPTConfig(block_size=32, vocab_size=4096, n_layer=2, n_head=2, n_embd=32)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    yield _load("train_step_bench", BENCHMARKS / "train_step.py")
    del sys.modules["train_step_bench"]


@pytest.fixture(scope="module")
def gpu():
    yield _load("gpu_check_bench", BENCHMARKS / "gpu_check.py")
    del sys.modules["gpu_check_bench"]


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
        ("fp32", "nanoGPT"),
        ("bf16", "lessons_lib"),
        ("bf16", "transformers"),
        ("bf16", "nanoGPT"),
        ("auto", "lessons_lib best"),
    }
    peer = by_key[("fp32", "transformers")]
    assert peer.tokens_per_s > 0 and peer.ratio == pytest.approx(1.0)
    ours = by_key[("fp32", "lessons_lib")]
    assert ours.ratio == pytest.approx(ours.tokens_per_s / peer.tokens_per_s)
    nano = by_key[("fp32", "nanoGPT")]
    assert ours.ratio_nanogpt == pytest.approx(ours.tokens_per_s / nano.tokens_per_s)
    for impl in ("lessons_lib", "transformers", "nanoGPT"):
        skipped = by_key[("bf16", impl)]
        assert skipped.tokens_per_s is None and skipped.note.startswith("skipped")


def test_main_writes_the_markdown_table(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "VOCAB_SIZE", 256)
    out = tmp_path / "results" / "train_step.md"
    argv = ["--configs", "cpu-tiny", "--precisions", "fp32", "--steps", "1", "--repeats", "1"]
    text = bench.main([*argv, "--warmup", "0", "--peak-size", "256", "--out", str(out)])
    assert out.read_text() == text
    table = [line for line in text.splitlines() if line.startswith("| cpu-tiny")]
    assert len(table) == 4  # lessons_lib, transformers, nanoGPT, lessons_lib best
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
    assert {"GPT", "_HFLoss", "_NanoGPTLoss"} <= set(models)


# --- gpu_check.py ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, peak",
    [("NVIDIA H200", 989e12), ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12),
     ("NVIDIA L4", 121e12), ("NVIDIA L40S", None), ("NVIDIA H100 PCIe", None)],
)  # fmt: skip
def test_peak_table_knows_the_listed_gpus_only(gpu, name, peak):
    found = gpu.peak_bf16_flops(name)
    assert (found and found[1]) == peak
    text = gpu.mfu_text(0.5 * (peak or 1.0), name)
    assert text.startswith("50.0% of") if peak else text.startswith("unknown")


def test_step_timing_goes_through_train_step_and_leaves_the_warmup_out(gpu, monkeypatch):
    from lessons_lib.loop import train_step

    steps = []

    def slow_warmup(model, optimizer, data, step, **kwargs):
        steps.append((type(model).__name__, step, kwargs["precision"]))
        if step < 2:
            time.sleep(0.25)  # what a compilation costs: must not show in ms/step
        return train_step(model, optimizer, data, step, **kwargs)

    monkeypatch.setattr(gpu, "train_step", slow_warmup)
    timing = gpu.time_training_step(TINY, (2, 16), torch.device("cpu"), "fp32", 3, 2, compile_model=False)
    assert steps == [("GPT", s, "fp32") for s in range(5)]
    assert timing.warmup_s >= 0.5 and 0 < timing.ms_per_step < 200
    assert timing.tokens_per_s == pytest.approx(2 * 16 * 1000 / timing.ms_per_step)
    assert timing.peak_memory is None  # CUDA only


def test_short_training_run_passes_only_when_the_loss_falls(gpu):
    from lessons_lib.data import DataLoaderLite

    results = []
    for max_lr in (1e-2, 1e-7):  # the second barely moves the weights: the check must fail
        torch.manual_seed(0)
        model = GPT(TINY)
        losses = gpu.train_briefly(model, DataLoaderLite(4, 32, gpu.source_bytes()), 30, max_lr, "fp32")
        assert len(losses) == 30 and model.training  # train_briefly puts the mode back
        results.append(gpu.loss_fell(losses))
    assert results == [True, False]
    assert int(gpu.source_bytes().max()) < 256


def test_kv_cache_comparison_finds_equal_tokens_and_the_first_difference(gpu):
    torch.manual_seed(0)
    model = GPT(TINY)
    prompts = torch.randint(0, 4096, (3, 5))
    result = gpu.compare_kv_cache(model, prompts, 20)
    assert result.identical and result.first_difference is None
    assert result.max_logit_diff < 1e-4 and set(result.seconds) == {True, False}
    a = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    b = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    assert gpu.first_difference(a, b) == 2 and gpu.first_difference(a, a.clone()) is None


def test_unit_tests_run_with_the_test_device_and_report_failures(gpu, tmp_path):
    (tmp_path / "test_device_seen.py").write_text(
        "import os\n\n"
        "def test_device():\n    assert os.environ['LESSONS_TEST_DEVICE'] == 'cpu'\n\n"
        "def test_broken():\n    assert False\n"
    )
    check = gpu.run_unit_tests([str(tmp_path / "test_device_seen.py")], "cpu", timeout_s=120)
    assert not check.passed and check.numbers["passed"] == "1"
    assert check.numbers["failed / errors / skipped"] == "1 / 0 / 0"
    # the test's module path depends on where pytest puts its root (this clone under /tmp or not)
    assert check.note.startswith("failed: ") and check.note.endswith("test_device_seen::test_broken")
    assert check.note.count("::") == 1
    check = gpu.run_unit_tests([str(tmp_path / "test_device_seen.py::test_device")], "cpu", timeout_s=120)
    assert check.passed and check.numbers["passed"] == "1"


def test_results_file_lists_every_check(gpu):
    checks = [gpu.Check("throughput", True, {"tokens/s": "1,234"}), gpu.Check("kv cache", False, note="boom")]
    text = gpu.render_markdown(checks, {"device": "NVIDIA H200"})
    assert "- **device**: NVIDIA H200" in text
    assert "| throughput | PASS |" in text and "| kv cache | FAIL |" in text
    assert "- tokens/s: 1,234" in text and "- note: boom" in text


def test_gpu_check_refuses_without_cuda(gpu, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path / "r.md")]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()


# --- loss_memory.py --------------------------------------------------------------------------


def test_loss_memory_finds_the_chunked_output_layer_smaller(tmp_path, monkeypatch):
    """512 tokens: the plain path's (512, 50,257) logits and their gradient are ~100 MB each; the
    chunked path holds one chunk. A results file with both rows comes out."""
    memory = _load("loss_memory_bench", BENCHMARKS / "loss_memory.py")
    monkeypatch.setattr(memory, "CASES", {"1024x128": (512, 64)})
    peaks = memory.run_case("1024x128")
    assert peaks["plain"] > 150 and peaks["plain"] > 3 * peaks["chunked"]
    text = memory.main(["--cases", "1024x128", "--out", str(tmp_path / "m.md")])
    assert (tmp_path / "m.md").read_text() == text and "| 512 x 64 |" in text
    del sys.modules["loss_memory_bench"]
