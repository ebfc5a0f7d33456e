"""HellaSwag: loading, rendering, and scoring with models whose answers are known in advance."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from lessons_lib import EOT_TOKEN, GPT, AssetUnavailableError, GPTConfig, get_encoding, save_checkpoint
from lessons_lib import hellaswag as hs

MINI = Path(__file__).parent / "data" / "hellaswag_mini.jsonl"
V = 50257
OFFICIAL_KEYS = {"ind", "activity_label", "ctx_a", "ctx_b", "ctx", "split", "split_type", "label",
                 "endings", "source_id"}  # fmt: skip


class PreferRows(nn.Module):
    """A stub LM that peeks at the next token: in a row starting with one of ``bonus``'s token
    sequences, the true next token gets that logit (``default`` in other rows), all others 0.
    Every token of a row then costs the same loss, ``log(e^b + V - 1) - b``."""

    def __init__(self, bonus: dict[tuple[int, ...], float], default: float = 0.0) -> None:
        super().__init__()
        self.bonus, self.default = bonus, default

    def forward(self, idx):
        B, T = idx.shape
        logits = torch.zeros(B, T, V)
        for r in range(B):
            row = tuple(idx[r].tolist())
            b = next((b for seq, b in self.bonus.items() if row[: len(seq)] == seq), self.default)
            logits[r, torch.arange(T - 1), idx[r, 1:]] = b
        return logits, None


def bonus_for_loss(loss: float) -> float:
    """The logit that makes the true token cost ``loss`` nats among V - 1 zero logits."""
    return math.log(V - 1) - math.log(math.expm1(loss))


def full_rows(ex):
    enc = get_encoding()
    return [tuple(enc.encode(ex["ctx"]) + enc.encode(" " + e)) for e in ex["endings"]]


def ending_lengths(ex):
    return [len(get_encoding().encode(" " + e)) for e in ex["endings"]]


def tiny_gpt(block_size=64, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=block_size, n_layer=1, n_head=2, n_embd=16)).eval()


@pytest.fixture(scope="module")
def examples():
    return hs.load_hellaswag(MINI)


def test_mini_file_is_in_the_official_format(examples):
    raw = [json.loads(line) for line in MINI.read_text().splitlines()]
    assert len(examples) == len(raw) == 8
    assert all(set(r) == OFFICIAL_KEYS for r in raw)
    assert sorted({ex["label"] for ex in examples}) == [0, 1, 2, 3]
    assert hs.load_hellaswag(MINI, limit=3) == examples[:3]


def test_render_masks_exactly_the_ending_tokens(examples):
    enc = get_encoding()
    for ex in examples:
        tokens, mask, label = hs.render_example(ex)
        ctx = enc.encode(ex["ctx"])
        lengths = [len(ctx) + n for n in ending_lengths(ex)]
        assert tokens.shape == mask.shape == (4, max(lengths))
        assert label == ex["label"]
        for i, ending in enumerate(ex["endings"]):
            n = lengths[i]
            assert tokens[i, : len(ctx)].tolist() == ctx
            assert tokens[i][mask[i] == 1].tolist() == enc.encode(" " + ending)
            assert mask[i, : len(ctx)].sum() == 0 and mask[i, n:].sum() == 0 and tokens[i, n:].sum() == 0
            assert enc.decode(tokens[i, :n].tolist()) == ex["ctx"] + " " + ending


def test_render_crops_the_oldest_tokens(examples):
    ex = examples[4]  # long wikiHow context
    tokens, mask, _ = hs.render_example(ex)
    cropped, cmask, _ = hs.render_example(ex, block_size=12)
    assert cropped.shape == (4, 12)
    for i, n in enumerate(int(m.nonzero().max()) + 1 for m in mask):
        keep = min(n, 12)
        assert cropped[i, :keep].tolist() == tokens[i, n - keep : n].tolist()
        assert cmask[i, :keep].tolist() == mask[i, n - keep : n].tolist()


def test_completion_losses_score_only_ending_tokens(examples):
    ex = examples[0]
    rows = full_rows(ex)
    stub = PreferRows({rows[1]: bonus_for_loss(0.5), rows[2]: bonus_for_loss(2.0)}, default=0.0)
    tokens, mask, _ = hs.render_example(ex)
    sum_loss, mean_loss = hs.completion_losses(stub, tokens, mask)
    per_token = torch.tensor([math.log(V), 0.5, 2.0, math.log(V)])
    n = torch.tensor(ending_lengths(ex), dtype=torch.float32)
    torch.testing.assert_close(mean_loss, per_token, atol=1e-4, rtol=0)
    torch.testing.assert_close(sum_loss, per_token * n, atol=1e-3, rtol=0)


@pytest.mark.parametrize("choice", ["label", 0, 3])
def test_accuracy_of_a_model_that_always_prefers_one_ending(examples, choice):
    picks = [ex["label"] if choice == "label" else choice for ex in examples]
    stub = PreferRows({full_rows(ex)[k]: 30.0 for ex, k in zip(examples, picks, strict=True)})
    result = hs.evaluate_hellaswag(stub, examples, batch_size=3, progress=False)
    expected = sum(k == ex["label"] for k, ex in zip(picks, examples, strict=True)) / len(examples)
    assert result.pred == result.pred_norm == picks
    assert result.acc == result.acc_norm == expected
    assert result.labels == [ex["label"] for ex in examples] and result.n == 8
    assert hs.evaluate_hellaswag(stub, examples, limit=5, progress=False).pred == picks[:5]


def test_acc_sums_and_acc_norm_averages(examples):
    """Short ending with costly tokens vs long ending with cheap ones: the sum picks the short
    one, the mean per token the long one."""
    bonus, short, long = {}, [], []
    for ex in examples:
        n = ending_lengths(ex)
        s, l = n.index(min(n)), n.index(max(n))
        assert n[l] > n[s]
        rows = full_rows(ex)
        bonus[rows[l]] = bonus_for_loss(1.0)
        bonus[rows[s]] = bonus_for_loss((1.0 + n[l] / n[s]) / 2)  # mean above 1, sum below n[l]
        short.append(s)
        long.append(l)
    stub = PreferRows(bonus, default=-30.0)  # the other two endings cost ~41 nats per token
    result = hs.evaluate_hellaswag(stub, examples, batch_size=8, progress=False)
    assert result.pred == short and result.pred_norm == long
    labels = [ex["label"] for ex in examples]
    assert result.acc == sum(p == y for p, y in zip(short, labels, strict=True)) / 8
    assert result.acc_norm == sum(p == y for p, y in zip(long, labels, strict=True)) / 8
    assert result.acc != result.acc_norm


def test_batching_matches_one_example_at_a_time(examples):
    model = tiny_gpt()
    one = hs.evaluate_hellaswag(model, examples, batch_size=1, progress=False)
    three = hs.evaluate_hellaswag(model, examples, batch_size=3, progress=False)
    assert one == three
    with torch.no_grad():
        alone = hs.completion_losses(model, *hs.render_example(examples[1])[:2])
        tokens, mask = hs._pack([r for ex in examples[:3] for r in hs._rows(ex)], None)
        packed = hs.completion_losses(model, tokens, mask)
    for a, p in zip(alone, packed, strict=True):
        torch.testing.assert_close(a, p[4:8], atol=1e-5, rtol=1e-5)


def test_long_examples_are_cropped_to_block_size(examples):
    examples = examples[:4]
    big = tiny_gpt(block_size=64)
    small = GPT(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    state = big.state_dict()
    state["transformer.wpe.weight"] = state["transformer.wpe.weight"][:16]
    small.load_state_dict(state)
    result = hs.evaluate_hellaswag(small, examples, progress=False)  # would raise if not cropped
    assert result == hs.evaluate_hellaswag(big, examples, block_size=16, progress=False)
    assert result != hs.evaluate_hellaswag(big, examples, progress=False)


def test_training_mode_is_restored(examples):
    model = tiny_gpt().train()
    hs.evaluate_hellaswag(model, examples[:1], progress=False)
    assert model.training


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"ctx": "A man", "endings": ["a", "b", "c"', "not valid JSON"),
        ('{"ctx": "A man", "endings": ["a", "b", "c", "d"]}', "missing key"),
        ('{"ctx": "A man", "endings": ["a", "b", "c"], "label": 0}', "list of 4 strings"),
        ('{"ctx": "A man", "endings": ["a", "b", "c", "d"], "label": 4}', "ending index 0-3"),
        ('{"ctx": "A man", "endings": ["a", "b", "c", "d"], "label": true}', "ending index 0-3"),
        ('{"ctx": 3, "endings": ["a", "b", "c", "d"], "label": 1}', "'ctx' must be a string"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_lines_name_their_line_number(tmp_path, line, message):
    good = MINI.read_text().splitlines()[0]
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n\n{line}\n{good}\n")
    with pytest.raises(ValueError, match=f"line 3: .*{message}"):
        hs.load_hellaswag(path)


def test_string_labels_and_blank_lines_are_accepted(tmp_path, examples):
    rows = [json.loads(line) for line in MINI.read_text().splitlines()[:2]]
    path = tmp_path / "hf_style.jsonl"
    path.write_text("\n".join(json.dumps({**r, "label": str(r["label"])}) for r in rows) + "\n\n")
    assert hs.load_hellaswag(path) == examples[:2]


def test_missing_file_and_bad_arguments(tmp_path, examples):
    with pytest.raises(FileNotFoundError, match="split name"):
        hs.load_hellaswag(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        hs.evaluate_hellaswag(tiny_gpt(), examples, batch_size=0)
    with pytest.raises(ValueError, match="No HellaSwag examples"):
        hs.evaluate_hellaswag(tiny_gpt(), [])


def test_offline_download_says_how_to_get_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path))
    monkeypatch.setenv("LESSONS_OFFLINE", "1")
    dest = tmp_path / "hellaswag" / "hellaswag_val.jsonl"
    with pytest.raises(AssetUnavailableError) as info:
        hs.load_hellaswag("val")
    for part in (hs.URLS["val"], str(dest), "--data PATH", "load_hellaswag(PATH)"):
        assert part in str(info.value)
    dest.write_bytes(MINI.read_bytes())  # a cached copy is used without the network
    assert len(hs.load_hellaswag("val")) == 8


def test_command_on_a_tiny_checkpoint(tmp_path, capsys, examples):
    model = tiny_gpt()
    ckpt = save_checkpoint(tmp_path / "ckpt.pt", model)
    argv = ["--checkpoint", str(ckpt), "--data", str(MINI), "--limit", "5", "--batch-size", "2",
            "--device", "cpu", "--no-progress"]  # fmt: skip
    result = hs.main(argv)
    assert "HellaSwag: 5 examples, acc " in capsys.readouterr().out
    assert result == hs.evaluate_hellaswag(model, examples[:5], progress=False)
    assert set(result.to_dict()) == {"n", "acc", "acc_norm"}


def test_end_of_text_in_the_data_is_scored_as_plain_text(examples):
    ex = {**examples[0], "ctx": examples[0]["ctx"] + " <|endoftext|>"}
    ex["endings"] = ["<|endoftext|>", *ex["endings"][1:]]
    tokens, mask, _ = hs.render_example(ex)
    enc = get_encoding()
    ctx = enc.encode_ordinary(ex["ctx"])
    first = ctx + enc.encode_ordinary(" <|endoftext|>")  # the characters, not the end-of-text token
    assert tokens[0, : len(first)].tolist() == first and mask[0].sum() == len(first) - len(ctx)
    assert EOT_TOKEN not in tokens
    assert hs.evaluate_hellaswag(tiny_gpt(), [ex], progress=False).n == 1


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    good = MINI.read_bytes().splitlines()[0]
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(good + b"\n" + good.replace(b'"ctx": "', b'"ctx": "Caf\xe9 ', 1) + b"\n")
    with pytest.raises(ValueError, match="latin1.jsonl line 2 is not UTF-8 text"):
        hs.load_hellaswag(path)
