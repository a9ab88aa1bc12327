"""The ablation's tables: what README quotes must be the mean and spread of the runs on disk."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import ablation
from reid.io import save_matrix

QUERIES = np.array([0, 1])
GALLERY = np.array([10, 11, 12, 13])
PLAYERS = {0: "a", 1: "b", 10: "a", 11: "b", 12: "a", 13: "b"}
RIGHT = np.array([[0.1, 0.9, 0.2, 0.8], [0.9, 0.1, 0.8, 0.2]])  # every true match first: mAP 100
WRONG = np.array([[0.9, 0.1, 0.8, 0.2], [0.1, 0.9, 0.2, 0.8]])  # every true match last: mAP 41.7


def write(out: Path, folder: str, distmat: np.ndarray) -> None:
    for split in ablation.SPLITS:
        save_matrix(out / folder / split / "dist.npy", distmat.astype(np.float32), QUERIES, GALLERY)
        labels = pd.DataFrame({"img_id": list(PLAYERS), "player": list(PLAYERS.values())})
        labels.to_csv(out / folder / split / "labels.csv", index=False)


@pytest.fixture
def cfg(tmp_path: Path) -> ablation.Config:
    return ablation.Config(out_dir=tmp_path, seeds=(1, 2))


def test_over_seeds_is_the_mean_with_half_the_spread(cfg: ablation.Config) -> None:
    write(cfg.out_dir, ablation.run_name(ablation.RECIPE, 1), RIGHT)
    write(cfg.out_dir, ablation.run_name(ablation.RECIPE, 2), WRONG)
    wrong_map = 100 * (1 / 3 + 2 / 4) / 2  # true matches at ranks 3 and 4 of 4
    row = ablation.over_seeds(cfg, ablation.RECIPE, "dist")
    assert row["test mAP"] == f"{(100 + wrong_map) / 2:.1f} ± {(100 - wrong_map) / 2:.1f}"
    assert row["challenge rank-1"] == "50.0 ± 50.0"


def test_run_names_are_distinct_folder_names() -> None:
    names = {ablation.run_name(v, s) for v in ablation.VARIANTS for s in (1, 2)}
    assert len(names) == 2 * len(ablation.VARIANTS)
    assert all(n.replace("_", "").isalnum() for n in names)


def test_markdown_table_has_a_row_per_variant() -> None:
    table = pd.DataFrame({"test mAP": ["1.0", "2.0"]}, index=["x", "y"])
    lines = ablation.markdown("title", table).splitlines()
    assert lines[0] == "**title**"
    assert lines[2:] == ["| | test mAP |", "|---|---|", "| x | 1.0 |", "| y | 2.0 |"]
