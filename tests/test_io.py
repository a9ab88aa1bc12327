"""Distance matrices on disk: the official CSV and `.npy` with id files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from reid.errors import ReidError
from reid.io import load_any, load_matrix, read_submission, save_matrix, write_outputs, write_submission


def example(nq: int = 4, ng: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.random((nq, ng)).astype(np.float32) * 5, rng.permutation(100)[:nq] + 1,
            rng.permutation(50)[:ng] + 200)


def test_submission_format(tmp_path):
    dist = np.array([[0.5, 1.25], [2.0, 0.125]], dtype=np.float32)
    path = write_submission(tmp_path / "sub.csv", dist, [9, 3], [11, 12])
    assert path.read_text().splitlines() == [
        "0,11,12",
        "3,   2.00000,   0.12500",
        "9,   0.50000,   1.25000",
    ]


def test_submission_round_trip(tmp_path):
    dist, q, g = example()
    path = write_submission(tmp_path / "a" / "sub.csv", dist, q, g)
    got, q2, g2 = read_submission(path)
    order = np.argsort(q)
    np.testing.assert_array_equal(q2, q[order])
    np.testing.assert_array_equal(g2, g)
    np.testing.assert_allclose(got, dist[order], atol=5e-6)
    assert not list(path.parent.glob("*.part"))


def test_matrix_round_trip(tmp_path):
    dist, q, g = example()
    save_matrix(tmp_path / "dist.npy", dist, q, g)
    got, q2, g2 = load_matrix(tmp_path / "dist.npy")
    np.testing.assert_array_equal(got, dist)
    np.testing.assert_array_equal(q2, q)
    np.testing.assert_array_equal(g2, g)
    assert (tmp_path / "query_ids.txt").read_text().split() == [str(i) for i in q]
    np.testing.assert_array_equal(load_any(tmp_path / "dist.npy")[0], dist)


def test_string_ids_in_npy(tmp_path):
    dist = np.ones((1, 2), dtype=np.float32)
    save_matrix(tmp_path / "d.npy", dist, ["q_a"], ["g_a", "g_b"])
    assert list(load_matrix(tmp_path / "d.npy")[2]) == ["g_a", "g_b"]
    with pytest.raises(ReidError, match="integers"):
        write_submission(tmp_path / "s.csv", dist, ["q_a"], ["g_a", "g_b"])


def test_inputs_not_modified(tmp_path):
    dist, q, g = example()
    copies = dist.copy(), q.copy(), g.copy()
    write_submission(tmp_path / "s.csv", dist, q, g)
    save_matrix(tmp_path / "d.npy", dist, q, g)
    for a, b in zip((dist, q, g), copies, strict=True):
        np.testing.assert_array_equal(a, b)


def test_sibling_matrices_keep_their_ids(tmp_path):
    dist, q, g = example()
    save_matrix(tmp_path / "a.npy", dist, q, g)
    save_matrix(tmp_path / "b.npy", dist * 2, q, g)
    with pytest.raises(ReidError, match="own folder"):
        save_matrix(tmp_path / "c.npy", dist, q[::-1], g)


def test_written_files_honour_the_umask(tmp_path):
    dist, q, g = example()
    old = os.umask(0o002)
    try:
        written = write_outputs(tmp_path, dist, q, g)
    finally:
        os.umask(old)
    for path in [*written, tmp_path / "query_ids.txt", tmp_path / "matrices.json"]:
        assert path.stat().st_mode & 0o777 == 0o664, path


@pytest.mark.parametrize("crash", ["after the id files", "after the matrix"])
def test_a_write_interrupted_between_matrix_and_ids_is_refused(tmp_path, monkeypatch, crash):
    """Same shapes, other ids: without matrices.json the new ids would silently label the old matrix."""
    dist, q, g = example()
    save_matrix(tmp_path / "dist.npy", dist, q, g)
    import reid.files

    real = reid.files.atomic_open
    stop_at = "dist.npy" if crash == "after the id files" else "matrices.json"

    def crashing(path):
        if Path(path).name == stop_at:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(reid.files, "atomic_open", crashing)
    with pytest.raises(KeyboardInterrupt):
        save_matrix(tmp_path / "dist.npy", dist * 2, q[::-1], g)
    monkeypatch.setattr(reid.files, "atomic_open", real)
    with pytest.raises(ReidError, match="not written together"):
        load_matrix(tmp_path / "dist.npy")
    save_matrix(tmp_path / "dist.npy", dist * 2, q[::-1], g)
    np.testing.assert_array_equal(load_matrix(tmp_path / "dist.npy")[1], q[::-1])


@pytest.mark.parametrize("text, problem", [
    ("", "empty file"),
    ("1,2,3\n4,0.1,0.2\n", "not an official submission"),
    ("0,2,3\n", "no query rows"),
    ("0,2,3\n4,0.1\n", "distances for 2 gallery ids"),
    ("0,2,3\n4,0.1,abc\n", "not an official submission"),
    ("0,2,3\n4,0.1,nan\n", "NaN"),
    ("0,2,x\n4,0.1,0.2\n", "integers"),
    ("0,2,3\n4,0.1,0.2\n4,0.3,0.4\n", "not unique"),
])
def test_bad_csv(tmp_path, text, problem):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ReidError, match=problem) as info:
        read_submission(path)
    assert str(path) in str(info.value)


def test_bad_matrices(tmp_path):
    dist, q, g = example()
    bad = dist.copy()
    bad[1, 1] = np.inf
    for args, problem in [((bad, q, g), "NaN"), ((dist, q[:-1], g), "does not match"),
                          ((dist[0], q, g), "2-D"), ((dist, np.r_[q[:-1], q[0]], g), "not unique")]:
        for writer, name in ((save_matrix, "d.npy"), (write_submission, "s.csv")):
            with pytest.raises(ReidError, match=problem) as info:
                writer(tmp_path / name, *args)
            assert name in str(info.value)
    assert not list(tmp_path.iterdir())


def test_bad_npy_files(tmp_path):
    with pytest.raises(ReidError, match="no such file"):
        load_matrix(tmp_path / "missing.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(ReidError, match="empty.npy"):
        load_matrix(tmp_path / "empty.npy")
    np.save(tmp_path / "d.npy", np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ReidError, match="query_ids.txt: missing"):
        load_matrix(tmp_path / "d.npy")
    (tmp_path / "query_ids.txt").write_text("1\n2\n")
    (tmp_path / "gallery_ids.txt").write_text("5\n")
    with pytest.raises(ReidError, match="does not match"):
        load_matrix(tmp_path / "d.npy")
    with pytest.raises(ReidError, match=".npy distance matrix or an official .csv"):
        load_any(tmp_path / "d.txt")
