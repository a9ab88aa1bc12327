"""preprocess_data.py on generated trees: columns, counts, folds grouped by game, bad names."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from helpers import call, dataset_files, write_tree
from reid.data import CHALLENGE_COLUMNS, TRAIN_COLUMNS, split_fold


@pytest.fixture
def data_dir(tmp_path):
    write_tree(tmp_path / "data_reid", dataset_files(games=6, players=3, frames=5, test_games=2))
    return tmp_path


def test_partitions_have_the_documented_columns_and_counts(data_dir):
    result = call("preprocess_data.py", f"--data_dir={data_dir}", "--n_folds=3")
    assert result.returncode == 0, result.stderr
    train = pd.read_csv(data_dir / "data_reid" / "train_df.csv")
    assert list(train.columns) == list(TRAIN_COLUMNS)
    assert len(train) == (6 + 2) * 3 * 5
    assert (train["split"] == "train").sum() == 6 * 3 * 5
    queries = train[train["img_type"] == "q"]
    assert len(queries) == 8 * 3
    assert queries["img_id"].str.endswith("_00.jpeg").all()
    assert set(train.loc[train["split"] == "test", "folder"]) == {"reid_test/query", "reid_test/gallery"}
    assert set(train["fold"]) == {0, 1, 2}
    challenge = pd.read_csv(data_dir / "data_reid" / "challenge_df.csv")
    assert list(challenge.columns) == list(CHALLENGE_COLUMNS)
    assert (challenge["img_type"] == "q").sum() == 4 and (challenge["img_type"] == "g").sum() == 8
    assert (data_dir / "data_reid" / challenge["img_id"]).map(lambda p: p.is_file()).all()
    assert "train" in result.stdout and "queries" in result.stdout


def test_folds_never_split_a_game_and_output_is_deterministic(data_dir):
    call("preprocess_data.py", f"--data_dir={data_dir}", "--n_folds=4")
    first = (data_dir / "data_reid" / "train_df.csv").read_bytes()
    train = pd.read_csv(data_dir / "data_reid" / "train_df.csv")
    assert (train.groupby(["split", "game"])["fold"].nunique() == 1).all()
    for fold in sorted(set(train["fold"])):
        tr, val = split_fold(train, fold)
        assert not set(zip(tr["split"], tr["game"], strict=True)) & set(zip(val["split"], val["game"], strict=True))
    call("preprocess_data.py", f"--data_dir={data_dir}", "--n_folds=4")
    assert (data_dir / "data_reid" / "train_df.csv").read_bytes() == first


def test_more_folds_than_games_is_capped_and_said(data_dir):
    result = call("preprocess_data.py", f"--data_dir={data_dir}", "--n_folds=50")
    assert result.returncode == 0, result.stderr
    train = pd.read_csv(data_dir / "data_reid" / "train_df.csv")
    assert train["fold"].nunique() == 8
    assert "capped" in result.stdout


def test_fold_minus_one_trains_on_train_and_validates_on_test(data_dir):
    call("preprocess_data.py", f"--data_dir={data_dir}")
    train = pd.read_csv(data_dir / "data_reid" / "train_df.csv")
    tr, val = split_fold(train, -1)
    assert set(tr["split"]) == {"train"} and set(val["split"]) == {"test"}


def test_malformed_names_are_listed_with_a_count(data_dir):
    training = data_dir / "data_reid" / "reid_training"
    bad = [f"player{i}.jpeg" for i in range(12)] + ["1_2.jpeg"]
    for name in bad:
        (training / name).write_bytes(b"")
    result = call("preprocess_data.py", f"--data_dir={data_dir}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "13 file names" in result.stderr and "and 3 more" in result.stderr
    assert "1_2.jpeg" in result.stderr
    assert not (data_dir / "data_reid" / "train_df.csv").exists()


def test_malformed_challenge_names_are_reported(data_dir):
    (data_dir / "data_reid" / "reid_challenge" / "gallery" / "abc.jpeg").write_bytes(b"")
    result = call("preprocess_data.py", f"--data_dir={data_dir}")
    assert result.returncode == 1 and "abc.jpeg" in result.stderr and "{id}.jpeg" in result.stderr


@pytest.mark.parametrize("folder", ["reid_training", "reid_test/query", "reid_test/gallery"])
def test_missing_or_empty_folder_is_named(data_dir, folder):
    path = data_dir / "data_reid" / folder
    for f in path.iterdir():
        f.unlink()
    result = call("preprocess_data.py", f"--data_dir={data_dir}")
    assert result.returncode == 1 and folder in result.stderr
    path.rmdir()
    result = call("preprocess_data.py", f"--data_dir={data_dir}")
    assert result.returncode == 1 and folder in result.stderr


def test_missing_challenge_split_is_a_warning(tmp_path):
    write_tree(tmp_path / "data_reid", dataset_files(challenge=False))
    result = call("preprocess_data.py", f"--data_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stdout and "reid_challenge" in result.stdout
    assert (tmp_path / "data_reid" / "train_df.csv").exists()
    assert not (tmp_path / "data_reid" / "challenge_df.csv").exists()


def test_missing_dataset_says_what_to_run(tmp_path):
    result = call("preprocess_data.py", f"--data_dir={tmp_path}")
    assert result.returncode == 1 and "download.py" in result.stderr


def test_preprocess_refuses_an_empty_challenge_folder(tmp_path):
    files = {k: v for k, v in dataset_files().items() if not k.startswith("reid_challenge/query/")}
    write_tree(tmp_path / "data_reid", files)
    (tmp_path / "data_reid" / "reid_challenge" / "query").mkdir()
    result = call("preprocess_data.py", f"--data_dir={tmp_path}")
    assert result.returncode == 1 and "empty folder" in result.stderr and "reid_challenge/query" in result.stderr
    assert not list((tmp_path / "data_reid").glob("*.csv"))


def test_preprocess_forgets_a_challenge_split_that_is_gone(tmp_path):
    write_tree(tmp_path / "data_reid", dataset_files())
    assert call("preprocess_data.py", f"--data_dir={tmp_path}").returncode == 0
    shutil.rmtree(tmp_path / "data_reid" / "reid_challenge")
    result = call("preprocess_data.py", f"--data_dir={tmp_path}")
    assert result.returncode == 0 and "removed the stale" in result.stdout
    assert not (tmp_path / "data_reid" / "challenge_df.csv").exists()


def test_partitions_honour_the_umask(tmp_path):
    write_tree(tmp_path / "data_reid", dataset_files())
    old = os.umask(0o002)
    try:
        assert call("preprocess_data.py", f"--data_dir={tmp_path}").returncode == 0
    finally:
        os.umask(old)
    for name in ("train_df.csv", "challenge_df.csv"):
        assert (tmp_path / "data_reid" / name).stat().st_mode & 0o777 == 0o664

