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


@pytest.fixture
def accelerator(monkeypatch):
    """Make torch report an Apple GPU (``"mps"``) or an NVIDIA one (``"cuda"``) as present, without the
    hardware: a tensor really sent there still raises. Restores the default dtype afterwards."""
    monkeypatch.delenv("LESSONS_DEVICE", raising=False)
    before = torch.get_default_dtype()

    def present(kind: str) -> None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: kind == "mps")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: kind == "cuda")

    yield present
    torch.set_default_dtype(before)


@pytest.mark.parametrize("kind", ["mps", "cuda"])
def test_ci_size_computes_on_the_cpu_in_float64_whatever_is_present(kind, accelerator, monkeypatch, capsys):
    accelerator(kind)
    monkeypatch.setenv("LESSONS_SIZE", "ci")
    assert course.setup() == "ci" and capsys.readouterr().out == ""  # nothing to warn about
    assert course.device() == torch.device("cpu") and torch.get_default_dtype() == torch.float64
    assert course.precision() == "fp64"
    assert torch.zeros(2).to(course.device()).dtype == torch.float64  # really goes nowhere else


OPT_IN = [("mps", torch.float32, "fp32"), ("cuda", torch.float64, "fp64")]  # MPS has no float64


@pytest.mark.parametrize("kind, dtype, precision", OPT_IN)
def test_an_accelerator_at_ci_size_is_opt_in_and_says_the_numbers_differ(kind, dtype, precision, accelerator,
                                                                         monkeypatch, capsys):  # fmt: skip
    accelerator(kind)
    monkeypatch.setenv("LESSONS_SIZE", "ci")
    monkeypatch.setenv("LESSONS_DEVICE", kind)
    course.setup()
    out = capsys.readouterr().out.splitlines()
    assert course.device() == torch.device(kind) and torch.get_default_dtype() == dtype
    assert course.precision() == precision
    name = str(dtype).removeprefix("torch.")
    assert out == [f"LESSONS_DEVICE={kind}: this lesson computes on {kind} in {name}, so its numbers will "
                   "differ from the stored ones (made on the CPU in float64)."]  # fmt: skip


@pytest.mark.parametrize("kind", ["mps", "cuda"])
def test_full_size_takes_the_best_device_in_float32(kind, accelerator, monkeypatch, capsys):
    accelerator(kind)
    monkeypatch.setenv("LESSONS_SIZE", "full")
    assert course.setup() == "full" and capsys.readouterr().out == ""
    assert course.device() == torch.device(kind) and torch.get_default_dtype() == torch.float32
    assert course.precision() == "auto"


def test_lessons_device_cpu_is_the_ci_rule_at_full_size(accelerator, monkeypatch):
    accelerator("cuda")
    monkeypatch.setenv("LESSONS_SIZE", "full")
    monkeypatch.setenv("LESSONS_DEVICE", "cpu")
    assert course.device() == torch.device("cpu")


def _adam_steps(model, steps: int) -> None:
    torch.manual_seed(1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x, y = torch.randint(0, 100, (2, 4, 16)).unbind(0)
        model(x, y)[1].backward()
        optimizer.step()
        optimizer.zero_grad()


def _on_grid(t: torch.Tensor, bits: int) -> bool:
    mantissa = torch.frexp(t).mantissa * 2.0**bits
    return torch.equal(mantissa, mantissa.round())


def test_snap_to_grid_keeps_the_mantissa_bits():
    x = torch.tensor([1 / 3, -2 / 3, 1e-20, 0.0, 1000.1], dtype=torch.float64)
    course.snap_to_grid([x], bits=4)
    assert _on_grid(x, 4) and not _on_grid(x, 3)
    torch.testing.assert_close(
        x, torch.tensor([11 / 32, -11 / 16, 1e-20, 0.0, 1024.0], dtype=torch.float64), rtol=2**-5, atol=0
    )


def test_portable_training_snaps_inside_the_block_only(monkeypatch, tiny_gpt, one_thread):
    monkeypatch.setenv("LESSONS_SIZE", "ci")
    model = tiny_gpt().double()
    with course.portable_training(model):
        assert all(_on_grid(p, course.GRID_BITS) for p in model.parameters())
        _adam_steps(model, 2)  # an optimizer made inside, as finetune() does
        assert all(_on_grid(p, course.GRID_BITS) for p in model.parameters())
    _adam_steps(model, 1)
    assert not any(_on_grid(p, course.GRID_BITS) for p in model.parameters() if p.numel() > 8)


def test_portable_training_does_nothing_at_full_size(monkeypatch, tiny_gpt, one_thread):
    monkeypatch.setenv("LESSONS_SIZE", "full")
    model = tiny_gpt()
    before = [p.clone() for p in model.parameters()]
    with course.portable_training(model):
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
        _adam_steps(model, 1)
    assert not any(_on_grid(p, course.GRID_BITS) for p in model.parameters() if p.numel() > 8)


def test_portable_training_absorbs_a_tiny_difference(monkeypatch, tiny_gpt, one_thread):
    """Two runs whose starting weights differ by 1e-13 (relative): apart after training, and the same
    to the last bit on the grid. The difference stands in for another CPU's kernels."""
    monkeypatch.setenv("LESSONS_SIZE", "ci")
    a, b = tiny_gpt().double(), tiny_gpt().double()
    course.snap_to_grid(a.parameters())
    course.snap_to_grid(b.parameters())
    with torch.no_grad():
        for p in b.parameters():
            p.mul_(1 + 1e-13)
    runs = []
    for model in (a, b):
        twin = tiny_gpt().double()
        twin.load_state_dict(model.state_dict())
        _adam_steps(twin, 20)
        runs.append(twin)
    assert not all(torch.equal(p, q) for p, q in zip(runs[0].parameters(), runs[1].parameters(), strict=True))
    for model in (a, b):
        with course.portable_training(model):
            _adam_steps(model, 20)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
