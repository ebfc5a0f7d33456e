import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lessons_lib import GPT, GPTConfig
from lessons_lib.run import RunConfig, Trainer, TrainingDivergedError

TINY = {"model": "cpu-tiny", "batch_size": 2, "seq_len": 16, "max_steps": 6, "warmup_steps": 2,
        "eval_interval": 3, "eval_batches": 1, "precision": "fp32"}  # fmt: skip


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


def test_fit_logs_metrics_and_checkpoints(tmp_path):
    trainer = Trainer(tiny_run(tmp_path, checkpoint_interval=2))
    history = trainer.fit(progress=False)
    assert history["val_step"] == [0, 3, 5] and len(history["train_loss"]) == 6
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(6))
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "ms_per_step"} <= rows[0].keys()
    assert "val_loss" in rows[3] and "val_loss" not in rows[2]
    assert rows[0]["lr"] == pytest.approx(1e-3 / 2)  # warmup
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


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    cfg = tiny_run(tmp_path / "killed", max_steps=8, checkpoint_interval=3)
    script = textwrap.dedent(f"""
        import os, signal
        from lessons_lib.run import RunConfig, Trainer
        trainer = Trainer(RunConfig(**{cfg.__dict__!r}))
        trainer.fit(until=5, progress=False)  # checkpoints at step 3; steps 4-5 are lost
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ}, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    resumed = Trainer.resume(tmp_path / "killed" / "run" / "ckpt.pt")
    assert resumed.step == 3
    resumed.fit(progress=False)
    straight = Trainer(tiny_run(tmp_path / "straight", max_steps=8, checkpoint_interval=3))
    straight.fit(progress=False)
    assert max_diff(params(straight.model), params(resumed.model)) == 0.0


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(tiny_run(tmp_path, checkpoint_interval=2))
    trainer.fit(until=2, progress=False)
    good = (tmp_path / "run" / "ckpt.pt").read_bytes()
    with torch.no_grad():
        trainer.model.transformer.ln_f.weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="loss became nan at step 2"):
        trainer.fit(progress=False)
    assert (tmp_path / "run" / "ckpt.pt").read_bytes() == good


def test_resume_refuses_a_setting_fixed_for_the_run(tmp_path):
    first = Trainer(tiny_run(tmp_path))
    first.fit(until=2, progress=False)
    path = first.save()
    with pytest.raises(ValueError, match=r"Cannot resume .* batch_size=4 \(saved: 2\).*fixed for a run"):
        Trainer.resume(path, batch_size=4)
    same = Trainer.resume(path, batch_size=2, max_steps=8, eval_interval=4)  # same value; resumable ones
    assert (same.cfg.max_steps, same.cfg.eval_interval, same.step) == (8, 4, 2)


def test_run_config_documents_and_checks_every_setting():
    from dataclasses import fields

    assert all(f.metadata["help"] for f in fields(RunConfig))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        RunConfig(batch_size=0)
    with pytest.raises(ValueError, match="eval_interval must be >= 0"):
        RunConfig(eval_interval=-1)


def test_weights_only_checkpoint_cannot_resume(tmp_path):
    from lessons_lib import save_checkpoint

    save_checkpoint(tmp_path / "w.pt", GPT(GPTConfig.from_preset("cpu-tiny")))
    with pytest.raises(ValueError, match="holds weights only"):
        Trainer.resume(tmp_path / "w.pt")


def test_hellaswag_every_n_steps_and_shard_data(tmp_path):
    from pathlib import Path

    from lessons_lib.fineweb import prepare_shards

    docs = [f"Document {i}: " + "the quick brown fox jumps over the lazy dog. " * 20 for i in range(40)]
    prepare_shards(docs, tmp_path / "shards", shard_size=2000, workers=1, progress=False)
    mini = Path(__file__).parent / "data" / "hellaswag_mini.jsonl"
    trainer = Trainer(tiny_run(tmp_path, data=str(tmp_path / "shards"), hellaswag_interval=3,
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

    from lessons_lib.fineweb import prepare_shards

    assert torch.get_default_dtype() == torch.float32
    docs = [f"Document {i}: " + "the quick brown fox jumps over the lazy dog. " * 20 for i in range(40)]
    prepare_shards(docs, tmp_path / "shards", shard_size=2000, workers=1, progress=False)
    mini = Path(__file__).parent / "data" / "hellaswag_mini.jsonl"
    cfg = tiny_run(tmp_path, data=str(tmp_path / "shards"), precision="fp64", max_steps=3,
                   hellaswag_interval=2, hellaswag_data=str(mini), monitor_interval=1)  # fmt: skip
    trainer = Trainer(cfg)
    history = trainer.fit(progress=False)
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float64}
    exp_avg = [s["exp_avg"] for s in trainer.optimizer.state.values()]
    assert exp_avg and {t.dtype for t in exp_avg} == {torch.float64}
    assert len(history["train_loss"]) == 3 and all(math.isfinite(v) for v in history["train_loss"])
    assert trainer.monitor.logits["step"] == [0, 1, 2]
    assert trainer.hellaswag().n == 8
