"""reid.files: atomic writes (bytes, JSON, a writer callback, a stream) and reading JSON back."""

from __future__ import annotations

import os

import pytest

from reid.errors import ReidError
from reid.files import atomic_open, read_json, temporary_of, write_json, write_with


def test_disk_full_is_a_clear_error_and_leaves_no_temporary(tmp_path, monkeypatch):
    """The kernel's own ENOSPC (/dev/full) under the temporary's descriptor."""
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: (os.close(fd), real(os.open("/dev/full", os.O_WRONLY), mode))[1])
    target = tmp_path / "member.jpeg"
    with pytest.raises(ReidError, match=f"disk full while writing {target}"):
        with atomic_open(target) as out:
            out.write(b"x" * 100_000)
            out.flush()
    assert list(tmp_path.iterdir()) == []


def test_a_failing_writer_leaves_nothing_behind(tmp_path):
    def half(path):
        path.write_bytes(b"partial")
        raise RuntimeError("unexpected pos")

    with pytest.raises(RuntimeError, match="unexpected pos"):
        write_with(tmp_path / "last.pt", half)
    assert list(tmp_path.iterdir()) == []


def test_files_honour_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        written = [write_json({}, tmp_path / "a.json"), write_with(tmp_path / "b.pt", lambda p: p.write_bytes(b"b"))]
    finally:
        os.umask(old)
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o664, path


def test_a_temporary_names_the_file_it_stands_for(tmp_path):
    seen = []
    write_with(tmp_path / "last.pt", lambda tmp: seen.append(tmp.name))
    assert temporary_of(seen[0]) == "last.pt"
    assert [temporary_of(n) for n in ("last.pt", ".part", "..part", "notes.part")] == [None] * 4


def test_read_json_names_the_file(tmp_path):
    path = tmp_path / "record.json"
    assert read_json(path, {}) == {}
    with pytest.raises(ReidError, match=f"{path}: no such file"):
        read_json(path)
    path.write_text("{not json")
    with pytest.raises(ReidError, match=f"{path}: cannot read"):
        read_json(path, {})
    write_json({"a": [1]}, path)
    assert read_json(path) == {"a": [1]}
