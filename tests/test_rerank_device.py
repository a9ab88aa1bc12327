"""Re-ranking with device= (the torch neighbour search of reid/rerank_torch.py) against the NumPy path, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reid.memory as memory
import reid.rerank as rr
import reid.rerank_torch as rt
from helpers import asymmetric, blocks, features
from reid.errors import ReidError

METHODS = ["k_reciprocal", "hard_weight"]
# (nq, ng, levels, (k1, k2, lambda)): levels > 0 puts features on a grid, so distances tie exactly.
CASES = [(1, 1, 0, (20, 6, 0.3)), (1, 40, 2, (20, 6, 0.3)), (3, 12, 2, (5, 1, 0.3)), (6, 30, 0, (4, 9, 0.0)),
         (12, 45, 2, (3, 3, 0.5)), (5, 1, 0, (2, 2, 0.2)), (8, 300, 1, (20, 6, 0.3)), (10, 60, 0, (1, 1, 1.0))]


def both(fn, *args, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """fn on the NumPy path and on the torch path (CPU)."""
    return fn(*args, **kwargs), fn(*args, **kwargs, device="cpu")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_features_on_device_equal_numpy(method, case):
    nq, ng, levels, (k1, k2, lam) = case
    qf, gf = features(nq, ng, dim=6, seed=nq + ng, levels=levels)
    expected, got = both(rr.rerank_features, qf, gf, method=method, k1=k1, k2=k2, lambda_value=lam)
    assert got.dtype == np.float32 and got.shape == (nq, ng)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES[:6])
def test_matrices_on_device_equal_numpy(method, case):
    nq, ng, levels, (k1, k2, lam) = case
    mats = blocks(*features(nq, ng, dim=6, seed=nq + ng + 1, levels=levels), power=0.5)
    expected, got = both(getattr(rr, method), *mats, k1=k1, k2=k2, lambda_value=lam)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_asymmetric_float64_and_strided_matrices(method):
    """Transposes matter when q_q and g_g are not symmetric; float64 is squared before the cast to float32."""
    q_g, q_q, g_g = asymmetric(7, 40, seed=3)
    args = (q_g.astype(np.float64)[::-1], np.asfortranarray(q_q[::-1, ::-1]), g_g.T)
    expected, got = both(getattr(rr, method), *args, k1=6, k2=3)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_duplicates_and_identical_images(method):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((15, 4)).astype(np.float32)[rng.integers(0, 15, 150)]
    for qf, gf in ((x[:12], x[12:]), (np.ones((3, 4)), np.ones((20, 4)))):
        expected, got = both(rr.rerank_features, qf, gf, method=method, k1=8, k2=3)
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_small_blocks_and_chunks_change_nothing(method, monkeypatch):
    """A budget of a few hundred bytes: blocks of one or two rows on the device, chunks of one pair on the host."""
    qf, gf = features(9, 80, dim=5, seed=4, levels=2)
    whole = rr.rerank_features(qf, gf, method=method, k1=7, k2=3, device="cpu")
    monkeypatch.setattr(memory, "BUDGET", 512)
    assert rt.Features(torch.from_numpy(np.concatenate([qf, gf])), 9).block == 1
    np.testing.assert_allclose(rr.rerank_features(qf, gf, method=method, k1=7, k2=3, device="cpu"), whole, atol=1e-6)


def test_distance_matrices_on_device():
    qf, gf = features(4, 25, dim=5, seed=9)
    expected = rr.distance_matrices(qf, gf, k1=5, k2=2)
    got = rr.distance_matrices(qf, gf, k1=5, k2=2, device=torch.device("cpu"))
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_smallest_breaks_ties_by_column(seed):
    block = np.random.default_rng(seed).integers(0, [3, 30, 10**6][seed], (40, 90)).astype(np.float32)
    for k in (1, 5, 89, 90):
        expected = np.argsort(block, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(rt.nearest_columns(torch.from_numpy(block), k).numpy(), expected)


def test_caller_precision_is_restored():
    torch.set_float32_matmul_precision("high")
    try:
        rr.rerank_features(*features(2, 9, seed=1), k1=3, k2=2, device="cpu")
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision("highest")


def test_bad_device_is_a_reid_error(monkeypatch):
    qf, gf = features(2, 9, seed=2)
    with pytest.raises(ReidError, match="^device=gpu0: expected auto, cpu, cuda or cuda:<index>$"):
        rr.rerank_features(qf, gf, device="gpu0")
    with pytest.raises(ReidError, match="^device=meta: expected auto, cpu, cuda or cuda:<index>$"):
        rr.k_reciprocal(*blocks(qf, gf), device="meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ReidError, match="^device=cuda but CUDA is not available"):
        rr.hard_weight(*blocks(qf, gf), device="cuda")


@pytest.mark.parametrize("levels", [1, 2])
def test_torch_search_finds_the_same_neighbours(levels):
    """On grid features every distance is exact, so both searches see the same values: the lists must be equal."""
    qf, gf = features(7, 90, dim=4, seed=levels, levels=levels)
    src = rr.JointFeatures(np.concatenate([qf, gf]), len(qf), rows=13)
    host, torch_search = rr.HostSearch(), rt.TorchSearch(torch.device("cpu"))
    for got, expected in ((torch_search.ranked(src, 9), host.ranked(src, 9)),
                          (torch_search.tables(src, 8, 6, 7), host.tables(src, 8, 6, 7))):
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
