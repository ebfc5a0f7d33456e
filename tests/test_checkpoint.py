import os

import pytest
import torch

from lessons_lib import GPT, CheckpointError, GPTConfig, load_checkpoint, load_model, save_checkpoint


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
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 7


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="Refusing to load"):
        load_checkpoint(path)


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


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a lessons_lib checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_plain_extra_data_round_trips(tmp_path):
    save_checkpoint(tmp_path / "c.pt", tiny(), history={"loss": [1.0, 0.5]})
    assert load_checkpoint(tmp_path / "c.pt")["history"] == {"loss": [1.0, 0.5]}
