"""The fixtures several test modules use: a local HTTP server, tiny datasets, runs and exports.

What they are built from (and every other shared helper) is in helpers.py.
"""

from __future__ import annotations

import os

# Before anything can import huggingface_hub: it reads the variable once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

from helpers import SMOKE_TRAIN, FileServer, call, dataset_files, export, write_checkpoint, write_tree
from reid.io import save_matrix


@pytest.fixture
def file_server():
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def matrices(tmp_path):
    """Three models' distance matrices over the same 3 queries x 5 gallery images."""
    rng = np.random.default_rng(0)
    return [save_matrix(tmp_path / f"m{i}" / "dist.npy", rng.random((3, 5)).astype(np.float32), [1, 2, 3],
                        [10, 11, 12, 13, 14]) for i in range(3)]


@pytest.fixture
def official(tmp_path):
    """A partitioned official-layout dataset with challenge labels, and a run folder `run`."""
    write_tree(tmp_path / "data_reid", dataset_files())
    assert call("preprocess_data.py", f"--data_dir={tmp_path}").returncode == 0
    (tmp_path / "data_reid" / "reid_challenge" / "ground_truth.csv").write_text(
        "img_id,player\n" + "".join(f"reid_challenge/{'query' if i < 4 else 'gallery'}/{i}.jpeg,{i % 4}\n"
                                    for i in range(12)))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"")  # predict reads its data before any checkpoint
    return tmp_path


@pytest.fixture(scope="session")
def lite_run(tmp_path_factory):
    """A one-step efficientnet_lite0 run (ck/lite) on a tiny official-layout dataset (data)."""
    root = tmp_path_factory.mktemp("lite")
    write_tree(root / "data" / "data_reid", dataset_files(games=4, players=4, frames=5, test_games=2))
    assert call("preprocess_data.py", f"--data_dir={root / 'data'}", "--n_folds=4").returncode == 0
    result = call("train_our_post_resnet.py", f"--data_dir={root / 'data'}", f"--checkpoint_dir={root / 'ck'}",
                  *SMOKE_TRAIN[:2], "--batch_size=4", *SMOKE_TRAIN[3:], "--max_steps_per_epoch=1",
                  "--run_name=lite")
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def vit_export(tmp_path_factory):
    """A random test_vit checkpoint and its export."""
    root = tmp_path_factory.mktemp("export")
    ckpt = write_checkpoint(root / "runs" / "vit" / "best.pt", "test_vit", 32)
    result = export(root / "runs" / "vit", root / "model.onnx")
    assert result.returncode == 0, result.stderr
    return root, ckpt
