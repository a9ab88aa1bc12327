"""identify.py: a folder of crops -> identities.csv, a sheet and scores; bad input in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import call, write_checkpoint
from reid.distance import sq_euclidean
from reid.fusion import fuse_features, mean_fuse


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("identify")
    data = root / "data"
    assert call("download.py", "--synthetic=true", "--synthetic_size=tiny", f"--data_dir={data}").returncode == 0
    write_checkpoint(root / "ck" / "a" / "best.pt", "test_vit", 32, seed=1)
    write_checkpoint(root / "ck" / "b" / "best.pt", "test_vit", 32, seed=2)
    write_checkpoint(root / "ck" / "cnn" / "best.pt", "efficientnet_lite0", 32, seed=3)
    return root, data / "data_reid"


def identify(root, *args):
    return call("identify.py", f"--checkpoints={root / 'ck' / 'a'}", "--num_workers=1", "--device=cpu", *args)


def test_identities_of_the_test_split_respect_frames_and_are_scored(setup, tmp_path):
    root, data = setup
    out = tmp_path / "ident"
    result = identify(root, f"--images={data / 'reid_test'}", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "identities.csv")
    names = sorted(str(p.relative_to(data / "reid_test")) for p in (data / "reid_test").rglob("*.jpeg"))
    assert sorted(table["image"]) == names and list(table.columns) == ["image", "identity", "confidence"]
    sizes = table["identity"].value_counts().sort_index().to_numpy()
    assert (np.diff(sizes) <= 0).all(), "identities are numbered largest first"
    assert table["confidence"].between(0, 1).all()
    fields = table["image"].str.extract(r"(\d+)_(\d+)_(\d+)\.jpeg$").astype(int)
    per_frame = table.assign(seq=fields[1], frame=fields[2]).groupby(["seq", "frame", "identity"]).size()
    assert (per_frame == 1).all(), "two crops of one frame are never one identity"
    k = table["identity"].nunique()
    assert f"{len(table)} images -> {k} identities" in result.stdout
    assert "against the ground truth: ARI" in result.stdout
    assert (out / "identities.png").stat().st_size > 0
    assert json.loads((out / "provenance.json").read_text())["frame_constraints"] is True


def test_groups_and_truth_come_from_csvs_and_models_are_fused(setup, tmp_path):
    root, data = setup
    truth = data / "reid_challenge" / "ground_truth.csv"
    out = tmp_path / "ident"
    result = identify(root, f"--checkpoints={root / 'ck' / 'a'},{root / 'ck' / 'b'}",
                      f"--images={data / 'reid_challenge'}", f"--groups={truth}", f"--truth={truth}",
                      f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out / "identities.csv")
    gt = pd.read_csv(truth).assign(image=lambda d: d["img_id"].str.removeprefix("reid_challenge/"))
    merged = table.merge(gt, on="image", validate="one_to_one")
    assert len(merged) == len(table) == len(gt)
    assert (merged.groupby(["sequence", "frame", "identity"]).size() == 1).all()
    assert "ARI" in result.stdout and "no frame constraints" not in result.stdout
    assert len(json.loads((out / "provenance.json").read_text())["sources"]) == 2


def test_other_names_mean_no_constraints_and_no_scores(setup, tmp_path):
    root, data = setup
    crops = tmp_path / "crops"
    crops.mkdir()
    for i, path in enumerate(sorted((data / "reid_test" / "gallery").glob("*.jpeg"))[:12]):
        Image.open(path).save(crops / f"crop{i}.png")
    result = identify(root, f"--images={crops}", f"--out_dir={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr
    assert "no frame constraints are used" in result.stdout and "ARI" not in result.stdout
    assert "12 images -> " in result.stdout


def test_crops_are_embedded_at_each_scale_a_model_takes(setup, tmp_path):
    """A convolutional model takes the default two input sizes; the ViT (16-pixel patches, 32
    pixels) cannot take 40, so it runs at 32 alone and says so in one line."""
    root, data = setup
    out = tmp_path / "ident"
    result = identify(root, f"--checkpoints={root / 'ck' / 'cnn'},{root / 'ck' / 'a'}",
                      f"--images={data / 'reid_test' / 'query'}", f"--out_dir={out}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("takes 32-pixel input only") == 1
    assert "a takes 32-pixel input only: its crops are embedded at that size alone" in result.stdout
    sources = json.loads((out / "provenance.json").read_text())["sources"]
    assert [(s["model"], s["scales"], s["flip"]) for s in sources] == [
        ("efficientnet_lite0", [1.0, 1.25], False), ("test_vit", [1.0], False)]
    flipped = identify(root, "--scales=1.5", "--flip_tta=true", f"--images={data / 'reid_test' / 'query'}",
                       f"--out_dir={tmp_path / 'flipped'}")
    assert flipped.returncode == 0, flipped.stderr
    assert json.loads((tmp_path / "flipped" / "provenance.json").read_text())["sources"][0]["flip"] is True


def test_bad_input_is_one_line_and_writes_nothing(setup, tmp_path):
    root, data = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpeg").write_bytes(b"not an image")
    mixed = tmp_path / "mixed"
    shutil.copytree(data / "reid_test" / "query", mixed)
    (mixed / "999_99_99.jpeg").write_bytes(b"\xff\xd8 broken")
    no_columns = tmp_path / "groups.csv"
    no_columns.write_text("image,frame\nx.jpeg,1\n")
    strangers = tmp_path / "strangers.csv"
    strangers.write_text("image,sequence,frame\nnobody.jpeg,1,1\n")
    out = tmp_path / "out"
    cases = [
        ([f"--images={empty}"], "no .jpg, .jpeg or .png images"),
        ([f"--images={tmp_path / 'nowhere'}"], "not a folder"),
        ([f"--images={junk}"], "no readable image"),
        ([f"--images={mixed}"], "999_99_99.jpeg"),
        ([f"--images={mixed}", f"--groups={no_columns}"], "missing columns sequence"),
        ([f"--images={data / 'reid_test'}", f"--groups={strangers}"], "nobody.jpeg"),
        ([f"--images={data / 'reid_test'}", f"--checkpoints={tmp_path / 'no_run'}"], "no checkpoint at"),
        ([f"--images={data / 'reid_test'}", "--scales=1,0"], "--scales"),
    ]
    for args, message in cases:
        result = identify(root, *args, f"--out_dir={out}")
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and not out.exists()
    skipped = identify(root, f"--images={mixed}", "--skip_bad=true", f"--out_dir={out}")
    assert skipped.returncode == 0 and "skipping 1 unreadable images" in skipped.stdout
    assert "999_99_99.jpeg" not in pd.read_csv(out / "identities.csv")["image"].tolist()


def test_fused_features_are_the_mean_of_squared_distances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 3))
    fused = fuse_features([a, b], weights=[1, 3])
    expected = mean_fuse([sq_euclidean(a, a), sq_euclidean(b, b)], weights=[1, 3])
    np.testing.assert_allclose(sq_euclidean(fused, fused), expected, atol=1e-4)
