import dataclasses
import errno
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lessons_lib import GPT, CheckpointError, GPTConfig, load_checkpoint, load_model, save_checkpoint
from lessons_lib.assets import DiskFullError
from lessons_lib.checkpoint import load_weights

ROOT = Path(__file__).resolve().parents[1]


def tiny() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, vocab_size=100, n_layer=1, n_head=2, n_embd=16))


def test_round_trip(tmp_path):
    model = tiny()
    save_checkpoint(tmp_path / "ckpt.pt", model, step=7)
    loaded = load_model(tmp_path / "ckpt.pt")
    assert loaded.config == model.config
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    state = load_checkpoint(tmp_path / "ckpt.pt")
    assert sorted(state) == ["config", "model", "step"] and state["step"] == 7  # the checksum stays inside


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, writer):
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    state = {"model": {}, "config": {}, "payload": Exploit(marker)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    expected = "Refusing to load" if writer == "torch.save" else "not a checkpoint"  # not even a zip archive
    assert expected in message
    assert "weights_only" not in message
    assert not marker.exists()  # the payload did not run


def test_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, tiny(), step=1)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, tiny(), step=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary left behind


KILLED_MID_SAVE = """
import os, signal, sys, torch
from lessons_lib import GPT, GPTConfig, save_checkpoint
def killed(obj, f, *args, **kwargs):
    f.write(b"half a checkpoint"); f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = killed
save_checkpoint(sys.argv[1], GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=1, n_embd=8)))
"""


def test_next_save_removes_the_temporary_file_of_a_killed_save(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, tiny(), step=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([sys.executable, "-c", KILLED_MID_SAVE, str(path)], env=env)
    assert run.wait(timeout=120) == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.pt"]
    assert len(left) == 1 and left[0].startswith(f".ckpt.pt.{run.pid}.")  # what a kill leaves behind
    assert load_checkpoint(path)["step"] == 1
    alive = tmp_path / f".ckpt.pt.{os.getpid()}.abcdefgh.tmp"  # a save in progress elsewhere: kept
    other = tmp_path / ".other.pt.12345678.tmp"  # another file's: kept
    for p in (alive, other):
        p.write_bytes(b"in progress")
    save_checkpoint(path, tiny(), step=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ckpt.pt", alive.name, other.name])
    assert load_checkpoint(path)["step"] == 2


def test_flipped_bytes_in_a_weight_are_refused(tmp_path):
    model = tiny()
    with torch.no_grad():
        model.transformer.wpe.weight[3, 5] = 1234.5  # a value whose bytes we can find in the file
    path = save_checkpoint(tmp_path / "ckpt.pt", model)
    raw = bytearray(path.read_bytes())
    needle = np.float32(1234.5).tobytes()
    assert raw.count(needle) == 1
    raw[raw.index(needle)] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="is damaged: its contents differ from the checksum"):
        load_model(path)


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zip_of_text(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "hello")


@pytest.mark.parametrize(
    "make, problem",
    [(lambda p: p.write_bytes(os.urandom(4096)), "is not a checkpoint"),
     (lambda p: p.write_bytes(b""), "is empty"),
     (_truncated, "is truncated or corrupt"),
     (_zip_of_text, "is truncated or corrupt"),
     (lambda p: torch.save({"weights": torch.zeros(1)}, p), "not a lessons_lib checkpoint"),
     (lambda p: p.mkdir(), "is a folder, not a checkpoint file")],
)  # fmt: skip
def test_files_that_are_not_checkpoints_say_so(tmp_path, make, problem):
    path = tmp_path / "x.pt"
    save_checkpoint(path, tiny())
    if make is not _truncated:
        path.unlink()
    make(path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert problem in str(err.value) and "arbitrary code" not in str(err.value)
    assert "weights_only" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")


def test_checkpoint_without_a_checksum_loads_with_a_warning(tmp_path):
    model = tiny()
    torch.save({"model": model.state_dict(), "config": model.config.to_dict()}, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="has no checksum"):
        loaded = load_model(tmp_path / "old.pt")
    assert torch.equal(loaded.transformer.wte.weight, model.transformer.wte.weight)


@dataclasses.dataclass
class Settings:
    out_dir: Path
    lr: float


def test_paths_and_numpy_scalars_are_saved_as_plain_data(tmp_path):
    extra = dict(
        run_config=dataclasses.asdict(Settings(out_dir=tmp_path / "run", lr=np.float32(0.5))),
        best=np.float64(1.25), step=np.int64(3), flags=(np.bool_(True), Path("a/b")), history={"loss": [1.0]},
    )  # fmt: skip
    save_checkpoint(tmp_path / "c.pt", tiny(), **extra)
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["run_config"] == {"out_dir": str(tmp_path / "run"), "lr": 0.5}
    assert (state["best"], state["step"], state["flags"]) == (1.25, 3, (True, "a/b"))
    lr, step, flag = state["run_config"]["lr"], state["step"], state["flags"][0]
    assert (type(lr), type(step), type(flag)) == (float, int, bool)
    assert state["history"] == {"loss": [1.0]}


@pytest.mark.parametrize(
    "extra, where",
    [({"settings": Settings(Path("x"), 0.1)}, "checkpoint['settings']"),
     ({"stats": {"hist": np.zeros(3)}}, "checkpoint['stats']['hist']"),
     ({"config": {}}, "names the checkpoint uses itself")],
)  # fmt: skip
def test_data_the_loader_would_refuse_is_refused_at_save_time(tmp_path, extra, where):
    path = save_checkpoint(tmp_path / "c.pt", tiny(), step=1)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=f"^.*{where.replace('[', '.').replace(']', '.')}"):
        save_checkpoint(path, tiny(), **extra)
    assert path.read_bytes() == before  # nothing was written


@pytest.mark.parametrize("style", ["errno", "short write"])
def test_disk_full_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, style):
    path = save_checkpoint(tmp_path / "ckpt.pt", tiny(), step=1)
    before = path.read_bytes()
    real_save = torch.save

    class FullDisk:  # the file torch.save writes to; the disk fills up after 1 KB
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written <= 1024:
                return self.f.write(data)
            if style == "errno":  # what Python's file objects raise (torch wraps it in a RuntimeError)
                raise OSError(errno.ENOSPC, "No space left on device")
            raise OSError(f"{len(data)} requested and 0 written")  # numpy's tofile: no errno

        def flush(self):
            self.f.flush()

    monkeypatch.setattr(torch, "save", lambda obj, f: real_save(obj, FullDisk(f)))
    if style == "short write":
        monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(DiskFullError, match="The disk is full.*; the previous ckpt.pt is intact"):
        save_checkpoint(path, tiny(), step=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1


def test_a_checkpoint_of_another_size_is_refused_in_one_line(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", GPT(GPTConfig.from_preset("cpu-tiny", vocab_size=100)))
    state = load_checkpoint(path)
    model = GPT(GPTConfig.from_preset("cpu-small", vocab_size=100))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_weights(model, state, "c.pt")
    message = str(err.value)
    assert "\n" not in message
    assert "c.pt holds a cpu-tiny model, but this one is cpu-small (n_layer 2 vs 4, n_head 2 vs 4" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    same = GPT(GPTConfig.from_preset("cpu-tiny", vocab_size=100))
    assert load_weights(same, state, "c.pt") is same


def test_a_diverged_model_is_never_saved(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt.pt", tiny(), step=1)
    before = path.read_bytes()
    model = tiny()
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[3, 4] = float("nan")
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, model, step=2)
    assert str(err.value) == (
        f"Not saving {path}: transformer.h.0.mlp.c_fc.weight hold NaN or infinite values (the model "
        "diverged); the previous ckpt.pt is intact. A lower learning rate, or a longer warmup, may help."
    )
    assert path.read_bytes() == before


def test_an_unwritable_folder_is_named_and_the_previous_checkpoint_kept(tmp_path, monkeypatch):
    (tmp_path / "notes").write_text("a file")
    with pytest.raises(FileExistsError, match="notes is a file, not a folder; nothing was written"):
        save_checkpoint(tmp_path / "notes" / "ckpt.pt", tiny())
    path = save_checkpoint(tmp_path / "ckpt.pt", tiny(), step=1)

    def refused(*args, dir, **kwargs):  # what a read-only folder answers (root would not be refused)
        raise PermissionError(errno.EACCES, "Permission denied", dir)

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(
        PermissionError, match="Cannot write .*ckpt.pt: Permission denied; the previous ckpt.pt is"
    ):
        save_checkpoint(path, tiny(), step=2)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
