"""make demo in process on the tiny synthetic data: every stage runs from its printed command, the
results table is complete, a trained model is reused, and nothing shells out."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pandas as pd
import pytest

import demo
import train_our_post_resnet
from bench.demo_spread import markdown
from reid.config import run
from reid.errors import ReidError
from reid.rerank import KINDS

SIZES = (32, 48)
FUSE = ["sim_fuse.py", "dissim_fuse.py", "sim_fuse.py"]
STAGES = ["download.py", "preprocess_data.py", "train_our_post_resnet.py", "train_our_post_resnet.py",
          "predict.py", *FUSE, *FUSE, "identify.py", "download.py", "preprocess_data.py",
          "train_our_post_resnet.py", "download.py", "track.py", "link_tracks.py"]


def forbidden(*args, **kwargs):
    raise AssertionError(f"the demo started a subprocess: {args}")


def commands(output: str) -> list[str]:
    """The scripts of the commands the demo printed, in order."""
    return [line.split()[2] for line in output.splitlines() if line.startswith("$ python ")]


def run_demo(cfg: demo.Config) -> str:
    """demo.main's output, with subprocess.run and subprocess.Popen made to fail."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out):
        mp.setattr(subprocess, "run", forbidden)
        mp.setattr(subprocess, "Popen", forbidden)
        demo.main(cfg)
    return out.getvalue()


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> demo.Config:
    """The smallest demo through every stage: tiny data, 32 and 48 px, one epoch of batches of 16
    pairs, no loader processes, one query on each ranked sheet (drawing them is a third of predict)."""
    root = tmp_path_factory.mktemp("demo")
    return demo.Config(data_dir=root / "data", checkpoint_dir=root / "checkpoints", out_dir=root / "out",
                       synthetic_size="tiny", img_sizes=SIZES, epochs=1, batch_size=16, num_workers=0,
                       visualize_queries=1)


@pytest.fixture(scope="module")
def first_run(cfg: demo.Config) -> str:
    return run_demo(cfg)


@pytest.mark.slow
def test_runs_every_stage_in_process_and_scores_every_matrix(cfg: demo.Config, first_run: str) -> None:
    assert commands(first_run) == STAGES
    table = pd.read_csv(cfg.out_dir / "results.csv", index_col=0)
    rows = [f"ImageNet efficientnet_lite0 at {size} px, untrained (plain)" for size in SIZES]
    rows += [f"lite0_{size} {kind}" for size in SIZES for kind in KINDS.values()]
    rows += ["mean fusion of hard-weight (sim_fuse)", "dissimilarity fusion (dissim_fuse)",
             "final recipe: mean of the two fusions"]
    assert list(table.index) == rows
    assert list(table.columns) == ["test mAP", "test rank-1", "challenge mAP", "challenge rank-1"]
    values = table.to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 100).all()
    assert "demo wall time:" in first_run
    identities = pd.read_csv(cfg.out_dir / "identify" / "challenge" / "identities.csv")
    challenge = cfg.data_dir / "data_reid" / "reid_challenge"
    assert len(identities) == len(list(challenge.rglob("*.jpeg")))
    assert f"{len(identities)} images -> {identities['identity'].nunique()} identities" in first_run
    assert "against the ground truth: ARI" in first_run
    assert (cfg.out_dir / "lite0_32" / "test" / "ranked.png").is_file()
    assert re.search(r"synth-0-01: tracker HOTA [\d.]+ / IDF1 [\d.]+ -> linked [\d.]+ / [\d.]+", first_run)
    assert (cfg.out_dir / "link_tracks" / "tracks.txt").is_file()


@pytest.mark.slow
def test_only_finished_runs_of_the_same_recipe_on_the_same_data_are_reused(
        cfg: demo.Config, first_run: str, tmp_path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """What a second `make demo` does for each model, on a copy of the first demo's data and runs
    (copies keep the files' times, so the copied data has the same fingerprint)."""
    copy = dataclasses.replace(cfg, data_dir=tmp_path / "data", checkpoint_dir=tmp_path / "checkpoints")
    shutil.copytree(cfg.data_dir, copy.data_dir)
    shutil.copytree(cfg.checkpoint_dir, copy.checkpoint_dir)
    trained: list[str] = []
    monkeypatch.setattr(train_our_post_resnet, "main", lambda c: trained.append(c.run_name))

    def second_demo() -> str:
        trained.clear()
        for run_name, extra in demo.model_runs(copy).items():
            demo.train(copy, run_name, extra)
        return capsys.readouterr().out

    out = second_demo()
    assert trained == [] and out.count("already trained with this recipe on this data: reusing it") == 2
    (copy.checkpoint_dir / "lite0_32" / "complete.json").unlink()  # as if it had been interrupted
    out = second_demo()
    assert trained == ["lite0_32"] and "never finished" in out
    shutil.copytree(cfg.checkpoint_dir / "lite0_32", copy.checkpoint_dir / "lite0_32")
    image = next((copy.data_dir / "data_reid" / "reid_training").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    out = second_demo()
    assert trained == ["lite0_32", "lite0_48"] and out.count("trained on other data") == 2
    shutil.copytree(cfg.checkpoint_dir / "lite0_32", copy.checkpoint_dir / "lite0_32")
    (copy.checkpoint_dir / "lite0_32" / "notes.txt").write_text("mine")
    with pytest.raises(ReidError, match="holds notes.txt, which no training wrote"):
        second_demo()
    assert (copy.checkpoint_dir / "lite0_32" / "notes.txt").read_text() == "mine", "not deleted"


def test_a_config_error_is_one_line_before_any_stage(tmp_path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        run(demo.main, demo.Config, [f"--data_dir={tmp_path}", "--img_sizes=32,48", "--seeds=1"])
    assert exit_info.value.code == 1
    assert err.getvalue() == "error: --img_sizes and --seeds give one value per model: got 2 sizes and 1 seeds\n"
    assert "$ python" not in out.getvalue()


def test_make_demo_sets_its_figures_beside_readmes_spread(tmp_path) -> None:
    rows, columns = ["lite0_96 plain", "final recipe"], ["test mAP", "challenge mAP"]
    tables = [pd.DataFrame([[50.0, 40.0], [70.0, 60.0]], index=rows, columns=columns),
              pd.DataFrame([[52.0, 40.0], [74.0, 61.0]], index=rows, columns=columns)]
    spread = demo.spread(tables)
    assert spread["final recipe"]["test mAP"] == {"mean": 72.0, "min": 70.0, "max": 74.0}
    assert "| lite0_96 plain | 51.00 ± 1.00 | 40.00 |" in markdown(spread)
    reference = tmp_path / "demo_results.json"
    cfg = demo.Config()
    reference.write_text(json.dumps({"recipe": demo.recipe(cfg), "seeds": [[1, 2], [3, 4]], "rows": spread}))
    inside = pd.DataFrame([[51.0, 40.0], [73.0, 60.5]], index=rows, columns=columns)
    lines = demo.compare(inside, cfg, reference)
    assert lines[-1].startswith("4 of 4 figures within README's spread") and "OUTSIDE" not in "".join(lines)
    outside = inside.assign(**{"test mAP": [55.0, 73.0]})
    lines = demo.compare(outside, cfg, reference)
    assert sum("OUTSIDE" in line for line in lines) == 1 and "1 outside" in lines[-1]
    other = dataclasses.replace(cfg, epochs=1)
    assert demo.compare(inside, other, reference)[0].startswith("not compared with README")
