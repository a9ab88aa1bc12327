"""When a run may be resumed or reused: the data fingerprint and the completion record."""

from __future__ import annotations

import shutil

import pytest

from helpers import SMOKE_TRAIN, call, dataset_files, write_tree
from reid.errors import ReidError
from reid.files import write_with
from reid.runs import COMPLETE, data_fingerprint, foreign_files, recipe_changes, reuse_problem, write_complete


@pytest.fixture
def root(tmp_path):
    data = tmp_path / "data"
    write_tree(data / "data_reid", dataset_files(games=3, players=2, frames=3, test_games=1))
    assert call("preprocess_data.py", f"--data_dir={data}", "--n_folds=3").returncode == 0
    return data / "data_reid"


def test_fingerprint_ignores_where_the_data_live(root, tmp_path):
    before = data_fingerprint(root)
    moved = tmp_path / "elsewhere"
    shutil.move(root.parent, moved)
    assert data_fingerprint(moved / "data_reid") == before


@pytest.mark.parametrize("change", ["edit an image", "remove an image", "rewrite the partition"])
def test_fingerprint_sees_changed_data(root, change):
    before = data_fingerprint(root)
    image = sorted((root / "reid_training").iterdir())[0]
    if change == "edit an image":
        image.write_bytes(image.read_bytes() + b"\0")
    elif change == "remove an image":
        image.unlink()
    else:
        csv = root / "train_df.csv"
        csv.write_text(csv.read_text().replace(",0\n", ",1\n", 1))
    if change == "remove an image":
        with pytest.raises(ReidError, match=f"cannot read image .*{image.name}"):
            data_fingerprint(root)
    else:
        assert data_fingerprint(root) != before


def test_recipe_changes_skip_paths_and_speed_settings():
    saved = {"lr": 1e-3, "data_dir": "/a", "num_workers": 4, "epochs": 5}
    wanted = {"lr": 1e-3, "data_dir": "b", "num_workers": 0, "epochs": 6}
    assert recipe_changes(saved, wanted) == ["epochs: 5 -> 6"]


def test_only_a_finished_run_with_the_same_recipe_and_data_is_reused(tmp_path):
    run = tmp_path / "run"
    config = {"lr": 1e-3, "data_dir": "/x"}
    assert reuse_problem(run, config, "d1") == "not trained yet"
    run.mkdir()
    assert "never finished" in reuse_problem(run, config, "d1")
    write_complete(run, config, "d1", 0.5)
    assert reuse_problem(run, {"lr": 1e-3, "data_dir": "/elsewhere"}, "d1") is None
    assert "other data" in reuse_problem(run, config, "d2")
    assert "lr: 0.001 -> 0.01" in reuse_problem(run, {"lr": 1e-2, "data_dir": "/x"}, "d1")
    (run / COMPLETE).write_text("{")
    assert "cannot be read" in reuse_problem(run, config, "d1")


def test_a_killed_write_is_ours_and_anything_else_is_foreign(tmp_path):
    """The temporary a killed checkpoint write leaves is the run's own; a user's file is not."""
    leftover = []
    write_with(tmp_path / "last.pt", lambda tmp: leftover.append(tmp.name))
    (tmp_path / leftover[0]).write_bytes(b"half")
    (tmp_path / "metrics.csv").write_text("epoch\n")
    assert foreign_files(tmp_path) == []
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".notes.txt.x1y2.part").write_text("mine too")
    assert foreign_files(tmp_path) == [".notes.txt.x1y2.part", "notes.txt"]

def test_a_run_folder_in_use_is_refused(official):
    from reid.runs import hold_run

    with hold_run(official / "ck" / "resnet50"):
        result = call("train_our_post_resnet.py", f"--data_dir={official}", f"--checkpoint_dir={official / 'ck'}",
                      *SMOKE_TRAIN)
    assert result.returncode == 1 and "being written by another training" in result.stderr
    assert not (official / "ck" / "resnet50").exists(), "the empty folder goes with the lock"

