"""Ctrl-C and loader workers: an interrupted training ends in the one line "interrupted", a
worker's error in its own one line; a press is never lost while workers start or stop."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys

import pytest
import torch

from helpers import REPO, call, dataset_files, read_until, write_tree
from reid.errors import ReidError


def test_an_error_from_a_loader_worker_is_one_line(tmp_path, capsys):
    """torch re-raises a worker's ReidError with the worker's traceback in its message."""
    from reid.config import run
    from reid.loader import make_loader

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
    try:
        seen = read_until(proc.stderr, "loss=")  # a step is done: inside the epoch, the workers loading batches
        os.killpg(proc.pid, signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a failed wait above: no training left running for 50 epochs
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = seen + rest
    assert proc.returncode == 130
    assert "Traceback" not in err and "exited unexpectedly" not in err
    assert err.rstrip().splitlines()[-1] == "interrupted"


def test_loader_workers_leave_ctrl_c_to_the_main_process():
    """A worker killed by Ctrl-C can surface as 'DataLoader worker exited unexpectedly' before the
    main process's KeyboardInterrupt; workers that ignore SIGINT cannot."""
    from reid.loader import make_loader

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
    from reid.loader import ctrl_c_held

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
    from reid.loader import make_loader

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
    from reid.loader import make_loader

    with pytest.raises(KeyboardInterrupt):
        with contextlib.closing(iter(make_loader(_PressOnExit(), num_workers=1))) as batches:
            next(batches)
    assert "Exception ignored" not in capfd.readouterr().err

