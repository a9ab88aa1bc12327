"""predict.py on tiny synthetic data with tiny trained checkpoints."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import REPO, call, torchrun
from reid.errors import ReidError
from reid.io import load_matrix, read_submission
from reid.metrics import evaluate
from reid.models import load_checkpoint
from reid.runs import images_fingerprint
from reid.splits import load_split

TINY = ["--model=test_vit", "--pretrained=false", "--img_size=32", "--num_workers=0",
        "--warmup_epochs=0", "--rerank_eval=false", "--epochs=1", "--max_steps_per_epoch=1",
        "--batch_size=4"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    data = root / "data"
    assert call("download.py", "--synthetic=true", "--synthetic_size=tiny", f"--data_dir={data}").returncode == 0
    assert call("preprocess_data.py", f"--data_dir={data}").returncode == 0
    for name, seed in (("a", 1), ("b", 2)):
        result = call("train_our_post_resnet.py", f"--data_dir={data}", f"--checkpoint_dir={root / 'ck'}",
                      f"--run_name={name}", f"--seed={seed}", *TINY)
        assert result.returncode == 0, result.stderr
    return root, data


def predict(root, data, *args):
    return call("predict.py", f"--data_dir={data}", f"--out_dir={root / 'out'}", "--num_workers=0",
                "--batch_size=32", "--k1=5", "--k2=2", *args)


@pytest.mark.slow
def test_writes_matrices_ids_submissions_and_the_mean(setup):
    root, data = setup
    result = predict(root, data, f"--checkpoints={root / 'ck' / 'a'},{root / 'ck' / 'b' / 'best.pt'}")
    assert result.returncode == 0, result.stderr
    challenge_df = pd.read_csv(data / "data_reid" / "challenge_df.csv")
    for run in ("a", "b", "mean"):
        for split in ("test", "challenge"):
            folder = root / "out" / run / split
            names = {p.name for p in folder.iterdir()}
            assert {"dist.npy", "dist_kr.npy", "dist_hw.npy", "dist.csv", "dist_kr.csv", "dist_hw.csv",
                    "query_ids.txt", "gallery_ids.txt", "labels.csv"} <= names
            mat, q, g = load_matrix(folder / "dist_hw.npy")
            csv_mat, csv_q, csv_g = read_submission(folder / "dist_hw.csv")
            assert np.array_equal(csv_q, np.sort(q)) and np.array_equal(csv_g, g)
            assert np.allclose(csv_mat, mat[np.argsort(q)], atol=1e-5)
    provenance = json.loads((root / "out" / "mean" / "test" / "provenance.json").read_text())
    assert [s["checkpoint_sha256"] for s in provenance["sources"]] == [
        hashlib.sha256((root / "ck" / run / "best.pt").read_bytes()).hexdigest() for run in ("a", "b")]
    test_images = load_split(data / "data_reid", "test").df["img_id"]
    assert provenance["images"] == images_fingerprint(data / "data_reid", test_images)
    _, q, g = load_matrix(root / "out" / "a" / "challenge" / "dist.npy")
    assert sorted(q) == sorted(challenge_df.loc[challenge_df["img_type"] == "q", "player"])
    assert len(g) == (challenge_df["img_type"] == "g").sum()
    a = load_matrix(root / "out" / "a" / "test" / "dist.npy")[0]
    b = load_matrix(root / "out" / "b" / "test" / "dist.npy")[0]
    assert np.allclose(load_matrix(root / "out" / "mean" / "test" / "dist.npy")[0], (a + b) / 2, atol=1e-6)
    for line in ("plain", "k-reciprocal", "hard-weight"):
        assert line in result.stdout
    assert "mean  challenge" in result.stdout


@pytest.mark.slow
def test_scores_in_the_table_are_the_matrices_scores(setup):
    root, data = setup
    result = predict(root, data, f"--checkpoints={root / 'ck' / 'a'}", "--splits=test")
    assert result.returncode == 0, result.stderr
    mat, q, g = load_matrix(root / "out" / "a" / "test" / "dist.npy")
    labels = pd.read_csv(root / "out" / "a" / "test" / "labels.csv").set_index("img_id")["player"]
    expected = evaluate(mat, labels[q].to_numpy(), labels[g].to_numpy())
    row = next(line for line in result.stdout.splitlines() if line.startswith("a ") and "plain" in line)
    assert f"{100 * expected['mAP']:.2f}" in row


@pytest.mark.slow
def test_euclidean_rerank_input_and_the_sheet(setup):
    root, data = setup
    out = root / "euclid"
    result = call("predict.py", f"--data_dir={data}", f"--out_dir={out}", "--num_workers=0",
                  f"--checkpoints={root / 'ck' / 'a'}", "--splits=test", "--rerank_input=euclidean",
                  "--visualize=true", "--visualize_queries=3", "--k1=5", "--k2=2")
    assert result.returncode == 0, result.stderr
    squared = predict(root, data, f"--checkpoints={root / 'ck' / 'a'}", "--splits=test")
    assert squared.returncode == 0
    kr_e = load_matrix(out / "a" / "test" / "dist_kr.npy")[0]
    kr_s = load_matrix(root / "out" / "a" / "test" / "dist_kr.npy")[0]
    assert not np.allclose(kr_e, kr_s)
    assert (out / "a" / "test" / "ranked.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_refused(setup, tmp_path):
    root, data = setup
    ckpt = load_checkpoint(root / "ck" / "a" / "best.pt")
    ckpt["config"]["model"] = "test_resnet"
    torch.save(ckpt, tmp_path / "other.pt")
    result = predict(root, data, f"--checkpoints={tmp_path / 'other.pt'}")
    assert result.returncode == 1 and "other.pt" in result.stderr and "test_resnet" in result.stderr
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    result = predict(root, data, f"--checkpoints={tmp_path / 'foreign.pt'}")
    assert result.returncode == 1 and "not a checkpoint" in result.stderr
    result = predict(root, data, f"--checkpoints={tmp_path / 'missing'}")
    assert result.returncode == 1 and "missing" in result.stderr


@pytest.mark.slow
def test_untrained_backbone_is_a_baseline_entry(setup):
    root, data = setup
    result = predict(root, data, "--checkpoints=pretrained:efficientnet_lite0@64,pretrained:efficientnet_lite0@32",
                     "--splits=challenge")
    assert result.returncode == 0, result.stderr
    for size in (64, 32):  # one run folder per input size: neither overwrites the other
        assert (root / "out" / f"pretrained_efficientnet_lite0_{size}" / "challenge" / "dist_hw.npy").exists()
        assert f"pretrained_efficientnet_lite0_{size}  challenge" in result.stdout


@pytest.mark.slow
def test_last_pt_is_the_same_format_as_best_pt(setup, tmp_path):
    """A one-epoch run's last.pt holds best.pt's weights: predict.py and --pretrained take either."""
    root, data = setup
    mats = {}
    for name in ("best.pt", "last.pt"):
        out = tmp_path / name
        result = call("predict.py", f"--data_dir={data}", f"--out_dir={out}", "--num_workers=0", "--splits=test",
                      f"--checkpoints={root / 'ck' / 'a' / name}")
        assert result.returncode == 0, result.stderr
        mats[name] = load_matrix(out / "a" / "test" / "dist.npy")[0]
    np.testing.assert_array_equal(mats["best.pt"], mats["last.pt"])
    result = call("train_our_post_resnet.py", f"--data_dir={data}", f"--checkpoint_dir={tmp_path / 'ck'}",
                  *TINY, f"--pretrained={root / 'ck' / 'a' / 'last.pt'}")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_an_exported_model_predicts_what_its_checkpoint_does(setup):
    root, data = setup
    onnx = root / "exported" / "a_onnx.onnx"
    onnx.parent.mkdir()
    assert call("export.py", f"--checkpoint={root / 'ck' / 'a'}", f"--out={onnx}").returncode == 0
    result = predict(root, data, f"--checkpoints={root / 'ck' / 'a'},{onnx}", "--splits=test")
    assert result.returncode == 0, result.stderr
    torch_mat, q, g = load_matrix(root / "out" / "a" / "test" / "dist.npy")
    onnx_mat, q2, g2 = load_matrix(root / "out" / "a_onnx" / "test" / "dist.npy")
    assert np.array_equal(q, q2) and np.array_equal(g, g2)
    assert np.abs(torch_mat - onnx_mat).max() <= 1e-4
    provenance = json.loads((root / "out" / "a_onnx" / "test" / "provenance.json").read_text())
    assert provenance["sources"][0]["checkpoint_sha256"] == hashlib.sha256(
        (root / "ck" / "a" / "best.pt").read_bytes()).hexdigest()
    flipped = predict(root, data, f"--checkpoints={onnx}", "--flip_tta=true")
    assert flipped.returncode == 1 and "flip test-time augmentation is not in an exported graph" in flipped.stderr


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_write_what_one_does(setup):
    """torchrun with 2 gloo processes: each embeds half of every split, the first writes."""
    root, data = setup
    args = [f"--checkpoints={root / 'ck' / 'a'}", f"--data_dir={data}", "--num_workers=0", "--batch_size=32",
            "--k1=5", "--k2=2", "--device=cpu"]
    launched = torchrun(2, str(REPO / "predict.py"), *args, f"--out_dir={root / 'two'}")
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("wrote ") == 2, "only the first process writes"
    assert call("predict.py", *args, f"--out_dir={root / 'one'}").returncode == 0
    for split in ("test", "challenge"):
        for name in ("dist", "dist_kr", "dist_hw"):
            one, q1, g1 = load_matrix(root / "one" / "a" / split / f"{name}.npy")
            two, q2, g2 = load_matrix(root / "two" / "a" / split / f"{name}.npy")
            assert np.array_equal(q1, q2) and np.array_equal(g1, g2)
            assert np.abs(one - two).max() <= 1e-5, (split, name)


def test_predict_size_after_at_is_checked(tmp_path):
    for bad in ("abc", "0"):
        result = call("predict.py", f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'out'}",
                      f"--checkpoints=pretrained:efficientnet_lite0@{bad}")
        assert result.returncode == 1 and "whole number of pixels" in result.stderr
        assert not (tmp_path / "out").exists()


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
    assert result.returncode == 1 and "--splits=: expected at least 1 value" in result.stderr


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

