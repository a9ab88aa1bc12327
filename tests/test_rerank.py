"""Re-ranking (docs/RERANKING.md §1-§3) against the plain reference implementations and the worked example."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

import reference_rerank as ref
import reid.rerank as rr
from helpers import asymmetric, blocks, features
from reid.errors import ReidError

DOC = Path(__file__).resolve().parents[1] / "docs" / "RERANKING.md"
SHAPES = [(1, 1), (1, 6), (3, 12), (6, 30), (12, 45)]
PARAMS = [(20, 6, 0.3), (5, 1, 0.3), (3, 3, 0.5), (4, 9, 0.0), (1, 1, 1.0), (2, 2, 0.2)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("params", PARAMS)
def test_k_reciprocal_matches_reference(shape, params):
    k1, k2, lam = params
    mats = blocks(*features(*shape, seed=shape[1]), power=0.5)
    expected = ref.k_reciprocal(*mats, k1=k1, k2=k2, lambda_value=lam)
    got = rr.k_reciprocal(*mats, k1=k1, k2=k2, lambda_value=lam)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("params", PARAMS)
def test_hard_weight_matches_reference(shape, params):
    k1, k2, lam = params
    mats = blocks(*features(*shape, seed=shape[1] + 1))
    expected = ref.hard_weight(*mats, k1=k1, k2=k2, lambda_value=lam)
    got = rr.hard_weight(*mats, k1=k1, k2=k2, lambda_value=lam)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.parametrize("method", ["k_reciprocal", "hard_weight"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_asymmetric_inputs_follow_the_definition(method, seed):
    mats = asymmetric(7, 25, seed)
    got = getattr(rr, method)(*mats, k1=6, k2=3)
    np.testing.assert_allclose(got, getattr(ref, method)(*mats, k1=6, k2=3), atol=2e-6)


@pytest.mark.parametrize("method", ["k_reciprocal", "hard_weight"])
@pytest.mark.parametrize("levels", [1, 2])
def test_exact_ties_go_to_the_lower_index(method, levels):
    qf, gf = features(8, 40, dim=3, seed=levels, levels=levels)
    gf[5:9] = gf[4]  # duplicated gallery images: many distances exactly equal
    mats = blocks(qf, gf)
    assert len(np.unique(mats[2])) < mats[2].size / 4
    for k1, k2 in ((5, 3), (10, 6)):
        expected = getattr(ref, method)(*mats, k1=k1, k2=k2)
        np.testing.assert_allclose(getattr(rr, method)(*mats, k1=k1, k2=k2), expected, atol=2e-6)


@pytest.mark.parametrize("method", ["k_reciprocal", "hard_weight"])
def test_k1_larger_than_everything(method):
    mats = blocks(*features(3, 5, seed=4))
    expected = getattr(ref, method)(*mats, k1=30, k2=20)
    np.testing.assert_allclose(getattr(rr, method)(*mats, k1=30, k2=20), expected, atol=2e-6)


@pytest.mark.parametrize("method", ["k_reciprocal", "hard_weight"])
@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (1, 2)])
def test_tiny_sets(method, shape):
    mats = blocks(*features(*shape, seed=9))
    got = getattr(rr, method)(*mats)
    assert got.shape == shape and np.isfinite(got).all()
    np.testing.assert_allclose(got, getattr(ref, method)(*mats), atol=2e-6)


def test_hard_weight_ignores_image_order():
    mats = blocks(*features(9, 50, seed=5))
    rng = np.random.default_rng(0)
    pq, pg = rng.permutation(9), rng.permutation(50)
    q_g, q_q, g_g = mats
    base = rr.hard_weight(q_g, q_q, g_g, k1=8, k2=4)
    moved = rr.hard_weight(q_g[pq][:, pg], q_q[pq][:, pq], g_g[pg][:, pg], k1=8, k2=4)
    np.testing.assert_allclose(moved, base[pq][:, pg], atol=1e-6)


@pytest.mark.parametrize("method", ["k_reciprocal", "hard_weight"])
@pytest.mark.parametrize("levels", [0, 2])
@pytest.mark.parametrize("rows", [None, 1, 7])
def test_features_equal_matrices(method, levels, rows):
    qf, gf = features(10, 60, dim=6, seed=3, levels=levels)
    q_g, q_q, g_g = blocks(qf, gf)
    if method == "k_reciprocal":
        expected = rr.k_reciprocal(q_g, q_q, g_g, k1=7, k2=3)
    else:
        expected = rr.hard_weight(q_g, q_q, g_g, k1=7, k2=3)
    got = rr.rerank_features(qf, gf, method=method, k1=7, k2=3, rows=rows)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_jaccard_chunking_does_not_change_results(monkeypatch):
    mats = blocks(*features(12, 45, seed=6))
    whole = rr.k_reciprocal(*mats, k1=6, k2=3)
    monkeypatch.setattr(rr, "_TRIPLES", 50)
    np.testing.assert_array_equal(rr.k_reciprocal(*mats, k1=6, k2=3), whole)


@pytest.mark.parametrize("seed", range(4))
def test_smallest_breaks_ties_by_column(seed):
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 4 + seed * 10, (30, 50)).astype(np.float32)
    for k in (1, 5, 50):
        idx, vals = rr.smallest(block, k)
        order = np.argsort(block, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(idx, order)
        np.testing.assert_array_equal(vals, np.take_along_axis(block, order, axis=1))


@pytest.mark.parametrize("seed", range(3))
def test_smallest_on_wide_rows(seed):
    """Rows wide enough to pick candidates by segment minima (3001 columns: a ragged tail), ties included."""
    rng = np.random.default_rng(seed)
    block = rng.integers(0, [3, 300, 10**6][seed], (20, 3001)).astype(np.float32)
    block[0] = 1
    scale = rng.random(20).astype(np.float32) + 0.5
    for k in (1, 7, 21):
        for part in (block, block[:, 3:]):
            for s in (None, scale):
                ranked = part if s is None else part / s[:, None]
                idx, vals = rr.smallest(part, k, scale=s)
                order = np.argsort(ranked, axis=1, kind="stable")[:, :k]
                np.testing.assert_array_equal(idx, order)
                np.testing.assert_array_equal(vals, np.take_along_axis(ranked, order, axis=1))


@pytest.mark.parametrize("method", ["k_reciprocal", "hard_weight"])
@pytest.mark.parametrize("levels", [0, 2])
def test_wide_inputs_match_reference(method, levels):
    """Enough images that neighbour lists come from segment minima rather than a plain top-k."""
    qf, gf = features(6, 700, dim=4, seed=11, levels=levels)
    mats = blocks(qf, gf)
    expected = getattr(ref, method)(*mats, k1=3, k2=2)
    np.testing.assert_allclose(getattr(rr, method)(*mats, k1=3, k2=2), expected, atol=2e-6)
    got = rr.rerank_features(qf, gf, method=method, k1=3, k2=2, rows=100)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_inputs_are_not_modified():
    mats = blocks(*features(4, 20, seed=7))
    copies = [m.copy() for m in mats]
    rr.k_reciprocal(*mats)
    rr.hard_weight(*mats)
    for m, c in zip(mats, copies, strict=True):
        np.testing.assert_array_equal(m, c)


@pytest.mark.parametrize("method", ["k_reciprocal", "hard_weight"])
def test_bad_input_is_a_reid_error(method):
    q_g, q_q, g_g = blocks(*features(3, 8, seed=8))
    fn = getattr(rr, method)
    with pytest.raises(ReidError, match="shapes disagree"):
        fn(q_g, q_q, g_g[:-1, :-1])
    bad = q_g.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ReidError, match="NaN"):
        fn(bad, q_q, g_g)
    with pytest.raises(ReidError, match="^k1=0: expected at least 1$"):
        fn(q_g, q_q, g_g, k1=0)
    with pytest.raises(ReidError, match="^method='nope': expected one of k_reciprocal, hard_weight$"):
        rr.rerank_features(np.ones((2, 3)), np.ones((4, 3)), method="nope")
    with pytest.raises(ReidError, match="feature sizes differ"):
        rr.rerank_features(np.ones((2, 3)), np.ones((4, 5)), method=method)


def test_matches_public_port_when_cached():
    """Offline check against the public port, if the benchmark has already fetched it."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reid-bench"
    cached = cache / "torchreid-0.2.5-rerank.py"
    if not cached.exists():
        pytest.skip("run `python -m bench.rerank_speed` once to fetch the port")
    namespace: dict = {}
    exec(compile(cached.read_text(), str(cached), "exec"), namespace)
    mats = blocks(*features(15, 80, seed=10), power=0.5)
    for k1, k2 in ((20, 6), (5, 1), (7, 3)):
        port = namespace["re_ranking"](*mats, k1=k1, k2=k2, lambda_value=0.3)
        np.testing.assert_allclose(rr.k_reciprocal(*mats, k1=k1, k2=k2), port, atol=1e-5)


def test_smallest_ranks_scaled_values_as_rounded():
    # Consecutive float32 values near 1.9 that dividing by 3 rounds together: ties made by the scale.
    row = (np.array(1.9, dtype=np.float32).view(np.uint32) + np.arange(40, dtype=np.uint32)).view(np.float32)
    row = np.concatenate([row[::-1], row])
    block = np.stack([row, row[::-1], np.roll(row, 7)])
    scale = np.array([3, 3, 3.5], dtype=np.float32)
    scaled = block / scale[:, None]
    assert len(np.unique(scaled[0])) < len(np.unique(block[0]))
    for k in (1, 6, 39, 80):
        idx, vals = rr.smallest(block, k, scale=scale)
        order = np.argsort(scaled, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(idx, order)
        np.testing.assert_array_equal(vals, np.take_along_axis(scaled, order, axis=1))


def doc_blocks() -> dict[str, tuple[str, dict[str, list[list[str]]]]]:
    """The docs' fenced blocks whose first line is `# title[: rest]`: title -> (rest, {label: cells})."""
    blocks = {}
    for body in re.findall(r"```text\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        head, *lines = body.splitlines()
        if head.startswith("# "):
            title, _, rest = head[2:].partition(": ")
            rows = {}
            for line in lines:
                label, sep, cells = line.partition(":")
                if sep:
                    rows[label.strip()] = [cell.split() for cell in cells.split("|")]
            blocks[title] = (rest, rows)
    return blocks


def test_worked_example_in_the_docs():
    """§6 of docs/RERANKING.md: the printed distances, sets and outputs are what the code gives."""
    blocks = doc_blocks()
    positions = blocks["positions"][1]
    xq, xg = (np.array(positions[part][0], dtype=float) for part in ("queries", "gallery"))
    names = [f"q{i}" for i in range(len(xq))] + [f"g{i}" for i in range(len(xg))]
    q_g, q_q, g_g = (np.abs(a[:, None] - b[None, :]) for a, b in ((xq, xg), (xq, xq), (xg, xg)))
    np.testing.assert_array_equal([np.array(cells[0], dtype=float) for cells in blocks["q_g"][1].values()], q_g)

    def check(title: str, steps: dict, columns: list[str], offset: int) -> None:
        rows = blocks[title][1]
        assert list(rows) == names[offset:offset + len(rows)]
        for i, cells in enumerate(rows.values()):
            assert [[names.index(t) for t in cell] for cell in cells] == [list(steps[c][i]) for c in columns], title

    for method, sets in (("k_reciprocal", {"§1 sets": (["F", "R", "R_half", "E"], 0)}),
                         ("hard_weight", {"§2 query sets": (["NQ", "Rq", "Rq*"], 0),
                                          "§2 gallery sets": (["NA", "NG", "Rg", "Rh", "Rg*"], len(xq))})):
        title = "§1 output" if method == "k_reciprocal" else "§2 output"
        call, printed = blocks[title]
        assert call.startswith(f"{method}(q_g, q_q, g_g, ")
        params = {key: float(value) if "." in value else int(value)
                  for key, value in re.findall(r"(\w+)=([\d.]+)", call)}
        steps = getattr(ref, f"{method}_steps")(q_g, q_q, g_g, **params)
        for block, (columns, offset) in sets.items():
            check(block, steps, columns, offset)
        assert list(printed) == names[:len(xq)]
        expected = np.array([np.array(cells[0], dtype=float) for cells in printed.values()])
        np.testing.assert_allclose(getattr(rr, method)(q_g, q_q, g_g, **params), expected, atol=5e-5)
