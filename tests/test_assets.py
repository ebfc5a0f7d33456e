"""The cache folder, offline mode, atomic writes, downloads and reading JSONL files."""

import re

import pytest

from lessons_lib.assets import (
    CACHE_ENV,
    OFFLINE_ENV,
    AssetUnavailableError,
    atomic_copy,
    atomic_write,
    cache_dir,
    download,
    jsonl_records,
    offline,
    sha256_of,
)


def test_cache_dir_follows_the_variable_and_creates_folders(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    path = cache_dir("hf", "x")
    assert path == tmp_path / "c" / "hf" / "x" and path.is_dir()


@pytest.mark.parametrize(
    "value, expected", [("1", True), ("yes", True), ("ON", True), ("0", False), ("", False)]
)
def test_offline_values(monkeypatch, value, expected):
    monkeypatch.setenv(OFFLINE_ENV, value)
    assert offline() is expected


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def crash(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, crash)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left behind
    atomic_copy(path, tmp_path / "g.bin")
    assert sha256_of(tmp_path / "g.bin") == sha256_of(path)


def test_download_refuses_offline_and_reports_network_failures(tmp_path, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(AssetUnavailableError, match="LESSONS_OFFLINE is set"):
        download("https://example.invalid/x", tmp_path / "x")
    monkeypatch.setenv(OFFLINE_ENV, "0")
    with pytest.raises(AssetUnavailableError, match="Could not download file:///nonexistent"):
        download("file:///nonexistent/x", tmp_path / "x")
    (tmp_path / "src").write_bytes(b"abc")
    with pytest.raises(AssetUnavailableError, match="its sha256 is not"):
        download((tmp_path / "src").as_uri(), tmp_path / "y", sha256="0" * 64)
    assert not (tmp_path / "y").exists()
    download((tmp_path / "src").as_uri(), tmp_path / "z", sha256=sha256_of(tmp_path / "src"))
    assert (tmp_path / "z").read_bytes() == b"abc"


def test_jsonl_records_skip_blank_lines_and_name_a_bad_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes('\ufeff{"a": 1}\n\n  \n[2, "é"]\n"text"'.encode())  # a BOM, blank lines, no last newline
    assert list(jsonl_records(path)) == [(1, {"a": 1}), (4, [2, "é"]), (5, "text")]
    path.write_text('{"a": 1}\n\n{"a": 2,\n{"a": 3}\n', encoding="utf-8")
    records = jsonl_records(path)
    assert next(records) == (1, {"a": 1})  # read lazily: the lines before a bad one come through
    bad = "data.jsonl, line 3: not valid JSON (Expecting property name enclosed in double quotes at column 9)"
    with pytest.raises(ValueError, match=re.escape(bad + """: '{"a": 2,'""")):
        next(records)
    path.write_bytes(b'{"a": 1}\n{"a": "\xe9"}\n')
    with pytest.raises(ValueError, match="data.jsonl line 2 is not UTF-8 text"):
        list(jsonl_records(path))
