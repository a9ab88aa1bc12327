"""Output folders: a stage never deletes or replaces what it did not write, two runs never share
a folder, and what a killed run left is cleared; the whole request is checked before any work.

The cases that could lose a user's files run as real processes, and every one of them compares
a checksum of the user's folders before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import SMOKE_TRAIN, call, dataset_files, run_script, write_checkpoint, write_tree
from reid.metrics import evaluate, scorable
from reid.outputs import MANIFEST, claimed


def checksum(root: Path) -> dict[str, str]:
    """Every file and folder below `root`, hidden ones included, with the sha256 of each file."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    write_tree(root / "data" / "data_reid", dataset_files(games=2, test_games=1, challenge=False))
    assert call("preprocess_data.py", f"--data_dir={root / 'data'}").returncode == 0
    crops = root / "crops"
    shutil.copytree(root / "data" / "data_reid" / "reid_test", crops)
    write_checkpoint(root / "ck" / "a" / "best.pt", "test_vit", 32, seed=1)
    return root, crops


def identify(root: Path, *args: str):
    return call("identify.py", f"--checkpoints={root / 'ck' / 'a'}", "--num_workers=0", "--device=cpu",
                "--scales=1", *args)


def user_folder(path: Path) -> Path:
    """A folder of someone's own files."""
    (path / "photos").mkdir(parents=True)
    (path / "thesis.docx").write_bytes(b"four years of work")
    (path / "photos" / "holiday.jpg").write_bytes(b"not ours")
    return path


@pytest.mark.parametrize("where, words", [
    ("images", "is the input --images"),
    ("parent", "holds the input --images"),
    ("inside", "lies inside the input --images"),
    ("documents", "thesis.docx"),
])
def test_identify_never_replaces_a_folder_it_did_not_write(setup, tmp_path, where, words):
    root, crops = setup
    images = tmp_path / "game" / "crops"
    shutil.copytree(crops, images)
    documents = user_folder(tmp_path / "documents")
    out = {"images": images, "parent": images.parent, "inside": images / "ident", "documents": documents}[where]
    before = checksum(tmp_path)
    result = run_script("identify.py", f"--images={images}", f"--out_dir={out}", f"--checkpoints={root / 'ck' / 'a'}",
                        "--device=cpu", "--num_workers=0")
    assert result.returncode == 1 and words in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert checksum(tmp_path) == before


def test_the_current_folder_is_refused_before_any_work(setup, tmp_path):
    root, crops = setup
    cwd = user_folder(tmp_path / "work")
    before = checksum(tmp_path)
    result = run_script("identify.py", f"--images={crops}", "--out_dir=.", f"--checkpoints={root / 'ck' / 'a'}",
                        "--device=cpu", cwd=cwd)
    assert result.returncode == 1 and "--out_dir=.: is the current folder" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "embedding" not in result.stderr
    assert checksum(tmp_path) == before


@pytest.mark.parametrize("out, words", [("", "the current folder"), ("/", "the root folder"),
                                        ("..", "a folder above the current one"), ("~", "the home folder")])
def test_the_root_the_home_and_above_are_refused_before_any_work(setup, tmp_path, monkeypatch, out, words):
    root, crops = setup
    monkeypatch.chdir(user_folder(tmp_path / "work"))
    before = checksum(tmp_path)
    result = identify(root, f"--images={crops}", f"--out_dir={out}")
    assert result.returncode == 1 and f"--out_dir={Path(out).expanduser()}: is {words}" in result.stderr, result.stderr
    assert checksum(tmp_path) == before


def test_an_earlier_output_is_replaced_and_one_with_a_user_file_is_not(setup, tmp_path):
    root, crops = setup
    out = tmp_path / "ident"
    assert identify(root, f"--images={crops}", f"--out_dir={out}").returncode == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["stage"] == "identify" and "identities.csv" in manifest["files"]
    again = identify(root, f"--images={crops}", f"--out_dir={out}")
    assert again.returncode == 0, again.stderr
    (out / "notes.txt").write_text("mine")
    before = checksum(out)
    refused = identify(root, f"--images={crops}", f"--out_dir={out}")
    assert refused.returncode == 1 and "notes.txt" in refused.stderr and "did not write" in refused.stderr
    assert checksum(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ident"], "no lock or staging left beside it"


def test_another_stages_output_is_not_identifys(setup, tmp_path):
    root, crops = setup
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text(json.dumps({"stage": "predict", "files": ["dist.npy"]}))
    (out / "dist.npy").write_bytes(b"x")
    result = identify(root, f"--images={crops}", f"--out_dir={out}")
    assert result.returncode == 1 and "output of 'predict'" in result.stderr


def test_a_linked_output_folder_is_written_at_its_target(setup, tmp_path):
    root, crops = setup
    target = tmp_path / "target"
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    target.mkdir()
    assert identify(root, f"--images={crops}", f"--out_dir={link}").returncode == 0
    assert link.is_symlink() and (target / "identities.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"], "no stale .old or staging"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    result = identify(root, f"--images={crops}", f"--out_dir={dangling}")
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_a_folder_being_written_is_refused_at_once(setup, tmp_path):
    root, crops = setup
    out = tmp_path / "ident"
    with claimed([out], "out_dir", "identify"):
        result = identify(root, f"--images={crops}", f"--out_dir={out}")
    assert result.returncode == 1 and "being written by another run" in result.stderr
    assert not out.exists()


def test_a_concurrent_process_is_refused_while_the_first_writes(setup, tmp_path):
    """Two real processes into one folder: the second stops at once, the first finishes whole."""
    import subprocess
    import sys

    root, crops = setup
    out = tmp_path / "ident"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; sys.path.insert(0, sys.argv[1]); from reid.outputs import claimed\n"
        "with claimed([sys.argv[2]], 'out_dir', 'identify'):\n    print('held', flush=True); sys.stdin.read()"),
        str(Path(__file__).resolve().parents[1]), str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = identify(root, f"--images={crops}", f"--out_dir={out}")
        assert result.returncode == 1 and "being written by another run" in result.stderr
    finally:
        holder.kill()
        holder.wait()
    assert identify(root, f"--images={crops}", f"--out_dir={out}").returncode == 0, "a killed holder frees it"


def test_staging_left_by_a_killed_run_is_cleared(setup, tmp_path):
    root, crops = setup
    out = tmp_path / "ident"
    for leftover in (".ident.partial-k1", ".ident.partial-k2", ".ident.old-k3"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "identities.csv").write_bytes(b"\0" * 1000)
    assert identify(root, f"--images={crops}", f"--out_dir={out}").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ident"]


def test_a_run_killed_between_the_two_renames_gets_its_old_output_back(setup, tmp_path):
    root, crops = setup
    out = tmp_path / "ident"
    assert identify(root, f"--images={crops}", f"--out_dir={out}").returncode == 0
    before = checksum(out)
    out.rename(tmp_path / ".ident.old-killed")
    with claimed([out], "out_dir", "identify"):
        assert checksum(out) == before


def test_identify_checks_the_whole_request_before_any_model_loads(setup, tmp_path):
    root, crops = setup
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"never loaded")
    out = tmp_path / "ident"
    cases = [
        ([f"--images={crops}", f"--checkpoints={root / 'ck' / 'a'},{graph}", "--flip_tta=true"], "flip"),
        ([f"--images={graph}"], "a file, not a folder"),
        ([f"--images={crops}", "--scales=1e-9"], "at least 0.25"),
        ([f"--images={crops}", "--scales=1,1000"], "at most 4"),
    ]
    for args, words in cases:
        result = identify(root, *args, f"--out_dir={out}")
        assert result.returncode == 1 and words in result.stderr, (args, result.stderr)
        assert "embedding" not in result.stdout + result.stderr and not out.exists()


def test_an_image_named_twice_in_groups_or_truth_is_refused(setup, tmp_path):
    root, crops = setup
    name = sorted(p.name for p in (crops / "gallery").iterdir())[0]
    for option, header, rows in (("groups", "image,sequence,frame", ["1,1", "1,99"]),
                                 ("truth", "image,player", ["16", "99"])):
        table = tmp_path / f"{option}.csv"
        table.write_text(f"{header}\ngallery/{name},{rows[0]}\n{crops.name}/gallery/{name},{rows[1]}\n")
        result = identify(root, f"--images={crops}", f"--{option}={table}", f"--out_dir={tmp_path / 'out'}")
        assert result.returncode == 1 and "rows 2 and 3 both name" in result.stderr, result.stderr


def test_frames_from_names_are_counted_within_each_folder(setup, tmp_path):
    import identify as stage

    names = ["game_1/001_01_05.jpeg", "game_1/002_01_05.jpeg", "game_2/001_01_05.jpeg"]
    groups = stage.crop_groups(stage.Config(images=tmp_path), names)
    assert groups[0] == groups[1] and groups[0] != groups[2]


def test_identify_says_how_many_images_it_found(setup, tmp_path):
    root, crops = setup
    result = identify(root, f"--images={crops}", f"--out_dir={tmp_path / 'out'}")
    found = len(list(crops.rglob("*.jpeg")))
    assert result.returncode == 0 and f"found {found} images in {crops}" in result.stdout


def predict(root: Path, *args: str):
    return call("predict.py", f"--data_dir={root / 'data'}", f"--checkpoints={root / 'ck' / 'a'}", "--device=cpu",
                "--num_workers=0", "--k1=3", "--k2=2", *args)


def test_predict_never_replaces_a_folder_it_did_not_write(setup, tmp_path):
    root, _ = setup
    user_folder(tmp_path / "out" / "a" / "test")
    before = checksum(tmp_path)
    result = predict(root, f"--out_dir={tmp_path / 'out'}", "--splits=test")
    assert result.returncode == 1 and "thesis.docx" in result.stderr and checksum(tmp_path) == before
    data = checksum(root / "data")
    result = predict(root, f"--out_dir={root / 'data'}", "--splits=test")
    assert result.returncode == 1 and "holds the input --data_dir" in result.stderr
    assert checksum(root / "data") == data


def test_predict_refuses_splits_before_any_model_loads(setup, tmp_path):
    root, _ = setup
    for args, words in (["--splits=test,test", "expected each value once"], ["--splits=challenge", "no "]):
        result = predict(root, args, f"--out_dir={tmp_path / 'out'}")
        assert result.returncode == 1 and words in result.stderr and not (tmp_path / "out").exists(), result.stderr


def test_predict_says_over_how_many_queries_it_scored(setup, tmp_path):
    root, _ = setup
    result = predict(root, f"--out_dir={tmp_path / 'out'}", "--splits=test")
    assert result.returncode == 0, result.stderr
    assert "queries scored" in result.stdout and " 3/3" in result.stdout


def test_scorable_is_what_evaluate_scores():
    rng = np.random.default_rng(0)
    q, g = rng.integers(0, 6, 20), rng.integers(0, 6, 40)
    qc, gc = rng.integers(0, 2, 20), rng.integers(0, 2, 40)
    counted = (q[:, None] == g[None, :]) & (qc[:, None] != gc[None, :])
    np.testing.assert_array_equal(scorable(q, g, qc, gc), counted.any(axis=1))
    np.testing.assert_array_equal(scorable(q, g), (q[:, None] == g[None, :]).any(axis=1))
    keep = scorable(q, g, qc, gc)
    dist = rng.random((20, 40)).astype(np.float32)
    assert evaluate(dist, q, g, qc, gc)["mAP"] == pytest.approx(
        evaluate(dist[keep], q[keep], g, qc[keep], gc)["mAP"])


def test_every_gallery_image_in_its_querys_camera_is_refused_before_any_work(setup, tmp_path):
    root, _ = setup
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    partition = data / "data_reid" / "train_df.csv"
    df = pd.read_csv(partition)
    df["camera"] = df["game"]  # one camera per game: every query's matches come from its own camera
    df.to_csv(partition, index=False)
    result = call("predict.py", f"--data_dir={data}", f"--checkpoints={root / 'ck' / 'a'}", "--splits=test",
                  f"--out_dir={tmp_path / 'out'}", "--device=cpu")
    assert result.returncode == 1 and "taken by another camera" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
    assert os.listdir(tmp_path) == ["data"]


def test_a_fusion_never_replaces_a_folder_it_did_not_write(tmp_path):
    from reid.io import save_matrix

    rng = np.random.default_rng(0)
    inputs = [save_matrix(tmp_path / name / "dist.npy", rng.random((3, 5)).astype(np.float32), range(3), range(5))
              for name in ("a", "b")]
    listed = f"--inputs={inputs[0]},{inputs[1]}"
    documents = user_folder(tmp_path / "documents")
    before = checksum(tmp_path)
    for script in ("sim_fuse.py", "dissim_fuse.py"):
        for out, words in ((documents, "thesis.docx"), (tmp_path, "holds the input --inputs"),
                           (inputs[0].parent / "fused", "lies inside the input --inputs")):
            result = call(script, listed, f"--out_dir={out}")
            assert result.returncode == 1 and words in result.stderr, (script, out, result.stderr)
    assert checksum(tmp_path) == before
    fused = tmp_path / "fused"
    assert call("sim_fuse.py", listed, f"--out_dir={fused}").returncode == 0
    assert call("dissim_fuse.py", listed, f"--out_dir={fused}").returncode == 0, "one fusion replaces the other"
    assert sorted(p.name for p in fused.iterdir()) == sorted(
        ["dist.npy", "dist.csv", "query_ids.txt", "gallery_ids.txt", "matrices.json", MANIFEST])


@pytest.mark.parametrize("script, option", [
    ("train_our_post_resnet.py", "checkpoint_dir"),
    ("predict.py", "out_dir"),
    ("sim_fuse.py", "out_dir"),
    ("download.py", "data_dir"),
])
def test_an_output_folder_under_a_file_is_refused_before_any_work(official, matrices, script, option):
    (official / "taken").write_text("a file")
    target = official / "taken" / "sub"
    args = {"train_our_post_resnet.py": [f"--data_dir={official}", *SMOKE_TRAIN],
            "predict.py": [f"--data_dir={official}", f"--checkpoints={official / 'run'}"],
            "sim_fuse.py": [f"--inputs={matrices[0]},{matrices[1]}"],
            "download.py": ["--synthetic=true", "--synthetic_size=tiny"]}[script]
    result = call(script, *args, f"--{option}={target}")
    assert result.returncode == 1 and f"--{option}={target}" in result.stderr and "is a file" in result.stderr

