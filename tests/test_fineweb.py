import importlib.util
import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from lessons_lib import EOT_TOKEN, get_encoding
from lessons_lib.assets import AssetUnavailableError
from lessons_lib.fineweb import (
    PROGRESS_FILE,
    ShardedDataLoader,
    ShardError,
    file_documents,
    hub_documents,
    main,
    prepare_shards,
)

SHARD = 1000


def _docs(n: int = 60, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = "the a cat sat on mat of learning gradient token model 🙂 naïve\n data".split(" ")
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 400))) for _ in range(n)]


def _stream(paths) -> np.ndarray:
    return np.concatenate([np.load(p) for p in paths])


def _expected(docs) -> list[int]:
    enc = get_encoding()
    return [t for d in docs for t in [EOT_TOKEN, *enc.encode_ordinary(d)]]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """One uninterrupted preparation, shared by the tests that only read it."""
    docs = _docs()
    out = tmp_path_factory.mktemp("clean")
    return docs, prepare_shards(docs, out, SHARD, workers=1, progress=False)


def test_shards_are_full_but_the_last_and_val_comes_first(clean):
    docs, paths = clean
    assert len(paths) > 3
    assert paths[0].name == "fineweb_val_000000.npy"
    assert [p.name for p in paths[1:3]] == ["fineweb_train_000001.npy", "fineweb_train_000002.npy"]
    sizes = [len(np.load(p)) for p in paths]
    assert sizes[:-1] == [SHARD] * (len(paths) - 1) and 0 < sizes[-1] <= SHARD
    assert all(np.load(p).dtype == np.uint16 for p in paths)
    assert set(paths[0].parent.glob("*.npy")) == set(paths)


def test_round_trip_with_eot_before_every_document(clean):
    docs, paths = clean
    stream = _stream(paths)
    assert stream.tolist() == _expected(docs)
    starts = np.flatnonzero(stream == EOT_TOKEN)
    assert len(starts) == len(docs) and starts[0] == 0
    pieces = np.split(stream, starts[1:])
    assert [get_encoding().decode(p[1:].tolist()) for p in pieces] == docs


def test_worker_pool_makes_the_same_shards(clean, tmp_path):
    docs, paths = clean
    pooled = prepare_shards(docs, tmp_path, SHARD, workers=2, progress=False)
    assert [p.name for p in pooled] == [p.name for p in paths]
    assert np.array_equal(_stream(pooled), _stream(paths))


SPAWNED = """
import multiprocessing, sys
import numpy as np
from lessons_lib.fineweb import prepare_shards

if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")  # as on macOS and Windows
    docs = [f"Document {i}: " + "lorem ipsum " * (i % 7 + 1) for i in range(60)]
    paths = prepare_shards(docs, sys.argv[1], int(sys.argv[2]), workers=2, progress=False)
    np.save(sys.argv[3], np.concatenate([np.load(p) for p in paths]))
"""


def test_worker_pool_works_when_processes_start_by_spawn(tmp_path):
    """macOS and Windows start a pool's workers with ``spawn`` (a fresh interpreter that must import
    what it runs), where Linux forks; forced here, the pool gives the same tokens as one process."""
    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED)
    out = tmp_path / "stream.npy"
    subprocess.run([sys.executable, script, tmp_path / "shards", "500", out], check=True, timeout=120)
    docs = [f"Document {i}: " + "lorem ipsum " * (i % 7 + 1) for i in range(60)]
    assert np.load(out).tolist() == _expected(docs)


def test_resume_after_a_crash_matches_a_clean_run(clean, tmp_path):
    docs, paths = clean

    def crashing(n):
        yield from docs[:n]
        raise KeyboardInterrupt  # stands in for a kill between two documents

    with pytest.raises(KeyboardInterrupt):
        prepare_shards(crashing(len(docs) // 2), tmp_path, SHARD, workers=1, progress=False)
    written = sorted(tmp_path.glob("*.npy"))
    assert 0 < len(written) < len(paths)
    assert all(len(np.load(p)) == SHARD for p in written)  # complete shards only
    state = json.loads((tmp_path / PROGRESS_FILE).read_text())
    assert state["next_shard"] == len(written) and state["doc_offset"] > 0  # stopped inside a document
    (tmp_path / ".fineweb_train_000009.npy.abc.tmp").write_bytes(b"half")  # as a SIGKILL leaves it

    consumed = []
    resumed = prepare_shards(
        (consumed.append(d) or d for d in docs), tmp_path, SHARD, workers=1, progress=False
    )
    assert len(consumed) == len(docs)  # the finished documents were skipped, not tokenized again
    assert [p.name for p in resumed] == [p.name for p in paths]
    assert np.array_equal(_stream(resumed), _stream(paths))
    assert not list(tmp_path.glob(".*.tmp"))
    again = prepare_shards(iter(()), tmp_path, SHARD, workers=1, progress=False)  # complete: no work
    assert again == resumed


def test_resume_refuses_other_settings(tmp_path):
    prepare_shards(_docs(5), tmp_path, SHARD, workers=1, progress=False)
    with pytest.raises(ValueError, match="shard_size=1000, not 500"):
        prepare_shards(_docs(5), tmp_path, 500, workers=1, progress=False)


def test_command_over_jsonl_with_limit(tmp_path, capsys):
    docs = _docs(40, seed=1)
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)) + "\n")
    paths = main(["--out", str(tmp_path / "out"), "--input", str(src), "--shard-size", "1_000",
                  "--workers", "1", "--limit-docs", "30", "--no-progress"])  # fmt: skip
    assert _stream(paths).tolist() == _expected(docs[:30])
    assert f"{len(paths)} shard(s)" in capsys.readouterr().out


def test_text_files_are_one_document_each(tmp_path):
    texts = ["first\n\nstill first", "second"]
    for name, text in zip(["a.txt", "b.txt"], texts, strict=True):
        (tmp_path / name).write_text(text)
    assert list(file_documents([tmp_path / "b.txt", tmp_path / "a.txt"])) == texts[::-1]
    assert list(file_documents([tmp_path])) == texts  # a folder: its files, sorted


@pytest.mark.parametrize(
    "line, problem",
    [('{"text": "ok"', "line 2: not valid JSON"), ('{"body": "x"}', "line 2 is not a JSON object"),
     ('["x"]', "line 2 is not a JSON object"), ('{"text": 3}', 'line 2: "text" is a int')],
)  # fmt: skip
def test_jsonl_bad_line_is_named(tmp_path, line, problem):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(ValueError, match=problem):
        list(file_documents([src]))


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl does not exist"):
        list(file_documents([tmp_path / "nope.jsonl"]))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ValueError, match="x.csv is not one of .txt, .jsonl, .parquet"):
        list(file_documents([tmp_path / "x.csv"]))
    with pytest.raises(ValueError, match="empty"):
        prepare_shards([], tmp_path / "out", SHARD, workers=1, progress=False)
    with pytest.raises(NotADirectoryError, match="x.csv is a file; give a folder"):
        prepare_shards(["doc"], tmp_path / "x.csv", SHARD, workers=1, progress=False)


def test_parquet_text_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"text": ["one", "two", "three"], "score": [1, 2, 3]}), tmp_path / "d.parquet")
    assert list(file_documents([tmp_path / "d.parquet"])) == ["one", "two", "three"]
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "e.parquet")
    with pytest.raises(ValueError, match='no "text" column'):
        list(file_documents([tmp_path / "e.parquet"]))
    pq.write_table(pa.table({"text": ["x", None]}), tmp_path / "f.parquet")
    with pytest.raises(ValueError, match='f.parquet row 1: "text" is None, not a string'):
        list(file_documents([tmp_path / "f.parquet"]))


def test_hub_offline_suggests_local_files(tmp_path, capsys):
    with pytest.raises(AssetUnavailableError, match="--input"):
        next(hub_documents())  # LESSONS_OFFLINE=1 in tests; without `datasets` it fails the same way
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--workers", "1"])
    assert "from local files instead: python -m lessons_lib.fineweb --out" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.npy"))


# --- loader ------------------------------------------------------------------------------------


def _write(d, name, tokens, dtype=np.uint16):
    d.mkdir(exist_ok=True)
    np.save(d / name, np.asarray(tokens, dtype=dtype))


@pytest.fixture
def counting(tmp_path):
    """Shards holding consecutive integers, so a batch tells where it came from."""
    _write(tmp_path, "fineweb_val_000000.npy", np.arange(60000, 60100))
    for i, (a, b) in enumerate([(0, 1000), (1000, 1700), (1700, 2900)], start=1):
        _write(tmp_path, f"fineweb_train_{i:06d}.npy", np.arange(a, b))
    return tmp_path


def test_batches_shifted_by_one_and_val_split(counting):
    x, y = ShardedDataLoader(2, 5, counting).next_batch()
    assert x.dtype == y.dtype == torch.int64 and x.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert torch.equal(y, x + 1)
    assert ShardedDataLoader(2, 5, counting, "val").next_batch()[0][0, 0].item() == 60000


def test_ranks_split_without_overlap_or_gaps_across_shards(counting):
    B, T, P = 2, 8, 3
    loaders = [ShardedDataLoader(B, T, counting, process_rank=r, num_processes=P) for r in range(P)]
    per_shard = [(n - 1) // (B * T * P) for n in (1000, 700, 1200)]
    assert len(loaders[0]) == sum(per_shard)
    starts = []
    for _ in range(2 * sum(per_shard) + 3):  # two epochs and a bit: wraps to the first shard
        joined = torch.cat([ld.next_batch()[0].flatten() for ld in loaders])
        assert torch.equal(joined, torch.arange(joined[0], joined[0] + B * T * P))
        starts.append(joined[0].item())
        assert len({(ld.shard, ld.position) for ld in loaders}) == 1
    shard_starts = [0, 1000, 1700]
    expected = [s + k * B * T * P for s, n in zip(shard_starts, per_shard, strict=True) for k in range(n)]
    assert starts == (expected * 3)[: len(starts)]


def test_state_round_trip(counting):
    a = ShardedDataLoader(2, 8, counting)
    for _ in range(70):  # into the second shard
        a.next_batch()
    assert a.state_dict()["shard"] == 1
    b = ShardedDataLoader(2, 8, counting)
    b.load_state_dict(a.state_dict())
    for _ in range(40):
        assert torch.equal(a.next_batch()[0], b.next_batch()[0])
    with pytest.raises(ShardError, match="does not fit the 3 shard"):
        b.load_state_dict({"shard": 7, "position": 0})


def test_missing_shards_say_how_to_make_them(tmp_path):
    with pytest.raises(ShardError, match="python -m lessons_lib.fineweb --out"):
        ShardedDataLoader(2, 4, tmp_path / "absent")
    _write(tmp_path, "fineweb_val_000000.npy", np.arange(100))
    with pytest.raises(ShardError, match="No train shards .* python -m lessons_lib.fineweb"):
        ShardedDataLoader(2, 4, tmp_path)
    with pytest.raises(ValueError, match="split='test'"):
        ShardedDataLoader(2, 4, tmp_path, "test")


@pytest.mark.parametrize(
    "corrupt, problem",
    [(lambda p: _write(p.parent, p.name, np.arange(100), np.int32), "int32 array of shape"),
     (lambda p: _write(p.parent, p.name, np.zeros((10, 10))), "not a 1-D uint16"),
     (lambda p: p.write_bytes(p.read_bytes()[:150]), "not a readable .npy shard"),
     (lambda p: p.write_bytes(b"garbage" * 20), "not a readable .npy shard"),
     (lambda p: _write(p.parent, p.name, np.arange(20)), "has 20 tokens but one batch needs 33")],
)  # fmt: skip
def test_corrupt_or_small_shard_is_named(counting, corrupt, problem):
    path = counting / "fineweb_train_000002.npy"
    corrupt(path)
    with pytest.raises(ShardError, match=problem) as err:
        ShardedDataLoader(4, 8, counting)
    assert "fineweb_train_000002.npy" in str(err.value)


@pytest.mark.parametrize("name", ["doc.txt", "docs.jsonl"])
def test_files_that_are_not_utf8_name_the_file_and_line(tmp_path, name):
    src = tmp_path / name
    src.write_bytes(b'{"text": "one"}\n{"text": "two"}\n{"text": "caf\xe9"}\n')  # latin-1 on line 3
    with pytest.raises(ValueError, match=f"{name} line 3 is not UTF-8 text \\(its byte 14 is 0xe9: invalid"):
        list(file_documents([src]))


def test_a_utf8_bom_is_not_part_of_the_text(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "first"}\n')  # as Windows editors save it
    (tmp_path / "b.txt").write_bytes("\ufeffsecond".encode())
    assert list(file_documents([tmp_path])) == ["first", "second"]


@pytest.mark.parametrize(
    "damage, problem",
    [(lambda t: t[: len(t) // 2], "JSONDecodeError"), (lambda t: "", "JSONDecodeError"),
     (lambda t: t.replace('"next_shard": ', '"next_shard": "x", "_": '), "wrong values for next_shard"),
     (lambda t: "[1, 2]", "TypeError"), (lambda t: t.replace('"tokens"', '"tokenz"'), "KeyError: 'tokens'"),
     (lambda t: "caf\xe9", "UnicodeDecodeError"),
     (lambda t: t.replace('"documents": ', '"documents": -'), "wrong values for documents")],
)  # fmt: skip
def test_a_damaged_progress_file_is_named_and_the_shards_kept(tmp_path, damage, problem):
    prepare_shards(_docs(5), tmp_path, SHARD, workers=1, progress=False)
    progress = tmp_path / PROGRESS_FILE
    progress.write_bytes(damage(progress.read_text()).encode("latin-1"))
    shards = {p: p.read_bytes() for p in tmp_path.glob("*.npy")}
    with pytest.raises(ValueError, match=f"progress.json is damaged, truncated or edited \\({problem}"):
        prepare_shards(_docs(5), tmp_path, SHARD, workers=1, progress=False)
    assert shards and {p: p.read_bytes() for p in tmp_path.glob("*.npy")} == shards


def test_a_file_that_is_not_parquet_is_named(tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "d.parquet").write_text('{"text": "I am JSON"}\n')
    with pytest.raises(ValueError, match="d.parquet is not a readable parquet file"):
        list(file_documents([tmp_path / "d.parquet"]))


def test_parquet_without_pyarrow_is_refused_before_any_document(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "b.parquet").write_bytes(b"PAR1")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else find_spec(name, *a)
    )
    with pytest.raises(AssetUnavailableError, match=r"needs pyarrow: pip install -e '.\[data\]'"):
        next(file_documents([tmp_path]))  # a.txt comes first, but nothing is read


def test_shards_without_a_progress_file_are_not_overwritten(tmp_path):
    prepare_shards(_docs(5), tmp_path, SHARD, workers=1, progress=False)
    (tmp_path / PROGRESS_FILE).unlink()
    shards = {p: p.read_bytes() for p in tmp_path.glob("*.npy")}
    with pytest.raises(ValueError, match="holds shards but no progress.json"):
        prepare_shards(_docs(3, seed=1), tmp_path, SHARD, workers=1, progress=False)
    assert {p: p.read_bytes() for p in tmp_path.glob("*.npy")} == shards
