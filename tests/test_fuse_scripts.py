"""Stage 5 scripts, run as a user runs them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from helpers import call, run_script
from reid.fusion import dissim_fuse, mean_fuse
from reid.io import load_matrix, read_submission, save_matrix, write_submission
from reid.metrics import evaluate


@pytest.fixture
def models(tmp_path):
    """Three models' matrices over 4 queries x 12 gallery images, and a labels CSV."""
    rng = np.random.default_rng(0)
    q_ids, g_ids = np.arange(4) + 1, np.arange(12) + 100
    players = {**{int(q): int(q) % 4 for q in q_ids}, **{int(g): int(g) % 4 for g in g_ids}}
    paths, mats = [], []
    for m in range(3):
        dist = rng.random((4, 12)).astype(np.float32)
        paths.append(save_matrix(tmp_path / f"model{m}" / "dist.npy", dist, q_ids, g_ids))
        mats.append(dist)
    labels = tmp_path / "ground_truth.csv"
    labels.write_text("img_id,player\n" + "".join(f"reid_challenge/query/{i}.jpeg,{p}\n"
                                                   for i, p in players.items()))
    return paths, mats, q_ids, g_ids, labels, players


@pytest.mark.slow
def test_sim_fuse_subprocess(tmp_path, models):
    paths, mats, q_ids, g_ids, labels, players = models
    out = tmp_path / "sim"
    done = run_script("sim_fuse.py", f"--inputs={paths[0]},{paths[1]},{paths[2]}", f"--out_dir={out}",
                      f"--labels={labels}", "--weights=1,2,1")
    assert done.returncode == 0, done.stderr
    fused, q, g = load_matrix(out / "dist.npy")
    np.testing.assert_allclose(fused, mean_fuse(mats, [1, 2, 1]), rtol=1e-6)
    np.testing.assert_array_equal(q, q_ids)
    np.testing.assert_array_equal(read_submission(out / "dist.csv")[2], g_ids)
    score = evaluate(fused, np.array([players[i] for i in q]), np.array([players[i] for i in g]))
    assert f"mAP {score['mAP']:.4f}" in done.stdout


@pytest.mark.slow
def test_dissim_fuse_subprocess_mixing_formats(tmp_path, models):
    paths, mats, q_ids, g_ids, _, _ = models
    csv = write_submission(tmp_path / "model2.csv", mats[2], q_ids, g_ids)
    out = tmp_path / "dissim"
    done = run_script("dissim_fuse.py", f"--inputs={paths[0]},{paths[1]},{csv}", f"--out_dir={out}", "--topk=5")
    assert done.returncode == 0, done.stderr
    expected = dissim_fuse([mats[0], mats[1], read_submission(csv)[0]], topk=5)
    np.testing.assert_allclose(load_matrix(out / "dist.npy")[0], expected, rtol=1e-6)


def test_winning_recipe_chain(tmp_path, models):
    paths, mats, *_ = models
    inputs = ",".join(map(str, paths))
    assert call("sim_fuse.py", f"--inputs={inputs}", f"--out_dir={tmp_path / 's'}").returncode == 0
    assert call("dissim_fuse.py", f"--inputs={inputs}", f"--out_dir={tmp_path / 'd'}").returncode == 0
    final = call("sim_fuse.py", f"--inputs={tmp_path / 's' / 'dist.npy'},{tmp_path / 'd' / 'dist.npy'}",
                 f"--out_dir={tmp_path / 'final'}")
    assert final.returncode == 0, final.stderr
    expected = mean_fuse([mean_fuse(mats), dissim_fuse(mats)])
    np.testing.assert_allclose(load_matrix(tmp_path / "final" / "dist.npy")[0], expected, rtol=1e-6)


def test_refuses_different_orders(tmp_path, models):
    paths, mats, q_ids, g_ids, _, _ = models
    other = save_matrix(tmp_path / "shuffled" / "dist.npy", mats[0][:, ::-1], q_ids, g_ids[::-1])
    before = [p.read_bytes() for p in paths]
    done = call("sim_fuse.py", f"--inputs={paths[0]},{other}", f"--out_dir={tmp_path / 'x'}")
    assert done.returncode == 1
    assert str(other) in done.stderr and "differ" in done.stderr
    assert [p.read_bytes() for p in paths] == before
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("script", ["sim_fuse.py", "dissim_fuse.py"])
def test_bad_inputs_exit_cleanly(tmp_path, models, script):
    paths, *_ = models
    assert "no input matrices" in call(script, f"--out_dir={tmp_path}").stderr
    hand_made = tmp_path / "hand_made" / "dist.npy"  # written by another tool: no matrices.json
    hand_made.parent.mkdir()
    np.save(hand_made, np.full((4, 12), np.nan, dtype=np.float32))
    for ids in ("query_ids.txt", "gallery_ids.txt"):
        shutil.copy(paths[1].parent / ids, hand_made.parent / ids)
    done = call(script, f"--inputs={paths[0]},{hand_made}", f"--out_dir={tmp_path / 'y'}")
    assert done.returncode == 1 and str(hand_made) in done.stderr and "NaN" in done.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    done = call(script, f"--inputs={empty}", f"--out_dir={tmp_path / 'y'}")
    assert done.returncode == 1 and "empty file" in done.stderr


@pytest.mark.slow
def test_bad_input_subprocess_has_no_traceback(tmp_path):
    done = run_script("dissim_fuse.py", f"--inputs={tmp_path / 'missing.npy'}", f"--out_dir={tmp_path}")
    assert done.returncode == 1
    assert "missing.npy" in done.stderr and "Traceback" not in done.stderr


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

