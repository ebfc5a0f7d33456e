"""The cache folder, offline mode, atomic writes and downloads."""

import pytest

from lessons_lib.assets import (
    CACHE_ENV,
    OFFLINE_ENV,
    AssetUnavailableError,
    atomic_copy,
    atomic_write,
    cache_dir,
    download,
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
