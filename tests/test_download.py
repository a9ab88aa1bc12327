"""download.py against a local HTTP server serving an archive in the official structure."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

from helpers import call, dataset_files, run_script, zip_bytes

INNER = "baseline/data/synergyreid/raw/synergyreid_data.zip"
TOP = "player-reidentification-challenge-master"


def official_archive(dataset: dict[str, bytes], extra: dict[str, bytes] | None = None) -> tuple[bytes, str]:
    """(the repository zip, the md5 of the dataset zip inside it)."""
    inner = zip_bytes({f"data_reid/{k}": v for k, v in dataset.items()} | (extra or {}))
    filler = np.random.default_rng(0).bytes(600_000)  # large enough to drop half-way through
    outer = zip_bytes({f"{TOP}/README.md": b"challenge\n", f"{TOP}/assets.bin": filler,
                       f"{TOP}/{INNER}": inner})
    return outer, hashlib.md5(inner).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def served(file_server):
    dataset = dataset_files()
    outer, md5 = official_archive(dataset)
    file_server.files["/master.zip"] = outer
    return file_server, dataset, md5


def test_full_download_gives_the_dataset(served, tmp_path):
    server, dataset, md5 = served
    result = call("download.py", f"--url={server.url}/master.zip", f"--md5={md5}",
                        f"--data_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    got = tree(tmp_path / "data_reid")
    assert {k: v for k, v in got.items() if not k.startswith(".")} == dataset
    assert not (tmp_path / "downloads" / "master.zip").exists()
    assert not list(tmp_path.glob(".data_reid*"))


def test_dropped_connection_resumes_with_range(served, tmp_path):
    server, dataset, md5 = served
    server.drop_next = 1
    args = [f"--url={server.url}/master.zip", f"--md5={md5}", f"--data_dir={tmp_path}"]
    first = call("download.py", *args, "--retries=0")
    assert first.returncode == 1
    assert "Traceback" not in first.stderr and "run again to resume" in first.stderr
    part = tmp_path / "downloads" / "master.zip.part"
    half = part.stat().st_size
    assert 0 < half < len(server.files["/master.zip"])
    assert not (tmp_path / "data_reid").exists()

    second = call("download.py", *args, "--retries=0")
    assert second.returncode == 0, second.stderr
    assert server.requests[-1] == ("/master.zip", f"bytes={half}-")
    got = tree(tmp_path / "data_reid")
    assert {k: v for k, v in got.items() if not k.startswith(".")} == dataset


def test_retry_within_one_run_recovers(served, tmp_path):
    server, dataset, md5 = served
    server.drop_next = 2
    result = call("download.py", f"--url={server.url}/master.zip", f"--md5={md5}",
                        f"--data_dir={tmp_path}", "--retries=3", "--backoff=0.1")
    assert result.returncode == 0, result.stderr
    ranges = [r for _, r in server.requests]
    assert len(ranges) == 3 and ranges[0] is None and ranges[2] is not None
    assert (tmp_path / "data_reid" / "reid_training").is_dir()


def test_md5_mismatch_names_both_sums_and_leaves_nothing(served, tmp_path):
    server, _, md5 = served
    wrong = "0" * 32
    result = call("download.py", f"--url={server.url}/master.zip", f"--md5={wrong}",
                        f"--data_dir={tmp_path}")
    assert result.returncode == 1
    assert wrong in result.stderr and md5 in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data_reid").exists()


def test_404_is_one_clear_line(file_server, tmp_path):
    result = run_script("download.py", f"--url={file_server.url}/missing.zip", f"--data_dir={tmp_path}")
    assert result.returncode == 1
    assert "404" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data_reid").exists()


def test_missing_inner_zip_is_named(file_server, tmp_path):
    file_server.files["/master.zip"] = zip_bytes({f"{TOP}/README.md": b"x"})
    result = call("download.py", f"--url={file_server.url}/master.zip", f"--data_dir={tmp_path}")
    assert result.returncode == 1
    assert INNER in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("entry", ["../x", "/tmp/escaped_abs_entry", "data_reid/../../y"])
def test_unsafe_entries_are_refused(file_server, tmp_path, entry):
    work = tmp_path / "work"
    outer, md5 = official_archive(dataset_files(), extra={entry: b"evil"})
    file_server.files["/master.zip"] = outer
    result = call("download.py", f"--url={file_server.url}/master.zip", f"--md5={md5}",
                        f"--data_dir={work}")
    assert result.returncode == 1
    assert "unsafe" in result.stderr and "Traceback" not in result.stderr
    assert not (work / "data_reid").exists()
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert not Path("/tmp/escaped_abs_entry").exists()


def test_symlink_entry_is_refused(tmp_path):
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("data_reid/reid_training/link")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    inner = tmp_path / "synergyreid_data.zip"
    inner.write_bytes(buf.getvalue())
    result = call("download.py", f"--zip={inner}", "--md5=", f"--data_dir={tmp_path / 'd'}")
    assert result.returncode == 1 and "symbolic link" in result.stderr


def test_second_run_is_a_no_op(served, tmp_path):
    server, _, md5 = served
    args = [f"--url={server.url}/master.zip", f"--md5={md5}", f"--data_dir={tmp_path}"]
    assert call("download.py", *args).returncode == 0
    count = len(server.requests)
    again = call("download.py", *args)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert len(server.requests) == count


def test_local_zip_and_file_url(tmp_path):
    dataset = dataset_files()
    outer, md5 = official_archive(dataset)
    archive = tmp_path / "master.zip"
    archive.write_bytes(outer)
    by_url = call("download.py", f"--url=file://{archive}", f"--md5={md5}",
                        f"--data_dir={tmp_path / 'a'}")
    assert by_url.returncode == 0, by_url.stderr
    assert archive.exists()
    inner = tmp_path / "synergyreid_data.zip"
    inner.write_bytes(zip_bytes({f"data_reid/{k}": v for k, v in dataset.items()}))
    by_zip = call("download.py", f"--zip={inner}", f"--md5={md5}", f"--data_dir={tmp_path / 'b'}")
    assert by_zip.returncode == 0, by_zip.stderr
    assert tree(tmp_path / "a" / "data_reid").keys() == tree(tmp_path / "b" / "data_reid").keys()


@pytest.mark.slow
def test_synthetic_data_are_made_once_and_accepted_by_preprocess(tmp_path):
    made = call("download.py", "--synthetic=true", "--synthetic_size=tiny", f"--data_dir={tmp_path}")
    assert made.returncode == 0, made.stderr
    again = call("download.py", "--synthetic=true", "--synthetic_size=tiny", f"--data_dir={tmp_path}")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    other = call("download.py", "--synthetic=true", "--synthetic_size=tiny", "--seed=5", f"--data_dir={tmp_path}")
    assert other.returncode == 1 and "seed 5" in other.stderr
    real = call("download.py", f"--zip={tmp_path / 'none.zip'}", f"--data_dir={tmp_path}")
    assert real.returncode == 1 and "Traceback" not in real.stderr
    parts = call("preprocess_data.py", f"--data_dir={tmp_path}")
    assert parts.returncode == 0, parts.stderr
    assert (tmp_path / "data_reid" / "train_df.csv").exists()
    assert (tmp_path / "data_reid" / "challenge_df.csv").exists()


@pytest.mark.parametrize("url, words, absent", [
    ("ftp://example.org/x.zip", "ftp:// is not supported", "no such file"),
    ("http://127.0.0.1:1/x.zip", "nothing was received", "bytes kept"),
    ("{local}", "is it the repository's zip?", "delete it"),
])
def test_download_says_what_is_wrong_with_the_url(tmp_path, url, words, absent):
    local = tmp_path / "mine.zip"
    local.write_text("not a zip")
    result = call("download.py", f"--url={url.format(local=local)}", f"--data_dir={tmp_path / 'd'}",
                  "--retries=0", "--timeout=2")
    assert result.returncode == 1 and words in result.stderr and absent not in result.stderr
    assert local.read_text() == "not a zip"

