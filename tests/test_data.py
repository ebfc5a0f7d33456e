import hashlib
import urllib.request

import pytest
import torch

from lessons_lib import (
    AssetUnavailableError,
    DataLoaderLite,
    lesson_file,
    load_shakespeare,
    shakespeare_tokens,
    train_val_split,
)
from lessons_lib.data import SHAKESPEARE_FILE, SHAKESPEARE_SHA256


def test_batches_are_shifted_by_one():
    tokens = torch.arange(100)
    x, y = DataLoaderLite(2, 5, tokens).next_batch()
    assert x.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert torch.equal(y, x + 1)


def test_wraps_around_at_the_end():
    loader = DataLoaderLite(2, 4, torch.arange(20))  # room for 2 batches of 8 (+1)
    firsts = [loader.next_batch()[0][0, 0].item() for _ in range(5)]
    assert firsts == [0, 8, 0, 8, 0]
    assert len(loader) == 2


def test_ranks_split_without_overlap_or_gaps():
    tokens = torch.arange(1000)
    loaders = [DataLoaderLite(2, 8, tokens, process_rank=r, num_processes=3) for r in range(3)]
    for _ in range(25):  # several wrap-arounds
        xs = [ld.next_batch()[0].flatten() for ld in loaders]
        joined = torch.cat(xs)
        assert torch.equal(joined, torch.arange(joined[0], joined[0] + 48))
    assert len({(ld.shard, ld.position) for ld in loaders}) == 1


def test_state_round_trip():
    a = DataLoaderLite(2, 4, torch.arange(50))
    a.next_batch()
    b = DataLoaderLite(2, 4, torch.arange(50))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.next_batch()[0], b.next_batch()[0])


def test_corpus_too_small_for_one_batch():
    with pytest.raises(ValueError, match=r"corpus has 10 tokens but one batch needs 33 \(B=4 x T=8"):
        DataLoaderLite(4, 8, torch.arange(10))


def test_shakespeare_is_the_canonical_file_shipped_in_the_package(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_shakespeare touched the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.delenv("LESSONS_OFFLINE", raising=False)  # online and offline read the same file
    text = load_shakespeare()
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak")
    raw = lesson_file(SHAKESPEARE_FILE).read_bytes()
    assert len(raw) == len(text) == 1_115_394
    assert hashlib.sha256(raw).hexdigest() == SHAKESPEARE_SHA256


def test_a_lesson_file_that_is_not_shipped_names_what_is():
    with pytest.raises(AssetUnavailableError, match=r"No lesson file 'nope.txt' in .*'tinyshakespeare.txt'"):
        lesson_file("nope.txt")


def test_tokens_and_split():
    tokens = shakespeare_tokens()
    assert tokens.dtype == torch.long and len(tokens) == 338_025
    train, val = train_val_split(tokens)
    assert len(train) + len(val) == len(tokens) and abs(len(val) / len(tokens) - 0.1) < 1e-3
    assert torch.equal(torch.cat([train, val]), tokens)


def test_a_list_of_in_memory_shards_is_read_in_order_and_wraps():
    shards = [torch.arange(0, 20), torch.arange(100, 117)]  # 2 batches of 8 (+1) fit, then 2
    loader = DataLoaderLite(2, 4, shards)
    firsts = [loader.next_batch()[0][0, 0].item() for _ in range(6)]
    assert firsts == [0, 8, 100, 108, 0, 8]
    assert len(loader) == 4 and loader.state_dict() == {"shard": 1, "position": 0}  # moved on
    with pytest.raises(ValueError, match=r"Shard 1 has 5 tokens but one batch needs 9"):
        DataLoaderLite(2, 4, [torch.arange(20), torch.arange(5)])
    with pytest.raises(ValueError, match="does not fit the 2 shard"):
        loader.load_state_dict({"shard": 2, "position": 0})


def test_one_tensor_is_a_single_shard():
    loader = DataLoaderLite(2, 4, torch.arange(50))
    assert len(loader.shards) == 1 and loader.state_dict() == {"shard": 0, "position": 0}
    loader.next_batch()
    assert loader.state_dict() == {"shard": 0, "position": 8}


def test_bad_batch_arguments():
    with pytest.raises(ValueError, match="B must be a positive integer, got 0"):
        DataLoaderLite(0, 4, torch.arange(50))
    with pytest.raises(ValueError, match=r"process_rank=2 must be in \[0, num_processes=2\)"):
        DataLoaderLite(2, 4, torch.arange(50), process_rank=2, num_processes=2)
    with pytest.raises(ValueError, match="1-D stream"):
        DataLoaderLite(2, 4, torch.zeros(5, 5, dtype=torch.long))
