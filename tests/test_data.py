"""Names, the unique-player batch sampler, the datasets and the transform pipelines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import call, dataset_files, jpeg_bytes, write_tree
from reid.data import PairDataset, UniquePlayerBatchSampler, load_partition, split_fold
from reid.errors import ReidError
from reid.images import DataConfig, preprocess, read_image
from reid.layouts import parse_challenge_name, parse_name
from reid.transforms import train_transform

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_names_parse_and_bad_ones_are_named():
    assert parse_name("012_03_00.jpeg") == (12, 3, 0)
    assert parse_challenge_name("4711.jpeg") == 4711
    for bad in ("12_3.jpeg", "a_b_c.jpeg", "012_03_00.png"):
        with pytest.raises(ReidError, match=bad.replace(".", r"\.")):
            parse_name(bad)


@pytest.mark.parametrize("seed", range(6))
def test_sampler_properties_over_random_sizes_and_world_sizes(seed):
    rng = np.random.default_rng(seed)
    players = int(rng.integers(20, 60))
    labels = np.repeat(np.arange(players) * 7 + 3, rng.integers(1, 25, size=players))
    world = int(rng.integers(1, 5))
    batch = int(rng.integers(1, players // world + 1))
    samplers = [UniquePlayerBatchSampler(labels, batch, seed=seed, world_size=world, rank=r)
                for r in range(world)]
    for epoch in (0, 1):
        per_rank = []
        for s in samplers:
            s.set_epoch(epoch)
            per_rank.append(list(s))
        assert len({len(b) for b in per_rank}) == 1, "every rank runs the same number of steps"
        used = []
        for step in zip(*per_rank, strict=True):
            global_batch = [i for rank_batch in step for i, _ in rank_batch]
            assert all(len(b) == batch for b in step)
            assert len(set(labels[global_batch])) == len(global_batch), "a player twice in a batch"
            used += global_batch
        assert len(used) == len(set(used)), "an image used twice in one epoch"
        assert len(used) >= len(labels) - batch * world * labels.size // players
    again = UniquePlayerBatchSampler(labels, batch, seed=seed, world_size=world, rank=0, epoch=1)
    assert list(again) == per_rank[0], "the same (seed, epoch) gives the same order"
    other = UniquePlayerBatchSampler(labels, batch, seed=seed + 100, world_size=world, rank=0)
    assert list(other) != list(UniquePlayerBatchSampler(labels, batch, seed=seed, world_size=world))


def test_sampler_slices_one_global_batch():
    labels = np.repeat(np.arange(40), 10)
    whole = list(UniquePlayerBatchSampler(labels, 8, seed=3))
    halves = [list(UniquePlayerBatchSampler(labels, 4, seed=3, world_size=2, rank=r)) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves, strict=True)] == whole


def test_sampler_uses_nearly_every_image():
    labels = np.repeat(np.arange(436), np.random.default_rng(0).integers(10, 30, size=436))
    used = sum(len(b) for b in UniquePlayerBatchSampler(labels, 32, seed=1, world_size=4))
    assert used * 4 > 0.95 * len(labels)


def test_batch_larger_than_players_is_a_clear_error():
    with pytest.raises(ReidError, match="distinct players"):
        UniquePlayerBatchSampler(np.arange(10), 8, world_size=2)


@pytest.fixture(scope="module")
def partitions(tmp_path_factory):
    root = tmp_path_factory.mktemp("d")
    write_tree(root / "data_reid", dataset_files(games=4, players=3, frames=5, test_games=2))
    assert call("preprocess_data.py", f"--data_dir={root}").returncode == 0
    return root / "data_reid", load_partition(root / "data_reid" / "train_df.csv")


def test_pair_dataset_gives_same_player_pairs_reproducibly(partitions):
    root, df = partitions
    train, _ = split_fold(df, -1)
    ds = PairDataset(root, train, train_transform(32, MEAN, STD))
    rng = np.random.default_rng(0)
    for index in rng.integers(len(ds), size=10):
        partner = ds.partner(int(index), np.random.default_rng(int(index)))
        assert partner != index
        assert train["player"][partner] == train["player"][index]
        a, b, label = ds[(int(index), 77)]
        a2, b2, _ = ds[(int(index), 77)]
        assert a.shape == b.shape == (3, 32, 32) and a.dtype == torch.float32
        assert torch.equal(a, a2) and torch.equal(b, b2)
        assert label == ds.labels[index]
    assert ds.num_classes == train["player"].nunique()


def test_pair_is_flipped_together(partitions):
    root, df = partitions
    train, _ = split_fold(df, -1)
    steady = train_transform(32, MEAN, STD, sharpen=False, random_erasing=0.0)
    plain = PairDataset(root, train, steady, flip_p=0.0)
    flipped = PairDataset(root, train, steady, flip_p=1.0)
    a, b, _ = plain[(5, 1)]
    fa, fb, _ = flipped[(5, 1)]
    assert not torch.equal(a, fa)
    assert torch.allclose(fa, a.flip(-1), atol=1e-5) and torch.allclose(fb, b.flip(-1), atol=1e-5)


def test_corrupt_image_error_names_the_path(tmp_path):
    bad = tmp_path / "001_01_01.jpeg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ReidError, match=str(bad)):
        read_image(bad)
    with pytest.raises(ReidError, match="nope.jpeg"):
        read_image(tmp_path / "nope.jpeg")
    truncated = tmp_path / "001_01_02.jpeg"
    truncated.write_bytes(jpeg_bytes(np.random.default_rng(0), 64, 32)[:400])
    with pytest.raises(ReidError, match=str(truncated)):
        read_image(truncated)


def test_images_read_as_rgb(tmp_path):
    from PIL import Image

    path = tmp_path / "gray.jpeg"
    Image.fromarray(np.full((10, 6), 128, np.uint8)).save(path)
    assert read_image(path).shape == (10, 6, 3)


@pytest.mark.parametrize("hw", [(300, 90), (60, 40), (100, 100), (37, 211)])
def test_transforms_give_the_configured_square(hw):
    img = np.random.default_rng(0).integers(0, 255, (*hw, 3), dtype=np.uint8)
    assert train_transform(64, MEAN, STD)(image=img)["image"].shape == (3, 64, 64)
    assert preprocess(img, DataConfig(64, MEAN, STD)).shape == (3, 64, 64)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "area", "random"])
def test_evaluation_sees_the_training_pixels(interpolation):
    """The evaluation preprocessing (torch-free, used by ONNX deployments) and the training
    pipeline with its random parts off give the same values, bit for bit."""
    rng = np.random.default_rng(1)
    steady = train_transform(48, MEAN, STD, sharpen=False, random_erasing=0.0, interpolation=interpolation)
    for hw in [(300, 90), (61, 40), (48, 48), (37, 211), (5, 3), (1000, 7)]:
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        ours = preprocess(img, DataConfig(48, MEAN, STD, interpolation))
        assert ours.dtype == np.float32
        assert np.array_equal(ours, steady(image=img)["image"].numpy()), hw


def test_resize_keeps_aspect_ratio_and_pads():
    img = np.full((200, 50, 3), 255, dtype=np.uint8)
    out = preprocess(img, DataConfig(64, (0, 0, 0), (1, 1, 1)))
    filled = (out[0] > 0.5).any(axis=0)
    assert filled.sum() == 16, "a 4:1 crop keeps 16 of 64 columns"
    assert (out[:, :, :24] == 0).all()


def test_random_erasing_really_runs_inside_the_pipeline():
    img = np.full((64, 64, 3), 200, dtype=np.uint8)
    on = train_transform(64, (0, 0, 0), (1, 1, 1), sharpen=False, random_erasing=1.0)
    off = train_transform(64, (0, 0, 0), (1, 1, 1), sharpen=False, random_erasing=0.0)
    reference = off(image=img)["image"]
    erased = on(image=img)["image"]
    changed = (erased != reference).any(dim=0)
    assert changed.any() and (erased[:, changed] == 0).all()
    fraction = changed.float().mean().item()
    assert 0.02 * 0.9 <= fraction <= 0.33 * 1.1
