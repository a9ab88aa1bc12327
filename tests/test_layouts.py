"""Market-1501 layout: detected, read into the same partition, trained on and evaluated per camera."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import reference_rerank as ref
from helpers import call
from reid.io import load_matrix
from reid.synthetic.crops import sample_crops

TINY = ["--model=test_vit", "--pretrained=false", "--img_size=32", "--num_workers=0", "--warmup_epochs=0",
        "--rerank_eval=false", "--epochs=1", "--max_steps_per_epoch=1", "--batch_size=4", "--eval_batch_size=16"]


def market_names() -> dict[str, list[str]]:
    """Training players 1-6 and test players 7-10 over cameras 1-3, with distractors and junk;
    player 7 has a gallery image only in its query's camera (no possible match)."""
    train = [f"{pid:04d}_c{cam}s1_{100 * pid + cam:06d}_00.jpg" for pid in range(1, 7) for cam in (1, 2, 3)]
    query = [f"{pid:04d}_c1s1_{900 + pid:06d}_00.jpg" for pid in range(7, 11)]
    gallery = [f"{pid:04d}_c{cam}s1_{500 * pid + cam:06d}_01.jpg" for pid in range(8, 11) for cam in (1, 2, 3)]
    gallery += ["0007_c1s1_000007_02.jpg", "0000_c2s1_000001_00.jpg", "0000_c3s1_000002_00.jpg",
                "-1_c1s1_000003_00.jpg", "-1_c2s1_000004_00.jpg"]
    return {"bounding_box_train": train, "query": query, "bounding_box_test": gallery}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    data = tmp_path_factory.mktemp("market") / "data"
    layout = market_names()
    crops = iter(sample_crops(sum(len(v) for v in layout.values()), seed=11))
    for folder, names in layout.items():
        (data / "data_reid" / folder).mkdir(parents=True)
        for name in names:
            Image.fromarray(next(crops)).save(data / "data_reid" / folder / name)
        (data / "data_reid" / folder / "Thumbs.db").write_bytes(b"as in the published archive")
    return data


def test_a_market_layout_becomes_the_same_partition(market):
    result = call("preprocess_data.py", f"--data_dir={market}", "--n_folds=2")
    assert result.returncode == 0, result.stderr
    assert "layout    market1501 (detected)" in result.stdout
    assert "left out 2 junk images" in result.stdout
    assert "1 test queries have no possible match" in result.stdout
    df = pd.read_csv(market / "data_reid" / "train_df.csv")
    assert list(df.columns) == ["img_id", "folder", "player", "game", "split", "img_type", "fold", "camera"]
    assert -1 not in set(df["player"]) and (df["player"] == 0).sum() == 2
    test = df[df["split"] == "test"]
    assert set(test.loc[test["img_type"] == "q", "folder"]) == {"query"}
    assert (df[df["split"] == "train"].groupby("player")["img_type"].apply(lambda t: (t == "q").sum()) == 1).all()


def test_train_and_predict_run_unchanged_and_score_per_camera(market, tmp_path):
    assert call("preprocess_data.py", f"--data_dir={market}", "--n_folds=2").returncode == 0
    trained = call("train_our_post_resnet.py", f"--data_dir={market}", f"--checkpoint_dir={tmp_path}",
                   "--run_name=m", *TINY)
    assert trained.returncode == 0, trained.stderr
    predicted = call("predict.py", f"--checkpoints={tmp_path / 'm'}", f"--data_dir={market}", "--splits=test",
                     f"--out_dir={tmp_path / 'out'}", "--num_workers=0", "--k1=3", "--k2=2")
    assert predicted.returncode == 0, predicted.stderr
    mat, q, g = load_matrix(tmp_path / "out" / "m" / "test" / "dist.npy")
    labels = pd.read_csv(tmp_path / "out" / "m" / "test" / "labels.csv").set_index("img_id")
    df = pd.read_csv(market / "data_reid" / "train_df.csv")
    cams = df.assign(path=df["folder"] + "/" + df["img_id"]).set_index("path")["camera"]
    qc, gc = (cams[labels.loc[ids, "path"]].to_numpy() for ids in (q, g))
    qp, gp = labels.loc[q, "player"].to_numpy(), labels.loc[g, "player"].to_numpy()
    expected = ref.evaluate(mat, qp, gp, qc, gc)
    line = next(ln for ln in predicted.stdout.splitlines() if ln.startswith("m ") and "plain" in ln)
    assert float(line.split()[3]) == pytest.approx(100 * expected["mAP"], abs=0.006)
    assert ref.evaluate(mat, qp, gp)["mAP"] != pytest.approx(expected["mAP"]), "same-camera matches exist"


def test_layouts_are_told_apart_and_bad_names_named(tmp_path):
    root = tmp_path / "data" / "data_reid"
    root.mkdir(parents=True)
    result = call("preprocess_data.py", f"--data_dir={tmp_path / 'data'}")
    assert result.returncode == 1 and "matches no layout; expected one of official" in result.stderr
    for folder in ("reid_training", "bounding_box_train"):
        (root / folder).mkdir()
    result = call("preprocess_data.py", f"--data_dir={tmp_path / 'data'}")
    assert result.returncode == 1 and "mixes layouts (official, market1501)" in result.stderr
    (root / "reid_training").rmdir()
    for folder in ("query", "bounding_box_test"):
        (root / folder).mkdir()
    Image.fromarray(np.zeros((8, 4, 3), np.uint8)).save(root / "bounding_box_train" / "0001_cam1.jpg")
    result = call("preprocess_data.py", f"--data_dir={tmp_path / 'data'}")
    assert result.returncode == 1 and "0001_cam1.jpg: not a Market-1501 name" in result.stderr


def write_folders(root, players: list[str], per_sequence: dict[str, int], split: str, seed: int) -> None:
    """<root>/<split>/<player>/<sequence>/<image>.png with generated crops."""
    crops = iter(sample_crops(len(players) * sum(per_sequence.values()), seed=seed))
    for player in players:
        for sequence, count in per_sequence.items():
            folder = root / split / player / sequence
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(next(crops)).save(folder / f"img{i}.png")


def test_a_folder_per_player_trains_and_predicts_unchanged(tmp_path):
    root = tmp_path / "data" / "data_reid"
    names = ["anna", "ben", "carl", "dora", "eve", "finn"]
    write_folders(root, names, {"seq1": 3, "seq2": 2}, "train", seed=1)
    write_folders(root, ["gus", "hal", "ida"], {"s1": 3, "s2": 2}, "test", seed=2)
    (root / "test" / "solo" / "s1").mkdir(parents=True)
    Image.fromarray(sample_crops(1, seed=3)[0]).save(root / "test" / "solo" / "s1" / "only.png")
    result = call("preprocess_data.py", f"--data_dir={tmp_path / 'data'}", "--n_folds=2")
    assert result.returncode == 0, result.stderr
    assert "layout    folders (detected)" in result.stdout and "1 players have a single image" in result.stdout
    df = pd.read_csv(root / "train_df.csv")
    players = pd.read_csv(root / "players.csv")
    assert sorted(players["name"]) == sorted(names + ["gus", "hal", "ida", "solo"])
    test = df[df["split"] == "test"].merge(players, on="player")
    queries = test[test["img_type"] == "q"]
    assert sorted(queries["folder"]) == sorted(f"test/{p}/{s}" for p in ("gus", "hal", "ida") for s in ("s1", "s2"))
    assert (queries["img_id"] == "img0.png").all(), "the first image by name of each player and sequence"
    trained = call("train_our_post_resnet.py", f"--data_dir={tmp_path / 'data'}", f"--checkpoint_dir={tmp_path}",
                   "--run_name=f", *TINY)
    assert trained.returncode == 0, trained.stderr
    predicted = call("predict.py", f"--checkpoints={tmp_path / 'f'}", f"--data_dir={tmp_path / 'data'}",
                     "--splits=test", f"--out_dir={tmp_path / 'out'}", "--num_workers=0", "--k1=3", "--k2=2")
    assert predicted.returncode == 0, predicted.stderr
    mat, q, g = load_matrix(tmp_path / "out" / "f" / "test" / "dist.npy")
    assert mat.shape == (6, len(test) - 6)


def test_without_a_test_folder_players_are_held_out(tmp_path):
    root = tmp_path / "data" / "data_reid"
    write_folders(root, [f"p{i}" for i in range(10)], {"a": 2}, "train", seed=4)
    result = call("preprocess_data.py", f"--data_dir={tmp_path / 'data'}", "--n_folds=2")
    assert result.returncode == 0, result.stderr
    assert "held out 2 of 10 players as the test split (GroupKFold over players)" in result.stdout
    df = pd.read_csv(root / "train_df.csv")
    train, test = set(df.loc[df["split"] == "train", "player"]), set(df.loc[df["split"] == "test", "player"])
    assert len(test) == 2 and not train & test


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["official", "folders", "market1501"])
def test_synthetic_data_in_each_layout_goes_through_unchanged(layout, tmp_path):
    """download.py writes the layout; preprocess, train and predict take it with no change."""
    data = tmp_path / "data"
    made = call("download.py", "--synthetic=true", "--synthetic_size=tiny", f"--layout={layout}",
                f"--data_dir={data}")
    assert made.returncode == 0, made.stderr
    assert call("download.py", "--synthetic=true", "--synthetic_size=tiny", f"--layout={layout}",
                f"--data_dir={data}").stdout.count("nothing to do") == 1
    prepared = call("preprocess_data.py", f"--data_dir={data}", "--n_folds=2")
    assert prepared.returncode == 0, prepared.stderr
    assert f"layout    {layout} (detected)" in prepared.stdout
    trained = call("train_our_post_resnet.py", f"--data_dir={data}", f"--checkpoint_dir={tmp_path}", "--run_name=r",
                   *TINY)
    assert trained.returncode == 0, trained.stderr
    predicted = call("predict.py", f"--checkpoints={tmp_path / 'r'}", f"--data_dir={data}", "--splits=test",
                     f"--out_dir={tmp_path / 'out'}", "--num_workers=0", "--k1=3", "--k2=2")
    assert predicted.returncode == 0, predicted.stderr
    mat, q, g = load_matrix(tmp_path / "out" / "r" / "test" / "dist.npy")
    df = pd.read_csv(data / "data_reid" / "train_df.csv")
    assert mat.shape == ((df["split"] == "test").groupby(df["img_type"]).sum()["q"], len(g))
    assert ("camera" in df.columns) == (layout == "market1501")


def test_help_states_the_layouts_and_the_query_rule():
    text = call("preprocess_data.py", "--help").stdout
    assert "first image by name of each player in each sequence" in text and "--layout=auto" in text
    assert "junk pid -1 left out" in text


def test_sequences_can_come_from_a_csv(tmp_path):
    root = tmp_path / "data" / "data_reid"
    write_folders(root, [f"p{i}" for i in range(5)], {"": 4}, "train", seed=5)
    write_folders(root, ["t1", "t2"], {"": 4}, "test", seed=6)
    images = sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))
    rows = [f"{image},{int(image[-5]) // 2},{int(image[-5])}" for image in images]  # img0-1: sequence 0, img2-3: 1
    (root / "sequences.csv").write_text("image,sequence,frame\n" + "\n".join(rows) + "\n")
    assert call("preprocess_data.py", f"--data_dir={tmp_path / 'data'}", "--n_folds=2").returncode == 0
    df = pd.read_csv(root / "train_df.csv")
    queries = df[(df["split"] == "test") & (df["img_type"] == "q")]
    assert sorted(queries["img_id"]) == ["img0.png", "img0.png", "img2.png", "img2.png"]
    (root / "sequences.csv").write_text("image,sequence,frame\n" + "\n".join(rows[1:]) + "\n")
    result = call("preprocess_data.py", f"--data_dir={tmp_path / 'data'}", "--n_folds=2")
    assert result.returncode == 1 and "no sequence for 1 images" in result.stderr
