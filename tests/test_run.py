import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from lessons_lib import GPT, CheckpointError, GPTConfig, UserError, load_checkpoint, save_checkpoint
from lessons_lib.run import RunConfig, Trainer, TrainingDivergedError

# final_eval_batches=2: the whole Tiny Shakespeare validation split (1,055 batches) would take most
# of each test's time; test_fit_logs_metrics_and_checkpoints checks the default (0: the whole split).
TINY = {"model": "cpu-tiny", "batch_size": 2, "seq_len": 16, "max_steps": 6, "warmup_steps": 2,
        "eval_interval": 3, "eval_batches": 1, "final_eval_batches": 2, "precision": "fp32"}  # fmt: skip


def tiny_run(tmp_path, **overrides) -> RunConfig:
    return RunConfig(**{**TINY, "out_dir": str(tmp_path / "run"), **overrides})


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    """4 micro-batches of 2 rows are the same 8 rows as one batch of 8 (the loader reads them
    consecutively): one Trainer step of each gives the same weights (float64: to rounding)."""
    big = Trainer(tiny_run(tmp_path / "big", batch_size=8, max_steps=2, precision="fp64"))
    small = Trainer(tiny_run(tmp_path / "small", batch_size=2, total_batch_tokens=8 * 16, max_steps=2,
                             precision="fp64"))  # fmt: skip
    assert (big.grad_accum_steps, small.grad_accum_steps) == (1, 4)
    before = params(big.model)
    assert max_diff(before, params(small.model)) == 0.0  # the same init
    a, b = big.next_step(), small.next_step()
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-12, abs=0)
    assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-10, abs=0)
    assert max_diff(before, params(big.model)) > 1e-4  # it moved ...
    assert max_diff(params(big.model), params(small.model)) <= 1e-12  # ... the same way


def test_trainer_accumulates_to_the_token_budget(tmp_path):
    trainer = Trainer(tiny_run(tmp_path, total_batch_tokens=2 * 16 * 4, max_steps=1))
    assert trainer.grad_accum_steps == 4
    before = trainer.train_loader.position
    trainer.next_step()
    assert trainer.train_loader.position - before == 4 * 2 * 16
    with pytest.raises(ValueError, match=r"not a multiple of batch_size x seq_len x processes = 2 x 16 x 1"):
        Trainer(tiny_run(tmp_path, total_batch_tokens=100))


def small_shards(tmp_path):
    """A folder of token shards, small enough that its whole validation split is a few batches."""
    from lessons_lib.fineweb import prepare_shards

    docs = [f"Document {i}: " + "the quick brown fox jumps over the lazy dog. " * 20 for i in range(40)]
    prepare_shards(docs, tmp_path / "shards", shard_size=2000, workers=1, progress=False)
    return str(tmp_path / "shards")


def test_fit_logs_metrics_and_checkpoints(tmp_path):
    cfg = tiny_run(tmp_path, checkpoint_interval=2, data=small_shards(tmp_path), final_eval_batches=0)
    trainer = Trainer(cfg)
    history = trainer.fit(progress=False)
    assert history["val_step"] == [0, 3, 5] and len(history["train_loss"]) == 6
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    *rows, final = rows
    assert [r["step"] for r in rows] == list(range(6))
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "ms_per_step"} <= rows[0].keys()
    # after the last step, the whole validation split (final_eval_batches=0): every batch of it
    val = trainer.val_loader
    assert final == trainer.final and final["step"] == 6 and final["final_val_tokens"] == len(val) * 2 * 16
    assert len(val) > 1 and final["final_val_loss"] == pytest.approx(trainer.evaluate(len(val)), rel=1e-12)
    assert final["final_val_loss"] != pytest.approx(trainer.evaluate(1), rel=1e-6)
    assert "val_loss" in rows[3] and "val_loss" not in rows[2]
    assert rows[0]["lr"] == pytest.approx(RunConfig().max_lr / 2)  # warmup
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert (tmp_path / "run" / "ckpt.pt").exists()


def test_resume_in_process_is_bit_identical(tmp_path):
    straight = Trainer(tiny_run(tmp_path / "a"))
    straight.fit(progress=False)
    first = Trainer(tiny_run(tmp_path / "b"))
    first.fit(until=4, progress=False)
    path = first.save()
    resumed = Trainer.resume(path)
    assert resumed.step == 4
    resumed.fit(progress=False)
    assert max_diff(params(straight.model), params(resumed.model)) == 0.0
    assert resumed.history["train_loss"] == straight.history["train_loss"]


def logged_steps(run_dir) -> list[int]:
    """The steps of metrics.jsonl's training records (not the final evaluation's)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "loss" in r]


def test_resume_after_sigkill_is_bit_identical_and_logs_each_step_once(tmp_path):
    cfg = tiny_run(tmp_path / "killed", max_steps=8, checkpoint_interval=3)
    script = textwrap.dedent(f"""
        import os, signal
        from lessons_lib.run import RunConfig, Trainer
        step = Trainer.next_step
        def killed_in_step_5(self):
            if self.step == 5:  # checkpoint at step 3; steps 3 and 4 are logged, then lost
                os.kill(os.getpid(), signal.SIGKILL)
            return step(self)
        Trainer.next_step = killed_in_step_5
        Trainer(RunConfig(**{cfg.__dict__!r})).fit(progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ}, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    run_dir = tmp_path / "killed" / "run"
    assert logged_steps(run_dir) == [0, 1, 2, 3, 4]
    resumed = Trainer.resume(run_dir / "ckpt.pt")
    assert resumed.step == 3
    resumed.fit(progress=False)
    straight = Trainer(tiny_run(tmp_path / "straight", max_steps=8, checkpoint_interval=3))
    straight.fit(progress=False)
    assert max_diff(params(straight.model), params(resumed.model)) == 0.0
    assert logged_steps(run_dir) == list(range(8))  # steps 3 and 4 replayed, logged once


def test_resume_from_an_earlier_checkpoint_replaces_the_later_records(tmp_path):
    first = Trainer(tiny_run(tmp_path))
    first.fit(until=3, progress=False)
    early = first.save(tmp_path / "run" / "step3.pt")
    first.fit(progress=False)
    run_dir = tmp_path / "run"
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "loss": 1.')  # a record cut short by a kill
    again = Trainer.resume(early)
    assert again.out_dir == run_dir  # the checkpoint's folder: its own run
    again.fit(progress=False)
    assert logged_steps(run_dir) == list(range(6))
    assert max_diff(params(first.model), params(again.model)) == 0.0


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(tiny_run(tmp_path, checkpoint_interval=2))
    trainer.fit(until=2, progress=False)
    ckpt = tmp_path / "run" / "ckpt.pt"
    good = ckpt.read_bytes()
    with torch.no_grad():
        trainer.model.transformer.ln_f.weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="loss became nan at step 2") as err:
        trainer.fit(progress=False)
    assert f"Training stopped; the last checkpoint, {ckpt}, is from step 2." in str(err.value)
    assert ckpt.read_bytes() == good


def test_an_update_from_non_finite_gradients_is_never_applied_nor_saved(tmp_path):
    """The loss is finite but the gradients are not: before the check ran on the update's result,
    this step wrote NaN into the weights and the next checkpoint saved them."""
    trainer = Trainer(tiny_run(tmp_path, checkpoint_interval=1))
    trainer.fit(until=2, progress=False)
    ckpt = tmp_path / "run" / "ckpt.pt"
    good, before = ckpt.read_bytes(), params(trainer.model)
    trainer.model.transformer.wte.weight.register_hook(lambda g: g * float("inf"))
    diverged = r"gradient norm became (nan|inf) at step 2 \(loss "
    with pytest.raises(TrainingDivergedError, match=diverged) as err:
        trainer.fit(progress=False)
    assert "the parameters were not updated" in str(err.value) and "is from step 2" in str(err.value)
    assert max_diff(before, params(trainer.model)) == 0.0
    assert ckpt.read_bytes() == good
    with torch.no_grad():  # a diverged model is not saved, whoever asks
        trainer.model.lm_head.weight[0, 0] = float("inf")
    with pytest.raises(CheckpointError, match="transformer.wte.weight hold NaN or infinite values"):
        trainer.save()
    assert ckpt.read_bytes() == good


def test_resume_refuses_a_setting_fixed_for_the_run(tmp_path):
    first = Trainer(tiny_run(tmp_path))
    first.fit(until=2, progress=False)
    path = first.save()
    with pytest.raises(ValueError, match=r"Cannot resume .* batch_size=4 \(saved: 2\).*fixed for a run"):
        Trainer.resume(path, batch_size=4)
    same = Trainer.resume(path, batch_size=2, max_steps=8, eval_interval=4)  # same value; resumable ones
    assert (same.cfg.max_steps, same.cfg.eval_interval, same.step) == (8, 4, 2)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0."),
        ({"total_batch_tokens": -512}, "total_batch_tokens must be an integer >= 0, got -512."),
        ({"max_steps": 0}, "max_steps must be a positive integer, got 0."),
        ({"max_steps": 2.5}, "max_steps must be a positive integer, got 2.5."),
        ({"max_lr": 0.0}, "max_lr must be a number > 0, got 0.0."),
        ({"max_lr": float("nan")}, "max_lr must be a number > 0, got nan."),
        ({"min_lr": -1e-4}, "min_lr must be a number >= 0, got -0.0001."),
        ({"max_lr": 1e-3, "min_lr": 1e-2}, "min_lr=0.01 must be <= max_lr=0.001: the learning rate decays"),
        ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0, got -1."),
        ({"weight_decay": -0.1}, "weight_decay must be a number >= 0, got -0.1."),
        ({"grad_clip": -1.0}, "grad_clip must be a number >= 0, got -1.0."),
        ({"eval_interval": -1}, "eval_interval must be an integer >= 0, got -1."),
        ({"eval_batches": 0}, "eval_batches must be a positive integer, got 0."),
        ({"checkpoint_interval": -5}, "checkpoint_interval must be an integer >= 0, got -5."),
        ({"seed": -1}, "seed must be an integer in [0, 4,294,967,295], got -1."),
    ],
)  # fmt: skip
def test_run_config_refuses_values_out_of_range_naming_the_range(setting, message):
    with pytest.raises(UserError) as err:
        RunConfig(**setting)
    assert str(err.value).startswith(message)


def test_run_config_documents_every_setting():
    from dataclasses import fields

    assert all(f.metadata["help"] for f in fields(RunConfig))


def test_weights_only_checkpoint_cannot_resume(tmp_path):
    save_checkpoint(tmp_path / "w.pt", GPT(GPTConfig.from_preset("cpu-tiny")))
    with pytest.raises(CheckpointError, match="holds weights only"):
        Trainer.resume(tmp_path / "w.pt")


def forge(path, source, model=None, **changes):
    """A copy of the checkpoint ``source`` with some of its entries replaced (and a valid checksum)."""
    state = load_checkpoint(source)
    weights = model or GPT(GPTConfig.from_dict(state["config"]))
    if model is None:
        weights.load_state_dict(state["model"])
    extra = {k: v for k, v in state.items() if k not in ("model", "config")}
    for key, value in changes.items():
        if value is None:
            del extra[key]
        elif isinstance(value, dict):
            extra[key] = {**extra[key], **value}
        else:
            extra[key] = value
    return save_checkpoint(path, weights, **extra)


def test_resume_loads_weights_through_the_one_checked_loader(tmp_path):
    first = Trainer(tiny_run(tmp_path))
    path = first.save()
    other = GPT(GPTConfig(block_size=64, vocab_size=50257, n_layer=1, n_head=2, n_embd=32))
    with pytest.raises(CheckpointError, match=r"holds a custom model, but this one is cpu-tiny \(n_layer 1 "):
        Trainer.resume(forge(tmp_path / "other.pt", path, model=other))
    with pytest.raises(CheckpointError, match=r"run state does not fit this run \(KeyError: 'optimizer'\)"):
        Trainer.resume(forge(tmp_path / "partial.pt", path, optimizer=None))


def test_resume_writes_where_the_user_says_never_where_the_file_says(tmp_path):
    """A downloaded checkpoint names another run's folder as its out_dir: that folder stays untouched."""
    victim = Trainer(tiny_run(tmp_path / "victim"))
    victim.fit(until=2, progress=False)
    victim_files = {p.name: p.read_bytes() for p in victim.out_dir.iterdir()}
    downloaded = tmp_path / "downloads" / "ckpt.pt"
    downloaded.parent.mkdir()
    shutil.copy(victim.out_dir / "ckpt.pt", downloaded)
    assert load_checkpoint(downloaded)["run_config"]["out_dir"] == str(victim.out_dir)
    resumed = Trainer.resume(downloaded, max_steps=3)
    assert resumed.out_dir == downloaded.parent
    resumed.fit(progress=False)
    elsewhere = Trainer.resume(downloaded, out_dir=str(tmp_path / "mine"), max_steps=6)
    elsewhere.fit(progress=False)
    assert {p.name: p.read_bytes() for p in victim.out_dir.iterdir()} == victim_files
    assert load_checkpoint(downloaded)["step"] == 3
    assert load_checkpoint(tmp_path / "mine" / "ckpt.pt")["step"] == 6
    with pytest.raises(UserError, match=r"victim/run already holds a run \(ckpt.pt, metrics.jsonl\)"):
        Trainer.resume(downloaded, out_dir=str(victim.out_dir)).fit(progress=False)
    assert {p.name: p.read_bytes() for p in victim.out_dir.iterdir()} == victim_files


def test_resume_refuses_a_data_folder_that_is_not_here(tmp_path):
    path = Trainer(tiny_run(tmp_path)).save()
    gone = tmp_path / "shards_elsewhere"
    with pytest.raises(UserError, match=f"was trained on the shards in {gone}, which is not a folder here"):
        Trainer.resume(forge(tmp_path / "f.pt", path, run_config={"data": str(gone)}))


def test_a_new_run_refuses_a_folder_that_holds_a_run(tmp_path):
    Trainer(tiny_run(tmp_path, max_steps=2)).fit(progress=False)
    run_dir = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(UserError) as err:
        Trainer(tiny_run(tmp_path, max_steps=2)).fit(progress=False)
    assert str(err.value) == (
        f"{run_dir} already holds a run (ckpt.pt, metrics.jsonl) that this one would overwrite: continue it "
        f"with --resume {run_dir / 'ckpt.pt'} (Trainer.resume), or choose another --out-dir (out_dir), or "
        "delete that folder."
    )
    (run_dir / "ckpt.pt").unlink()  # a run killed before its first checkpoint left its metrics
    with pytest.raises(UserError, match=r"holds a run \(metrics.jsonl\) .*: it has no checkpoint to resume"):
        Trainer(tiny_run(tmp_path, max_steps=2)).save()
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == {
        k: v for k, v in before.items() if k != "ckpt.pt"
    }


def test_a_run_saves_at_its_end_without_a_checkpoint_interval(tmp_path):
    trainer = Trainer(tiny_run(tmp_path, checkpoint_interval=0))
    trainer.fit(until=2, progress=False)
    assert load_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == 2
    trainer.fit(progress=False)
    assert load_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == 6


def test_a_crash_in_the_final_evaluation_keeps_the_run(tmp_path, monkeypatch):
    trainer = Trainer(tiny_run(tmp_path, checkpoint_interval=0))
    evaluate = Trainer.evaluate

    def crash_at_the_last_step(self):
        if self.step == self.cfg.max_steps - 1:
            raise RuntimeError("out of memory in the final evaluation")
        return evaluate(self)

    monkeypatch.setattr(Trainer, "evaluate", crash_at_the_last_step)
    with pytest.raises(RuntimeError, match="final evaluation"):
        trainer.fit(progress=False)
    monkeypatch.undo()
    resumed = Trainer.resume(tmp_path / "run" / "ckpt.pt")
    assert resumed.step == 5
    resumed.fit(progress=False)
    straight = Trainer(tiny_run(tmp_path / "straight"))
    straight.fit(progress=False)
    assert max_diff(params(straight.model), params(resumed.model)) == 0.0


def sigint_after_step(monkeypatch, k):
    """Ctrl-C arrives as step ``k`` ends (signal.raise_signal: the real signal, handled by the trainer)."""
    step = Trainer.next_step

    def next_step(self):
        metrics = step(self)
        if metrics["step"] == k:
            signal.raise_signal(signal.SIGINT)
        return metrics

    monkeypatch.setattr(Trainer, "next_step", next_step)


def test_ctrl_c_saves_after_the_step_and_resumes_bit_identically(tmp_path, monkeypatch, capfd):
    sigint_after_step(monkeypatch, 2)
    trainer = Trainer(tiny_run(tmp_path))
    ckpt = tmp_path / "run" / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt) as err:
        trainer.fit(progress=False)
    assert str(err.value) == (
        f"interrupted at step 3, saved to {ckpt}; continue with: python -m lessons_lib.train --resume {ckpt}"
    )
    assert "Ctrl-C: stopping after this step" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    monkeypatch.undo()
    resumed = Trainer.resume(ckpt)
    assert resumed.step == 3
    resumed.fit(progress=False)
    straight = Trainer(tiny_run(tmp_path / "straight"))
    straight.fit(progress=False)
    assert max_diff(params(straight.model), params(resumed.model)) == 0.0
    assert logged_steps(tmp_path / "run") == list(range(6))


def test_a_second_ctrl_c_stops_at_once_and_says_what_was_kept(tmp_path, monkeypatch):
    trainer = Trainer(tiny_run(tmp_path, checkpoint_interval=2))
    trainer.fit(until=2, progress=False)
    step = Trainer.next_step

    def interrupted_in_step_3(self):
        if self.step == 3:
            raise KeyboardInterrupt  # inside the step: its state is half made
        return step(self)

    monkeypatch.setattr(Trainer, "next_step", interrupted_in_step_3)
    ckpt = tmp_path / "run" / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt) as err:
        trainer.fit(progress=False)
    assert str(err.value) == (
        f"stopped at once after 3 steps, the next one half done and lost; the last checkpoint, {ckpt}, is "
        f"from step 2; continue from it with --resume {ckpt}"
    )
    assert load_checkpoint(ckpt)["step"] == 2


def test_hellaswag_every_n_steps_and_shard_data(tmp_path):
    from pathlib import Path

    shards = small_shards(tmp_path)
    mini = Path(__file__).parent / "data" / "hellaswag_mini.jsonl"
    with pytest.raises(FileNotFoundError, match="No HellaSwag file at"):  # at once, not at step 0
        Trainer(tiny_run(tmp_path, hellaswag_interval=3, hellaswag_data=str(tmp_path / "missing.jsonl")))
    trainer = Trainer(tiny_run(tmp_path, data=shards, hellaswag_interval=3,
                               hellaswag_data=str(mini)))  # fmt: skip
    trainer.fit(progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scored = {r["step"]: r["hellaswag"] for r in rows if "hellaswag" in r}
    assert sorted(scored) == [0, 3, 5]
    assert all(r["n"] == 8 and 0.0 <= r["acc_norm"] <= 1.0 for r in scored.values())


def test_monitor_records_during_training_and_resumes(tmp_path):
    trainer = Trainer(tiny_run(tmp_path, monitor_interval=2, checkpoint_interval=3))
    trainer.fit(until=3, progress=False)
    resumed = Trainer.resume(tmp_path / "run" / "ckpt.pt")
    resumed.fit(progress=False)
    assert resumed.monitor.state_dict()["logits"]["step"] == [0, 2, 4]
    assert len(resumed.monitor.state_dict()["grads"]["step"]) == 3


def test_fp64_run_keeps_float64_everywhere(tmp_path):
    """precision="fp64" with torch's default dtype left at float32: weights, optimizer state, losses,
    the monitor and HellaSwag all stay float64 (the CI-size lessons train this way)."""
    from pathlib import Path

    assert torch.get_default_dtype() == torch.float32
    shards = small_shards(tmp_path)
    mini = Path(__file__).parent / "data" / "hellaswag_mini.jsonl"
    cfg = tiny_run(tmp_path, data=shards, precision="fp64", max_steps=3,
                   hellaswag_interval=2, hellaswag_data=str(mini), monitor_interval=1)  # fmt: skip
    trainer = Trainer(cfg)
    history = trainer.fit(progress=False)
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float64}
    exp_avg = [s["exp_avg"] for s in trainer.optimizer.state.values()]
    assert exp_avg and {t.dtype for t in exp_avg} == {torch.float64}
    assert len(history["train_loss"]) == 3 and all(math.isfinite(v) for v in history["train_loss"])
    assert trainer.monitor.logits["step"] == [0, 1, 2]
    assert trainer.hellaswag().n == 8


def test_embedding_init_normal_is_gpt2s_and_cooccurrence_sets_the_frequent_rows(tmp_path):
    from lessons_lib.data import shakespeare_tokens, train_val_split
    from lessons_lib.embedding_init import cooccurrence_embedding
    from lessons_lib.utils import seed_everything

    normal = Trainer(tiny_run(tmp_path)).model
    seed_everything(RunConfig().seed)
    assert max_diff(params(normal), params(GPT(GPTConfig.from_preset("cpu-tiny")))) == 0
    counted = Trainer(tiny_run(tmp_path, embedding_init="cooccurrence", beta2=0.99))
    ids, vectors = cooccurrence_embedding(
        train_val_split(shakespeare_tokens())[0], 50257, 64, seed=RunConfig().seed
    )
    weight = counted.model.transformer.wte.weight.detach()
    assert torch.equal(weight[ids], vectors)
    others = torch.ones(50257, dtype=torch.bool)
    others[ids] = False
    assert torch.equal(weight[others], normal.transformer.wte.weight.detach()[others])
    assert counted.optimizer.param_groups[0]["betas"] == (0.9, 0.99)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"beta2": 1.0}, "beta2 must be below 1"),
        ({"beta2": -0.5}, "beta2 must be a number >= 0, got -0.5."),
        ({"embedding_init": "pmi"}, "embedding_init must be one of normal, cooccurrence, got 'pmi'."),
    ],
)
def test_run_config_refuses_an_unknown_init_or_beta2(setting, message):
    with pytest.raises(UserError, match=message):
        RunConfig(**setting)
