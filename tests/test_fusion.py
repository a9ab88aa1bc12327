"""Fusion (docs/RERANKING.md §4) against the row-by-row reference."""

from __future__ import annotations

import numpy as np
import pytest

import reference_rerank as ref
from reid.errors import ReidError
from reid.fusion import consensus_weights, dissim_fuse, mean_fuse


def matrices(n_models: int, nq: int, ng: int, seed: int, levels: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    mats = [rng.random((nq, ng)).astype(np.float32) for _ in range(n_models)]
    if levels:
        mats = [np.round(m * levels) / levels for m in mats]
    return mats


@pytest.mark.parametrize("n_models", [1, 2, 3, 4])
@pytest.mark.parametrize("weights", [None, "random"])
def test_mean_fuse(n_models, weights):
    mats = matrices(n_models, 5, 9, n_models)
    w = None if weights is None else np.random.default_rng(1).random(n_models) + 0.1
    got = mean_fuse(mats, w)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref.mean_fuse(mats, w), rtol=1e-6)


@pytest.mark.parametrize("n_models", [1, 2, 3, 5])
@pytest.mark.parametrize("topk", [1, 4, 15, 100])
@pytest.mark.parametrize("levels", [0, 3])
def test_dissim_fuse_matches_reference(n_models, topk, levels):
    mats = matrices(n_models, 6, 30, n_models * 10 + topk, levels)
    got = dissim_fuse(mats, topk=topk)
    np.testing.assert_allclose(got, ref.dissim_fuse(mats, topk=topk), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("min_votes", [1, 2, 3])
def test_dissim_fuse_min_votes(min_votes):
    mats = matrices(3, 8, 25, min_votes)
    got = dissim_fuse(mats, topk=6, min_votes=min_votes)
    np.testing.assert_allclose(got, ref.dissim_fuse(mats, topk=6, min_votes=min_votes), rtol=1e-6)


def test_agreeing_model_gets_less_weight():
    base = np.tile(np.arange(10, dtype=np.float32), (1, 1))
    # Models 0 and 1 rank identically; model 2 disagrees on its whole top-3.
    mats = [base, base + 0.5, base[:, ::-1].copy()]
    w = consensus_weights(np.stack(mats), topk=3)[0]
    # c = (3, 3, 0): p = (0.5, 0.5, 0.1) -> the outsider has the largest inverse weight.
    np.testing.assert_allclose(w, np.array([2, 2, 10]) / 14)


def test_no_consensus_gives_equal_weights():
    mats = [np.eye(3, dtype=np.float32)[i:i + 1] * -1 + 1 for i in range(3)]
    np.testing.assert_allclose(consensus_weights(np.stack(mats), topk=1)[0], [1 / 3] * 3)


def test_inputs_not_modified():
    mats = matrices(3, 4, 7, 0)
    copies = [m.copy() for m in mats]
    dissim_fuse(mats)
    mean_fuse(mats)
    for m, c in zip(mats, copies, strict=True):
        np.testing.assert_array_equal(m, c)


@pytest.mark.parametrize("fuse", [mean_fuse, dissim_fuse])
def test_bad_input(fuse):
    with pytest.raises(ReidError, match="shape"):
        fuse([np.zeros((2, 3)), np.zeros((3, 2))])
    with pytest.raises(ReidError, match="nothing to fuse"):
        fuse([])
    with pytest.raises(ReidError, match="NaN"):
        fuse([np.full((2, 2), np.nan)])
    with pytest.raises(ReidError, match="2-D"):
        fuse([np.zeros(3)])


def test_bad_weights():
    with pytest.raises(ReidError, match="weight"):
        mean_fuse([np.zeros((2, 2))] * 2, [1.0])
    with pytest.raises(ReidError, match="weight"):
        mean_fuse([np.zeros((2, 2))] * 2, [0.0, 0.0])
