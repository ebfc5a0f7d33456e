"""Fine-tuning on conversations: template, loss mask, batches, bad input, training, chat, command."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lessons_lib import (
    EOT_TOKEN,
    GPT,
    GPTConfig,
    UserError,
    generate,
    get_encoding,
    load_checkpoint,
    save_checkpoint,
)
from lessons_lib import finetune as ft
from lessons_lib.optim import cosine_lr

DATA = Path(__file__).parent / "data" / "chat_mini.jsonl"


@pytest.fixture(scope="module")
def convs():
    return ft.load_conversations(DATA)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=64, n_layer=2, n_head=2, n_embd=32))


def test_load_conversations(convs):
    assert len(convs) == 8
    assert convs[1][0] == {"role": "system", "content": "You answer in one short sentence."}
    assert sum(m["role"] == "assistant" for c in convs for m in c) == 10


def test_mask_covers_exactly_the_assistant_tokens(convs):
    enc = get_encoding()
    for c in convs:
        ids, mask = ft.encode_conversation(c)
        assert len(ids) == len(mask) and set(mask) == {0, 1}
        assert enc.decode(ids) == ft.render_chat(c)
        answers = [m["content"] for m in c if m["role"] == "assistant"]
        masked = [t for t, keep in zip(ids, mask, strict=True) if keep]
        assert enc.decode(masked) == "".join(a + "<|endoftext|>" for a in answers)
        assert len(masked) == sum(len(enc.encode(a)) + 1 for a in answers)
        assert ids.count(EOT_TOKEN) == len(answers) and mask[-1] == 1


def test_typed_end_token_is_plain_text():
    messages = [{"role": "user", "content": "a <|endoftext|> b"}, {"role": "assistant", "content": "ok"}]
    ids, _ = ft.encode_conversation(messages)
    assert ids.count(EOT_TOKEN) == 1 and ids[-1] == EOT_TOKEN


def test_loss_is_cross_entropy_over_assistant_tokens_only(convs):
    model = tiny_model().eval()
    batch = convs[:4]
    x, y = ft.pad_batch([ft.conversation_example(c, 64) for c in batch])
    with torch.no_grad():
        _, loss = model(x, y)
        total, count = 0.0, 0
        for c in batch:  # each conversation alone, unpadded
            ids, mask = ft.encode_conversation(c)
            logp = F.log_softmax(model(torch.tensor([ids[:-1]]))[0][0], dim=-1)
            for i in range(len(ids) - 1):
                if mask[i + 1]:
                    total -= logp[i, ids[i + 1]].item()
                    count += 1
    assert (y != -100).sum().item() == count
    assert abs(loss.item() - total / count) <= 1e-5


def test_batches_are_padded_and_shuffled_by_seed(convs):
    a, b = ft.ChatBatches(convs, 4, 64, seed=1), ft.ChatBatches(convs, 4, 64, seed=1)
    inputs = [x for x, _ in a.examples]
    seen = []
    for _ in range(2):  # one epoch: every conversation once
        x, y = a.next_batch()
        assert torch.equal(x, b.next_batch()[0])
        T = x.size(1)
        for r in range(4):
            i = next(i for i, ex in enumerate(inputs) if len(ex) <= T and torch.equal(x[r, : len(ex)], ex))
            n = len(inputs[i])
            assert torch.equal(y[r, :n], a.examples[i][1])
            assert (x[r, n:] == EOT_TOKEN).all() and (y[r, n:] == -100).all()
            seen.append(i)
        assert T == max(len(inputs[i]) for i in seen[-4:]) and y.shape == (4, T)
    assert sorted(seen) == list(range(8))
    first = ft.ChatBatches(convs, 4, 64, seed=1).next_batch()[0]
    assert not torch.equal(ft.ChatBatches(convs, 4, 64, seed=2).next_batch()[0], first)


def test_long_conversations_keep_their_beginning(convs):
    ids, mask = ft.encode_conversation(convs[2])
    x, y = ft.conversation_example(convs[2], 20)
    assert x.tolist() == ids[:20]
    assert y.tolist() == [t if k else -100 for t, k in zip(ids[1:21], mask[1:21], strict=True)]
    first_answer = mask.index(1)
    assert (ft.conversation_example(convs[2], first_answer)[1] != -100).sum() == 1
    with pytest.raises(ValueError, match=rf"conversation 0: .*block_size={first_answer - 1}\)"):
        ft.ChatBatches([convs[2]], 1, first_answer - 1)


GOOD = '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}'


@pytest.mark.parametrize(
    "bad, error",
    [
        ('{"messages": [', "not valid JSON"),
        ('{"turns": []}', "no 'messages' key"),
        ('[1, 2]', "no 'messages' key"),
        ('{"messages": []}', "'messages' must be a non-empty list"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', "message 1 has unknown role 'bot'"),
        ('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": " "}]}',
         r"message 2 \(assistant\) has empty content"),
        ('{"messages": [{"role": "user"}]}', "message 1 must be an object with 'role' and 'content'"),
        ('{"messages": [{"role": "user", "content": "x"}]}', "no assistant message"),
    ],
)  # fmt: skip
def test_bad_lines_name_their_line_number(tmp_path, bad, error):
    path = tmp_path / "chat.jsonl"
    path.write_text(f"{GOOD}\n\n{bad}\n{GOOD}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"line 3: {error}"):
        ft.load_conversations(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="No conversations file at .*nope.jsonl; give a JSONL file"):
        ft.load_conversations(tmp_path / "nope.jsonl")


def test_empty_file_is_refused(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="holds no conversations"):
        ft.load_conversations(tmp_path / "empty.jsonl")


def test_finetune_memorises_answers_and_chat_repeats_them(convs):
    model = tiny_model()
    pair = [convs[0], convs[3]]  # different questions, different answers
    history = ft.finetune(model, pair, steps=30, batch_size=2, lr=1e-2, progress=False)
    assert history["step"] == list(range(30)) and history["lr"] == [1e-2] * 30
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert model.training  # finetune restores the mode the model had
    for c in pair:
        assert ft.chat(model, c[:-1], max_new_tokens=10, temperature=0) == c[-1]["content"]


def test_chat_is_generate_up_to_the_end_token(convs):
    model = tiny_model()
    prompt = convs[0][:-1]
    ids = ft.encode_conversation(prompt)[0] + get_encoding().encode("<|assistant|>\n")
    g = torch.Generator().manual_seed(5)
    out = generate(model, torch.tensor([ids]), 12, 0.7, 50, generator=g, stop_token=EOT_TOKEN)[0, len(ids) :]
    reply = out.tolist()[: out.tolist().index(EOT_TOKEN)] if EOT_TOKEN in out else out.tolist()
    assert ft.chat(model, prompt, max_new_tokens=12, seed=5) == get_encoding().decode(reply)


def test_command_finetunes_a_checkpoint(tmp_path, convs, capsys):
    save_checkpoint(tmp_path / "base.pt", tiny_model())
    out = tmp_path / "sft"
    argv = ["--data", str(DATA), "--checkpoint", str(tmp_path / "base.pt"), "--out-dir", str(out),
            "--steps", "3", "--batch-size", "2", "--lr", "1e-3", "--min-lr", "1e-4", "--warmup-steps", "1",
            "--max-tokens", "4", "--no-progress"]  # fmt: skip
    ft.main(argv)
    state = load_checkpoint(out / "ckpt.pt")
    assert state["history"]["lr"] == [cosine_lr(s, 1e-3, 1e-4, 1, 3) for s in range(3)]
    assert state["finetune"]["data"] == str(DATA)
    printed = capsys.readouterr().out
    assert "fine-tuned 8 conversations for 3 steps" in printed
    assert "user: What is the capital of France?\nassistant: " in printed
    json.dumps(state["finetune"])  # plain data only


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    (tmp_path / "chat.jsonl").write_bytes(f"{GOOD}\n{GOOD}\n".replace("Hello", "Ol\xe1").encode("latin-1"))
    with pytest.raises(ValueError, match="chat.jsonl line 1 is not UTF-8 text"):
        ft.load_conversations(tmp_path / "chat.jsonl")


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"lr": 0.0}, "lr must be a number > 0, got 0.0."),
        ({"lr": -1e-4}, "lr must be a number > 0, got -0.0001."),
        ({"min_lr": -1e-5}, r"min_lr \(at most lr\) must be a number in \[0, 0.0001\], got -1e-05."),
        ({"min_lr": 1e-3}, r"min_lr \(at most lr\) must be a number in \[0, 0.0001\], got 0.001."),
        ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0, got -1."),
        ({"weight_decay": -0.1}, "weight_decay must be a number >= 0, got -0.1."),
        ({"grad_clip": -1.0}, "grad_clip must be a number >= 0, got -1.0."),
        ({"seed": -1}, r"seed must be an integer in \[0, 4,294,967,295\], got -1."),
    ],
)  # fmt: skip
def test_finetune_refuses_settings_out_of_range(convs, setting, message):
    model = tiny_model()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(UserError, match=message):
        ft.finetune(model, convs, steps=2, progress=False, **setting)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_command_refuses_an_out_dir_that_holds_a_checkpoint(tmp_path, capsys):
    source = save_checkpoint(tmp_path / "base" / "ckpt.pt", tiny_model())
    before = source.read_bytes()
    argv = ["--data", str(DATA), "--checkpoint", str(source), "--steps", "1", "--no-progress"]
    for out, held in [(source.parent, f"the checkpoint being fine-tuned, {source}"),
                      (tmp_path / "other", f"a checkpoint, {tmp_path / 'other'}/ckpt.pt")]:  # fmt: skip
        if out != source.parent:
            save_checkpoint(out / "ckpt.pt", tiny_model())
        with pytest.raises(SystemExit) as info:
            ft.main([*argv, "--out-dir", str(out)])
        assert info.value.code == 1
        assert capsys.readouterr().err == (
            f"python -m lessons_lib.finetune: error: --out-dir {out} holds {held}; fine-tuning writes there. "
            "Choose another --out-dir.\n"
        )
    assert source.read_bytes() == before


def test_command_refuses_a_bad_flag_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        ft.main(["--data", str(DATA), "--pretrained", "gpt2", "--out-dir", str(tmp_path), "--lr", "0"])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "python -m lessons_lib.finetune: error: argument --lr: '0' is not a number > 0 "
        "(--help lists the options)\n"
    )
