"""identify (reid/clustering.py): identities found without their number, frame constraints, numbering,
confidence, tiny inputs and bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from reid.clustering import identify
from reid.errors import ReidError


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def blobs(sizes: list[int] | np.ndarray, dim: int = 32, spread: float = 0.3,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, identity, centres): Gaussian clusters of the given sizes around random unit
    centres, with noise of norm about `spread`, shuffled."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((len(sizes), dim)))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    x = unit(centres[truth] + rng.standard_normal((len(truth), dim)) * spread / np.sqrt(dim))
    perm = rng.permutation(len(truth))
    return x[perm], truth[perm], centres


def frames(truth: np.ndarray) -> np.ndarray:
    """A group per (block of 5 identities, k-th crop of each): every group holds distinct people."""
    rank = np.zeros(len(truth), dtype=np.int64)
    for t in np.unique(truth):
        rank[truth == t] = np.arange((truth == t).sum())
    return (truth // 5) * 1000 + rank


def respects(labels: np.ndarray, groups: np.ndarray) -> bool:
    """No identity holds two crops of one known group."""
    known = groups >= 0
    pairs = np.stack([groups[known], labels[known]], axis=1)
    return len(np.unique(pairs, axis=0)) == known.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_the_clusters_without_being_told_how_many(seed):
    sizes = np.random.default_rng(seed).integers(6, 31, size=15)
    x, truth, _ = blobs(sizes, seed=seed)
    labels, conf = identify(x)
    assert adjusted_rand_score(truth, labels) >= 0.95
    assert abs(labels.max() + 1 - 15) <= 1
    groups = frames(truth)
    labels, _ = identify(x, groups)
    assert adjusted_rand_score(truth, labels) >= 0.95
    assert respects(labels, groups)


def test_two_people_in_one_picture_are_never_one_identity():
    """Two people with identical features in each of 12 frames, among other people: one identity
    without the frames; with them, never two crops of a frame in one identity."""
    others, truth, _ = blobs([15, 20, 10, 18], dim=16, seed=2)
    rng = np.random.default_rng(0)
    look = unit(rng.standard_normal((1, 16)))
    pair = np.repeat(unit(look + 0.05 * rng.standard_normal((12, 16))), 2, axis=0)
    x = np.concatenate([pair, others])
    groups = np.concatenate([np.repeat(np.arange(12), 2), np.full(len(others), -1)])
    assert len(np.unique(identify(x)[0][:24])) == 1
    labels, _ = identify(x, groups)
    assert respects(labels, groups)
    assert adjusted_rand_score(truth, labels[24:]) == 1


def test_near_duplicates_in_a_group_are_split_and_unknown_groups_are_free():
    x, truth, _ = blobs([12, 15, 9, 20, 10], seed=3)
    groups = frames(truth)
    rng = np.random.default_rng(3)
    copies = rng.choice(len(x), size=20, replace=False)
    x2 = np.concatenate([x, unit(x[copies] + 1e-4 * rng.standard_normal(x[copies].shape))])
    groups2 = np.concatenate([groups, groups[copies]])
    labels, _ = identify(x2, groups2)
    assert respects(labels, groups2)
    assert np.all(labels[copies] != labels[len(x):])
    unknown = np.concatenate([groups, np.full(len(copies), -1)])
    labels, _ = identify(x2, unknown)
    assert np.mean(labels[copies] == labels[len(x):]) >= 0.9


def test_labels_are_numbered_largest_first():
    x, truth, _ = blobs([7, 25, 12, 30, 9, 16], seed=4)
    labels, conf = identify(x)
    assert labels.dtype == np.int64 and conf.dtype == np.float32
    assert labels.shape == conf.shape == (len(x),)
    sizes = np.bincount(labels)
    assert set(labels) == set(range(len(sizes)))
    assert np.all(np.diff(sizes) <= 0)
    assert list(sizes[:2]) == [30, 25]


def test_confidence_is_lower_between_two_identities():
    x, truth, centres = blobs([20, 20, 20], seed=5)
    middle = unit((centres[0] + centres[1])[None, :])
    labels, conf = identify(np.concatenate([x, middle]))
    assert np.all((conf >= 0) & (conf <= 1))
    assert np.median(conf[:-1]) > 0.9
    assert conf[-1] < 0.75
    assert conf[-1] < np.percentile(conf[:-1], 5)


def test_tiny_inputs():
    labels, conf = identify(np.zeros((0, 8), dtype=np.float32))
    assert labels.shape == conf.shape == (0,)
    labels, conf = identify(unit(np.ones((1, 8))))
    assert labels.tolist() == [0] and conf.tolist() == [1.0]
    two = unit(np.array([[1.0, 0.0], [0.0, 1.0]]))
    labels, conf = identify(two)
    assert set(labels) <= {0, 1} and labels.min() == 0
    assert np.all((conf >= 0) & (conf <= 1))
    same = unit(np.ones((2, 4)))
    labels, conf = identify(same, np.array([7, 7]))
    assert sorted(labels.tolist()) == [0, 1]
    assert np.all((conf >= 0) & (conf <= 1))


def test_memory_grows_with_the_neighbourhood_not_with_n_squared():
    n = 6000
    x, truth, _ = blobs([20] * (n // 20), dim=16, spread=0.15, seed=6)
    groups = frames(truth)
    tracemalloc.start()
    try:
        labels, _ = identify(x, groups)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < n * n * 8 / 4
    assert respects(labels, groups)
    assert adjusted_rand_score(truth, labels) >= 0.9


def test_bad_input_is_reported():
    x, _, _ = blobs([6, 6])
    with pytest.raises(ReidError, match="identify\\(\\): got an unexpected keyword argument 'min_cluster'"):
        identify(x, min_cluster=3)
    with pytest.raises(ReidError, match="groups"):
        identify(x, np.zeros(3, dtype=np.int64))
    with pytest.raises(ReidError, match="^k1=0: expected at least 1$"):
        identify(x, k1=0)
    with pytest.raises(ReidError, match="^min_cluster_size=1: expected at least 2$"):
        identify(x, min_cluster_size=1)
