"""Evaluation (docs/RERANKING.md §5) against scikit-learn, one query at a time."""

from __future__ import annotations

import numpy as np
import pytest

import reference_rerank as ref
from reid.errors import ReidError
from reid.metrics import evaluate


def case(nq: int, ng: int, seed: int, ties: bool, n_ids: int = 5):
    rng = np.random.default_rng(seed)
    if ties:
        dist = rng.integers(0, 4, (nq, ng)).astype(np.float32)
    else:
        dist = rng.random((nq, ng)).astype(np.float32)
    return dist, rng.integers(0, n_ids, nq), rng.integers(0, n_ids, ng)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ties", [False, True])
def test_matches_sklearn(seed, ties):
    dist, q, g = case(1 + seed * 3, 5 + seed * 7, seed, ties)
    if not (q[:, None] == g[None, :]).any():
        pytest.skip("no query has a match")
    got, expected = evaluate(dist, q, g), ref.evaluate(dist, q, g)
    assert got.keys() == {"mAP", "rank1", "rank5", "rank10"}
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


def test_ties_count_as_scikit_learn_counts_them():
    # The match ties with two non-matches: precision at the end of the tied group is 1/3.
    dist = np.array([[0.5, 0.5, 0.5, 0.9]], dtype=np.float32)
    result = evaluate(dist, np.array([1]), np.array([2, 1, 3, 4]))
    assert result["mAP"] == pytest.approx(1 / 3)
    assert result["rank1"] == 0 and result["rank5"] == 1  # stable order puts the match second


def test_negative_zero_ties_with_zero():
    dist = np.array([[0.0, -0.0, 1.0]], dtype=np.float32)
    assert evaluate(dist, np.array([1]), np.array([3, 1, 2]))["mAP"] == pytest.approx(0.5)


def test_float64_and_integer_distances():
    dist, q, g = case(6, 40, 3, ties=False)
    d64 = dist.astype(np.float64) + np.linspace(0, 1e-12, dist.size).reshape(dist.shape)
    assert evaluate(d64, q, g)["mAP"] == pytest.approx(ref.evaluate(d64, q, g)["mAP"], abs=1e-12)
    dint = (dist * 10).astype(np.int64)
    assert evaluate(dint, q, g)["mAP"] == pytest.approx(ref.evaluate(dint, q, g)["mAP"], abs=1e-12)


def test_query_without_match_is_skipped():
    dist = np.array([[0.1, 0.9], [0.2, 0.3]], dtype=np.float32)
    result = evaluate(dist, np.array([7, 1]), np.array([1, 2]))
    assert result == {"mAP": 1.0, "rank1": 1.0, "rank5": 1.0, "rank10": 1.0}


def test_chunking_does_not_change_results(monkeypatch):
    import reid.memory as memory
    import reid.metrics as metrics
    dist, q, g = case(40, 30, 5, ties=True)
    whole = evaluate(dist, q, g)
    monkeypatch.setattr(memory, "BUDGET", 70 * metrics._ENTRY_BYTES)
    assert evaluate(dist, q, g) == whole


def test_string_ids():
    dist = np.array([[0.1, 0.3]], dtype=np.float32)
    result = evaluate(dist, np.array(["a"]), np.array(["b", "a"]))
    assert result["rank1"] == 0.0 and result["mAP"] == 0.5


def test_bad_input():
    dist = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ReidError, match="does not match"):
        evaluate(dist, np.arange(3), np.arange(3))
    dist[0, 0] = np.inf
    with pytest.raises(ReidError, match="NaN or inf"):
        evaluate(dist, np.arange(2), np.arange(3))
    with pytest.raises(ReidError, match="no query"):
        evaluate(np.zeros((1, 2)), np.array([5]), np.array([1, 2]))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_camera_aware_matches_the_per_query_reference(seed, ties):
    """The Market-1501 protocol: same player *and* same camera left out of each query's ranking."""
    dist, q, g = case(4 + seed * 3, 12 + seed * 7, seed, ties, n_ids=4)
    rng = np.random.default_rng(100 + seed)
    qc, gc = rng.integers(0, 3, len(q)), rng.integers(0, 3, len(g))
    left_out = (q[:, None] == g[None, :]) & (qc[:, None] == gc[None, :])
    if not ((q[:, None] == g[None, :]) & ~left_out).any():
        pytest.skip("no query keeps a match")
    got = evaluate(dist, q, g, qc, gc)
    expected = ref.evaluate(dist, q, g, qc, gc)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    assert got["excluded"] == left_out.sum()


def test_same_camera_matches_exist_and_are_left_out():
    """A fixture where the only close match is from the query's own camera: plain evaluation
    counts it, the camera-aware one does not, and equals the reference on the kept images."""
    dist = np.array([[0.1, 0.5, 0.9, 0.3], [0.2, 0.8, 0.4, 0.6]], dtype=np.float32)
    q, g = np.array([1, 2]), np.array([1, 2, 1, 2])
    qc, gc = np.array([0, 0]), np.array([0, 0, 1, 1])
    plain, aware = evaluate(dist, q, g), evaluate(dist, q, g, qc, gc)
    assert plain["rank1"] == 0.5 and aware["rank1"] == 0.0
    assert aware["mAP"] == pytest.approx(ref.evaluate(dist, q, g, qc, gc)["mAP"])
    assert aware["mAP"] == pytest.approx(1 / 3), "each kept match ranks third of three"
    assert aware["excluded"] == 2
    assert evaluate(dist, q, g) == plain and "excluded" not in plain
    with pytest.raises(ReidError, match="both the queries and the gallery"):
        evaluate(dist, q, g, qc, None)
    with pytest.raises(ReidError, match="camera ids"):
        evaluate(dist, q, g, qc[:1], gc)
