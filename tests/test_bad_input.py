"""Bad values end in one clear line naming the option and what it allows, before anything is written.

Each case runs a stage's entry point as its command line would (conftest.call: anything but a
clean one-line error raises, so a passing case also shows there was no traceback).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, call, dataset_files, run_script, write_tree
from reid.errors import ReidError
from reid.io import save_matrix

TRAIN = ["--model=efficientnet_lite0", "--img_size=64", "--batch_size=8", "--num_workers=0", "--device=cpu",
         "--max_steps_per_epoch=2", "--epochs=1", "--rerank_eval=false"]

CASES = [
    # (script, the bad argument, words the one line must hold)
    ("train_our_post_resnet.py", "--batch_size=0", "at least 1"),
    ("train_our_post_resnet.py", "--batch_size=-3", "at least 1"),
    ("train_our_post_resnet.py", "--accum_steps=0", "at least 1"),
    ("train_our_post_resnet.py", "--accum_steps=-1", "at least 1"),
    ("train_our_post_resnet.py", "--max_steps_per_epoch=-1", "at least 0"),
    ("train_our_post_resnet.py", "--epochs=0", "at least 1"),
    ("train_our_post_resnet.py", "--epochs=-2", "at least 1"),
    ("train_our_post_resnet.py", "--lr=nan", "finite"),
    ("train_our_post_resnet.py", "--lr=inf", "finite"),
    ("train_our_post_resnet.py", "--lr=-1", "above 0"),
    ("train_our_post_resnet.py", "--lr_end=nan", "finite"),
    ("train_our_post_resnet.py", "--weight_decay=nan", "finite"),
    ("train_our_post_resnet.py", "--img_size=-64", "at least 1"),
    ("train_our_post_resnet.py", "--img_size=0", "at least 1"),
    ("train_our_post_resnet.py", "--random_erasing=2", "at most 1"),
    ("train_our_post_resnet.py", "--flip_p=5", "at most 1"),
    ("train_our_post_resnet.py", "--label_smoothing=3", "below 1"),
    ("train_our_post_resnet.py", "--warmup_epochs=-5", "at least 0"),
    ("train_our_post_resnet.py", "--clip_grad=nan", "finite"),
    ("train_our_post_resnet.py", "--eval_batch_size=0", "at least 1"),
    ("train_our_post_resnet.py", "--num_workers=-1", "at least 0"),
    ("train_our_post_resnet.py", "--seed=-1", "at least 0"),
    ("train_our_post_resnet.py", "--fold=-2", "at least -1"),
    ("train_our_post_resnet.py", "--run_name=", "plain folder name"),
    ("train_our_post_resnet.py", "--run_name=../escaped", "plain folder name"),
    ("train_our_post.py", "--label_smoothing=1", "below 1"),
    ("predict.py", "--batch_size=0", "at least 1"),
    ("predict.py", "--k1=0", "at least 1"),
    ("predict.py", "--lambda_value=5", "at most 1"),
    ("predict.py", "--lambda_value=nan", "finite"),
    ("predict.py", "--visualize_queries=0", "at least 1"),
    ("predict.py", "--visualize_queries=-3", "at least 1"),
    ("download.py", "--retries=-1", "at least 0"),
    ("download.py", "--seed=-1", "at least 0"),
    ("download.py", "--timeout=0", "above 0"),
    ("download.py", "--backoff=-1", "at least 0"),
    ("preprocess_data.py", "--n_folds=0", "at least 2"),
    ("preprocess_data.py", "--n_folds=1", "at least 2"),
    ("preprocess_data.py", "--n_folds=-2", "at least 2"),
    ("dissim_fuse.py", "--topk=0", "at least 1"),
    ("dissim_fuse.py", "--min_votes=0", "at least 1"),
    ("sim_fuse.py", "--weights=1,nan", "finite"),
    ("sim_fuse.py", "--weights=1,-1", "at least 0"),
    ("demo.py", "--epochs=0", "at least 1"),
    ("demo.py", "--img_sizes=96,0", "at least 1"),
]


def folders(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("script, bad, words", CASES, ids=[f"{s}{a}" for s, a, _ in CASES])
def test_bad_value_is_one_line_and_writes_nothing(tmp_path, script, bad, words):
    where = [f"--data_dir={tmp_path / 'data'}", f"--out_dir={tmp_path / 'out'}",
             f"--checkpoint_dir={tmp_path / 'ck'}"]
    args = [a for a in where if a.split("=")[0].lstrip("-") in _fields(script)]
    args += TRAIN if script.startswith("train") else []
    result = call(script, *args, bad)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: {bad.split('=')[0]}=") and words in line, line
    assert folders(tmp_path) == set(), "nothing may be written"


def test_predict_size_after_at_is_checked(tmp_path):
    for bad in ("abc", "0"):
        result = call("predict.py", f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'out'}",
                      f"--checkpoints=pretrained:efficientnet_lite0@{bad}")
        assert result.returncode == 1 and "whole number of pixels" in result.stderr
        assert not (tmp_path / "out").exists()


def test_a_tilde_in_a_path_means_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    import preprocess_data
    from reid.config import parse_args

    assert parse_args(preprocess_data.Config, ["--data_dir=~/dd"]).data_dir == tmp_path / "dd"


def _fields(script: str) -> set[str]:
    import dataclasses
    import importlib
    from pathlib import Path

    return {f.name for f in dataclasses.fields(importlib.import_module(Path(script).stem).Config)}


@pytest.fixture
def matrices(tmp_path):
    rng = np.random.default_rng(0)
    return [save_matrix(tmp_path / f"m{i}" / "dist.npy", rng.random((3, 5)).astype(np.float32), [1, 2, 3],
                        [10, 11, 12, 13, 14]) for i in range(3)]


@pytest.mark.parametrize("script, args, words", [
    ("dissim_fuse.py", ["--min_votes=5"], "only 3 models vote"),
    ("sim_fuse.py", ["--out_dir={m0}"], "would be overwritten"),
    ("dissim_fuse.py", ["--out_dir={m1}"], "would be overwritten"),
    ("sim_fuse.py", ["--inputs={m0}/dist.npy,{m0}/dist.npy"], "given twice"),
    ("sim_fuse.py", ["--labels={m0}/missing.csv"], "missing.csv"),
])
def test_fusion_refuses_before_writing(tmp_path, matrices, script, args, words):
    names = {f"m{i}": m.parent for i, m in enumerate(matrices)}
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    inputs = [f"--inputs={','.join(map(str, matrices))}"]
    args = [a.format(**names) for a in args]
    given = {a.split("=")[0] for a in args}
    defaults = [a for a in [*inputs, f"--out_dir={tmp_path / 'out'}"] if a.split("=")[0] not in given]
    result = call(script, *defaults, *args)
    assert result.returncode == 1 and words in result.stderr and result.stderr.count("\n") == 1
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("runs, words", [
    (["a/run", "b/run"], "would both write run/"),
    (["x/mean", "x/other"], "where the mean of all goes"),
])
def test_predict_refuses_entries_that_share_an_output_folder(tmp_path, runs, words):
    for run in runs:
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "best.pt").write_bytes(b"")
    result = call("predict.py", f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'out'}",
                  f"--checkpoints={','.join(str(tmp_path / r) for r in runs)}")
    assert result.returncode == 1 and words in result.stderr
    assert not (tmp_path / "out").exists()


def test_predict_refuses_no_splits(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"")
    result = call("predict.py", f"--data_dir={tmp_path}", f"--checkpoints={tmp_path / 'run'}", "--splits=")
    assert result.returncode == 1 and "no splits given" in result.stderr


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


@pytest.fixture(scope="module")
def lite_run(tmp_path_factory):
    """A one-step efficientnet_lite0 run on a tiny official-layout dataset."""
    root = tmp_path_factory.mktemp("lite")
    write_tree(root / "data" / "data_reid", dataset_files(games=4, players=4, frames=5, test_games=2))
    assert call("preprocess_data.py", f"--data_dir={root / 'data'}", "--n_folds=4").returncode == 0
    result = call("train_our_post_resnet.py", f"--data_dir={root / 'data'}", f"--checkpoint_dir={root / 'ck'}",
                  *TRAIN[:2], "--batch_size=4", *TRAIN[3:], "--max_steps_per_epoch=1", "--run_name=lite")
    assert result.returncode == 0, result.stderr
    return root


def checkpoint_without_std(path):
    ckpt = torch.load(path, weights_only=True)
    del ckpt["data_config"]["std"]
    return ckpt


@pytest.mark.slow
@pytest.mark.parametrize("make, words", [
    (lambda run: b"just some text\n", "not a weights file that torch.load reads safely"),
    (lambda run: checkpoint_without_std(run / "best.pt"), "data_config is incomplete"),
    (lambda run: {"model": {}}, "not a checkpoint written by train_our_post"),
])
def test_predict_names_a_checkpoint_it_cannot_use(lite_run, tmp_path, make, words):
    bad = tmp_path / "bad.pt"
    content = make(lite_run / "ck" / "lite")
    bad.write_bytes(content) if isinstance(content, bytes) else torch.save(content, bad)
    result = call("predict.py", f"--data_dir={lite_run / 'data'}", f"--out_dir={tmp_path / 'out'}",
                  "--num_workers=0", f"--checkpoints={bad}")
    assert result.returncode == 1 and words in result.stderr and "weights_only=False" not in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("weights, words", [
    ("text", "not a weights file that torch.load reads safely"),
    ("lite", "size mismatch for"),
])
def test_pretrained_weights_that_do_not_fit_are_one_line(lite_run, tmp_path, weights, words):
    path = lite_run / "ck" / "lite" / "last.pt"
    if weights == "text":
        path = tmp_path / "notes.pt"
        path.write_text("not weights")
    result = call("train_our_post_resnet.py", f"--data_dir={lite_run / 'data'}", f"--checkpoint_dir={tmp_path}",
                  "--model=resnet18", f"--pretrained={path}", *TRAIN[1:])
    assert result.returncode == 1 and words in result.stderr and "weights_only=False" not in result.stderr
    assert result.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == ([path] if weights == "text" else [])


@pytest.mark.parametrize("damage, words", [
    (lambda data: b"", "empty file"),
    (lambda data: data[:-10], "truncated JPEG"),
    (lambda data: b"GIF89a not really", "cannot identify image file"),
])
def test_preprocess_lists_unreadable_images_and_writes_nothing(tmp_path, damage, words):
    files = dataset_files()
    bad = "reid_test/gallery/012_00_03.jpeg"
    files[bad] = damage(files[bad])
    write_tree(tmp_path / "data_reid", files)
    result = call("preprocess_data.py", f"--data_dir={tmp_path}")
    assert result.returncode == 1 and "1 unreadable images" in result.stderr and bad in result.stderr
    assert words in result.stderr and not list((tmp_path / "data_reid").glob("*.csv"))


def test_an_error_from_a_loader_worker_is_one_line(tmp_path, capsys):
    """torch re-raises a worker's ReidError with the worker's traceback in its message."""
    from reid.config import run
    from reid.data import make_loader

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise ReidError(f"cannot read image /x/{i}.jpeg: broken data stream")

    def main(_):
        list(make_loader(Broken(), num_workers=1))

    with pytest.raises(SystemExit):
        run(main, dataclasses.make_dataclass("Empty", []), [])
    assert capsys.readouterr().err == "error: cannot read image /x/0.jpeg: broken data stream\n"


@pytest.mark.slow
def test_ctrl_c_with_loader_workers_is_one_line(tmp_path):
    """Ctrl-C reaches the whole process group, workers included, as a terminal sends it."""
    write_tree(tmp_path / "data" / "data_reid", dataset_files(games=4, players=4, frames=5, test_games=2))
    assert call("preprocess_data.py", f"--data_dir={tmp_path / 'data'}", "--n_folds=4").returncode == 0
    args = [f"--data_dir={tmp_path / 'data'}", f"--checkpoint_dir={tmp_path / 'ck'}", "--model=test_vit",
            "--pretrained=false", "--img_size=32", "--batch_size=4", "--num_workers=2", "--epochs=50",
            "--rerank_eval=false"]
    proc = subprocess.Popen([sys.executable, "train_our_post_resnet.py", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    for line in proc.stdout:
        if "steps per epoch" in line:
            break
    time.sleep(2)  # inside the first epoch, the workers loading batches
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and "exited unexpectedly" not in err
    assert err.rstrip().splitlines()[-1] == "interrupted"


def test_loader_workers_leave_ctrl_c_to_the_main_process():
    """A worker killed by Ctrl-C can surface as 'DataLoader worker exited unexpectedly' before the
    main process's KeyboardInterrupt; workers that ignore SIGINT cannot."""
    from reid.data import make_loader

    class Handlers(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return int(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)

    assert [int(x) for x in make_loader(Handlers(), num_workers=1)] == [1, 1]


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return i


def test_ctrl_c_is_held_to_the_end_of_the_block_and_a_second_is_not():
    from reid.data import ctrl_c_held

    steps = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_held():
            signal.raise_signal(signal.SIGINT)
            steps.append("finished")
    assert steps == ["finished"]
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_held():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            steps.append("not reached")
    assert steps == ["finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_loader_workers_start_is_raised_not_lost(capfd):
    """Python swallows a KeyboardInterrupt raised in an at-fork hook (logging has one): the
    epoch would go on as if Ctrl-C had not been pressed."""
    from reid.data import make_loader

    armed = [True]

    def press():
        if armed:
            armed.clear()
            signal.raise_signal(signal.SIGINT)

    os.register_at_fork(after_in_parent=press)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        seen.extend(make_loader(_Items(), num_workers=1))
    assert not armed and seen == []
    assert "Exception ignored" not in capfd.readouterr().err


class _PressOnExit(_Items):
    """Each worker sends Ctrl-C to the main process as it exits, while the main process stops it."""

    def __getitem__(self, i):
        import multiprocessing.util

        multiprocessing.util.Finalize(self, os.kill, args=(os.getppid(), signal.SIGINT), exitpriority=0)
        return i


def test_ctrl_c_while_loader_workers_stop_is_raised_not_lost(capfd):
    """An epoch stopped early (as training stops at its step count) shuts its workers down when
    it is closed, where a Ctrl-C is raised, not in a finaliser, where Python would lose it."""
    from reid.data import make_loader

    with pytest.raises(KeyboardInterrupt):
        with contextlib.closing(iter(make_loader(_PressOnExit(), num_workers=1))) as batches:
            next(batches)
    assert "Exception ignored" not in capfd.readouterr().err


def _csv_case(root, name, edit):
    """Rewrite one CSV of the dataset with `edit(its text)` (text or bytes)."""
    path = root / "data_reid" / name
    content = edit(path.read_text())
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


@pytest.fixture
def official(tmp_path):
    write_tree(tmp_path / "data_reid", dataset_files())
    assert call("preprocess_data.py", f"--data_dir={tmp_path}").returncode == 0
    (tmp_path / "data_reid" / "reid_challenge" / "ground_truth.csv").write_text(
        "img_id,player\n" + "".join(f"reid_challenge/{'query' if i < 4 else 'gallery'}/{i}.jpeg,{i % 4}\n"
                                    for i in range(12)))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"")  # predict reads its data before any checkpoint
    return tmp_path


def first_test_row_without_player(text):
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if ",test," in line)
    cells = lines[i].split(",")
    cells[2] = ""
    lines[i] = ",".join(cells)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name, edit, words", [
    ("train_df.csv", lambda t: "", "not a readable CSV"),
    ("train_df.csv", lambda t: bytes(range(256)) * 4, "not a readable CSV"),
    ("train_df.csv", first_test_row_without_player, "column player is empty in row"),
    ("train_df.csv", lambda t: t.replace(",q,", ",z,", 1), "img_type 'z'"),
    ("challenge_df.csv", lambda t: "", "not a readable CSV"),
    ("challenge_df.csv", lambda t: t + t.splitlines()[1] + "\n", "each img_id may be listed once"),
    ("challenge_df.csv", lambda t: t.replace(",q\n", ",z\n", 1), "img_type 'z'"),
    ("reid_challenge/ground_truth.csv", lambda t: t + t.splitlines()[1] + "\n", "each img_id may be listed once"),
    ("reid_challenge/ground_truth.csv", lambda t: t.replace("img_id,player", "img_id,who"), "missing columns player"),
    ("reid_challenge/ground_truth.csv", lambda t: t.replace(",1\n", ",one\n", 1), "'one', not a whole number"),
])
def test_predict_names_the_csv_at_fault_before_any_work(official, name, edit, words):
    path = _csv_case(official, name, edit)
    result = call("predict.py", f"--data_dir={official}", f"--out_dir={official / 'out'}",
                  f"--checkpoints={official / 'run'}")
    assert result.returncode == 1 and str(path) in result.stderr and words in result.stderr
    assert result.stderr.count("\n") == 1 and not (official / "out").exists()


def test_training_names_an_empty_player_before_any_work(official):
    _csv_case(official, "train_df.csv", first_test_row_without_player)
    result = call("train_our_post_resnet.py", f"--data_dir={official}", f"--checkpoint_dir={official / 'ck'}",
                  *TRAIN)
    assert result.returncode == 1 and "column player is empty" in result.stderr
    assert not (official / "ck").exists()


def test_a_run_folder_in_use_is_refused(official):
    from reid.runs import hold_run

    with hold_run(official / "ck" / "resnet50"):
        result = call("train_our_post_resnet.py", f"--data_dir={official}", f"--checkpoint_dir={official / 'ck'}",
                      *TRAIN)
    assert result.returncode == 1 and "being written by another training" in result.stderr
    assert not (official / "ck" / "resnet50").exists(), "the empty folder goes with the lock"


@pytest.mark.parametrize("script, option", [
    ("train_our_post_resnet.py", "checkpoint_dir"),
    ("predict.py", "out_dir"),
    ("sim_fuse.py", "out_dir"),
    ("download.py", "data_dir"),
])
def test_an_output_folder_under_a_file_is_refused_before_any_work(official, matrices, script, option):
    (official / "taken").write_text("a file")
    target = official / "taken" / "sub"
    args = {"train_our_post_resnet.py": [f"--data_dir={official}", *TRAIN],
            "predict.py": [f"--data_dir={official}", f"--checkpoints={official / 'run'}"],
            "sim_fuse.py": [f"--inputs={matrices[0]},{matrices[1]}"],
            "download.py": ["--synthetic=true", "--synthetic_size=tiny"]}[script]
    result = call(script, *args, f"--{option}={target}")
    assert result.returncode == 1 and f"--{option}={target}" in result.stderr and "is a file" in result.stderr


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos")])
def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch, failure):
    from reid import engine

    def full(obj, path):
        Path(path).write_bytes(b"partial")
        raise failure

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(ReidError, match="disk full"):
        engine.save_atomic({"x": 1}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_predict_writes_a_folder_all_or_none(official, monkeypatch):
    """A second prediction into the same folder that fails part-way leaves the first one whole."""
    import predict

    args = [f"--data_dir={official}", f"--out_dir={official / 'out'}", "--num_workers=0", "--splits=test",
            "--checkpoints=pretrained:efficientnet_lite0@32", "--k1=5", "--k2=2"]
    assert call("predict.py", *args).returncode == 0
    folder = official / "out" / "pretrained_efficientnet_lite0_32" / "test"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = predict.write_outputs

    def fail_on_the_second(out_dir, distmat, q, g, name="dist"):
        if name == "dist_kr":
            raise ReidError("simulated failure part-way")
        return real(out_dir, distmat * 2, q, g, name)

    monkeypatch.setattr(predict, "write_outputs", fail_on_the_second)
    assert call("predict.py", *args).returncode == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["test"], "no staging folder left"


def _provenance(folder, split, images):
    (folder / "provenance.json").write_text(json.dumps({"split": split, "images": images, "sources": []}))


@pytest.mark.parametrize("case, words", [
    ("matrices of two datasets", "belongs to other images"),
    ("labels of another split", "the test split vs the challenge split"),
])
def test_fusion_refuses_positional_ids_of_other_images(tmp_path, matrices, case, words):
    for m in matrices:
        _provenance(m.parent, "challenge", "fingerprint-a")
    inputs = [f"--inputs={matrices[0]},{matrices[1]}"]
    if case == "matrices of two datasets":
        _provenance(matrices[1].parent, "challenge", "fingerprint-b")
        args = inputs
    else:
        labels = tmp_path / "test_labels" / "labels.csv"
        labels.parent.mkdir()
        labels.write_text("img_id,player\n" + "".join(f"{i},{i % 2}\n" for i in [1, 2, 3, 10, 11, 12, 13, 14]))
        _provenance(labels.parent, "test", "fingerprint-t")
        args = [*inputs, f"--labels={labels}"]
    result = call("sim_fuse.py", *args, f"--out_dir={tmp_path / 'out'}")
    assert result.returncode == 1 and words in result.stderr and not (tmp_path / "out").exists()


def test_fusion_passes_provenance_on(tmp_path, matrices):
    for m in matrices:
        _provenance(m.parent, "challenge", "fingerprint-a")
    assert call("sim_fuse.py", f"--inputs={matrices[0]},{matrices[1]}", f"--out_dir={tmp_path / 'f'}").returncode == 0
    record = json.loads((tmp_path / "f" / "provenance.json").read_text())
    assert record["images"] == "fingerprint-a" and len(record["sources"]) == 2


@pytest.mark.parametrize("content, words", [
    (lambda: np.ones((3, 5), dtype=np.complex64), "real numbers, not complex64"),
])
def test_a_matrix_of_another_kind_is_refused(tmp_path, matrices, content, words):
    hand_made = tmp_path / "hand" / "dist.npy"
    hand_made.parent.mkdir()
    np.save(hand_made, content())
    for ids in ("query_ids.txt", "gallery_ids.txt"):
        shutil.copy(matrices[0].parent / ids, hand_made.parent / ids)
    result = call("sim_fuse.py", f"--inputs={matrices[0]},{hand_made}", f"--out_dir={tmp_path / 'out'}")
    assert result.returncode == 1 and words in result.stderr


def test_a_trailing_comma_in_a_submission_is_named(tmp_path, matrices):
    csv = tmp_path / "sub.csv"
    csv.write_text("0,10,11,12,13,14,\n1,0.1,0.2,0.3,0.4,0.5\n")
    result = call("sim_fuse.py", f"--inputs={csv},{csv.with_name('other.csv')}", f"--out_dir={tmp_path / 'o'}")
    assert result.returncode == 1 and "ends with a comma" in result.stderr


@pytest.mark.parametrize("url, words, absent", [
    ("ftp://example.org/x.zip", "ftp:// is not supported", "no such file"),
    ("http://127.0.0.1:1/x.zip", "nothing was received", "bytes kept"),
    ("{local}", "is it the repository's zip?", "delete it"),
])
def test_download_says_what_is_wrong_with_the_url(tmp_path, url, words, absent):
    local = tmp_path / "mine.zip"
    local.write_text("not a zip")
    result = call("download.py", f"--url={url.format(local=local)}", f"--data_dir={tmp_path / 'd'}",
                  "--retries=0", "--timeout=2")
    assert result.returncode == 1 and words in result.stderr and absent not in result.stderr
    assert local.read_text() == "not a zip"


@pytest.mark.slow
@pytest.mark.parametrize("script, bad, words", [next(c for c in CASES if c[0] == s) for s in
                                                 dict.fromkeys(c[0] for c in CASES)])
def test_a_real_process_prints_one_line_and_no_traceback(tmp_path, script, bad, words):
    """The same table, one case per script, as a user's shell runs it."""
    args = [a for a in (f"--data_dir={tmp_path / 'data'}", f"--out_dir={tmp_path / 'out'}",
                        f"--checkpoint_dir={tmp_path / 'ck'}") if a.split("=")[0].lstrip("-") in _fields(script)]
    done = run_script(script, *args, *(TRAIN if script.startswith("train") else []), bad, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and words in done.stderr
    assert folders(tmp_path) == set()


def test_training_lists_an_unreadable_validation_image_before_the_first_epoch(official):
    image = sorted((official / "data_reid" / "reid_test" / "gallery").iterdir())[0]
    image.write_bytes(image.read_bytes()[:-10])
    result = call("train_our_post_resnet.py", f"--data_dir={official}", f"--checkpoint_dir={official / 'ck'}",
                  *TRAIN)
    assert result.returncode == 1 and "1 unreadable images" in result.stderr and image.name in result.stderr
    assert "steps per epoch on" not in result.stdout, "refused before the training loop was set up"
    assert not (official / "ck").exists()


def test_partitions_honour_the_umask(tmp_path):
    write_tree(tmp_path / "data_reid", dataset_files())
    old = os.umask(0o002)
    try:
        assert call("preprocess_data.py", f"--data_dir={tmp_path}").returncode == 0
    finally:
        os.umask(old)
    for name in ("train_df.csv", "challenge_df.csv"):
        assert (tmp_path / "data_reid" / name).stat().st_mode & 0o777 == 0o664
