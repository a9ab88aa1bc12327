"""CSV rows that would silently override one another or overflow, and resumes with nothing to
continue or that would end a run early: each one clear line, and no record that says otherwise."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers import SMOKE_TRAIN, call, dataset_files, run_script, write_tree
from reid.errors import ReidError
from reid.io import read_table
from reid.runs import COMPLETE, early_end, require_checkpoint, reuse_problem, write_complete

TRAIN = ["--model=efficientnet_lite0", "--img_size=64", "--batch_size=4", "--num_workers=0", "--device=cpu",
         "--max_steps_per_epoch=1", "--rerank_eval=false", "--warmup_epochs=0"]
GROUPS = {"image": str, "sequence": int, "frame": int}


def csv(tmp_path, text: str):
    path = tmp_path / "table.csv"
    path.write_text(text)
    return path


def test_a_key_named_twice_is_refused_with_the_value_and_both_rows(tmp_path):
    path = csv(tmp_path, "image,sequence,frame\na.jpeg,1,1\nb.jpeg,1,2\n a.jpeg ,1,99\n")
    with pytest.raises(ReidError) as err:
        read_table(path, GROUPS, keys=["image"])
    assert str(err.value) == (f"{path}: image 'a.jpeg' is in row 2 and again in row 4; "
                              "each image may be listed once")
    assert len(read_table(path, GROUPS)) == 3, "without a key, repeats are the caller's business"


@pytest.mark.parametrize("rows, words", [
    ("12,3\n12,9\n", "img_id '12' is in row 2 and again in row 3"),
    ("reid_challenge/query/12.jpeg,3\n12,9\n", "rows 2 and 3 both give image id '12'"),
])
def test_a_labels_file_gives_each_image_one_player(tmp_path, rows, words):
    from reid.io import read_labels

    with pytest.raises(ReidError, match=words):
        read_labels(csv(tmp_path, "img_id,player\n" + rows))


def test_a_tuple_key_is_unique_as_a_whole(tmp_path):
    path = csv(tmp_path, "image,sequence,frame\na,1,1\nb,1,2\nc,2,1\nd,01,1\n")
    with pytest.raises(ReidError, match=r"sequence 1, frame 1 is in row 2 and again in row 5; "
                                        r"each \(sequence, frame\) may be listed once"):
        read_table(path, GROUPS, keys=[("sequence", "frame")])
    assert list(read_table(path, GROUPS, keys=["image"])["image"]) == ["a", "b", "c", "d"]


def test_an_optional_key_column_the_file_lacks_is_left_out(tmp_path):
    path = csv(tmp_path, "img_id,player\nx,16\nx,99\n")
    optional = {"image": str, "img_id": str}
    with pytest.raises(ReidError, match="img_id 'x' is in row 2 and again in row 3"):
        read_table(path, {"player": int}, optional, keys=[("image", "img_id")])
    assert len(read_table(path, {"player": int}, optional, keys=["image"])) == 2


@pytest.mark.parametrize("value", ["99999999999999999999999", "9223372036854775808", "-9223372036854775809",
                                   "000000000000000000009223372036854775808"])
def test_integers_beyond_int64_are_out_of_range_naming_the_row(tmp_path, value):
    path = csv(tmp_path, f"image,sequence,frame\na,1,1\nb,1,{value}\n")
    with pytest.raises(ReidError) as err:
        read_table(path, GROUPS)
    assert str(err.value) == f"{path}: column frame is {value!r}, out of range (beyond 64-bit integers) in row 3"


def test_int64_itself_is_read_exactly(tmp_path):
    path = csv(tmp_path, "image,sequence,frame\na,9223372036854775807,-9223372036854775808\nb,-0,0007\n")
    table = read_table(path, GROUPS, keys=["image"])
    assert table["sequence"].tolist() == [9223372036854775807, 0]
    assert table["frame"].tolist() == [-9223372036854775808, 7]


@pytest.mark.parametrize("cell, words", [("", "is empty"), ("x1", "is 'x1', not a whole number"),
                                         ("1.5", "is '1.5', not a whole number"), ("٣", "is '٣', not a whole number")])
def test_other_bad_integers_keep_their_words(tmp_path, cell, words):
    path = csv(tmp_path, f"image,sequence,frame\na,1,{cell}\n")
    with pytest.raises(ReidError) as err:
        read_table(path, GROUPS)
    assert str(err.value) == f"{path}: column frame {words} in row 2"


def test_resume_says_why_there_is_nothing_to_resume(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ReidError, match=r"no last.pt \(no such run folder\); run without --resume=true"):
        require_checkpoint(run)
    assert not run.exists(), "asking is no reason to make the folder"
    run.mkdir()
    with pytest.raises(ReidError, match=r"no last.pt \(the folder holds no run\)"):
        require_checkpoint(run)
    (run / "config.json").write_text("{}")
    with pytest.raises(ReidError, match=r"no last.pt \(it stopped before its first epoch ended\)"):
        require_checkpoint(run)
    (run / "last.pt").write_bytes(b"")
    assert require_checkpoint(run) == run / "last.pt"


def test_a_resume_may_not_end_a_run_early():
    assert "has trained 5 epochs; --epochs=2 would end it before that: pass --epochs=10" in early_end(5, 10, 2)
    assert "trained 5 of its 10 epochs; --epochs=7 would end it before its learning rate" in early_end(5, 10, 7)
    assert "pass --epochs=6" in early_end(6, 4, 5), "an extended run has trained past its schedule"
    assert early_end(5, 10, 10) is None and early_end(5, 10, 12) is None and early_end(10, 10, 10) is None


def test_an_extended_run_is_not_reused_as_the_longer_recipe(tmp_path):
    config = {"lr": 1e-3, "epochs": 4}
    write_complete(tmp_path, config, "d", 0.5, 3)
    assert json.loads((tmp_path / COMPLETE).read_text())["schedule_epochs"] == 3
    assert "extended its 3-epoch schedule to 4 epochs" in reuse_problem(tmp_path, config, "d")
    write_complete(tmp_path, config, "d", 0.5)
    assert reuse_problem(tmp_path, config, "d") is None


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_tree(root / "data_reid", dataset_files(games=3, players=4, frames=3, test_games=1, challenge=False))
    assert call("preprocess_data.py", f"--data_dir={root}", "--n_folds=3").returncode == 0
    return root


def test_resume_of_a_run_that_never_existed_is_one_line(data_dir, tmp_path):
    result = run_script("train_our_post_resnet.py", f"--data_dir={data_dir}", f"--checkpoint_dir={tmp_path}",
                        *TRAIN, "--run_name=typo", "--resume=true")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: nothing to resume in {tmp_path / 'typo'}: no last.pt (no such run "
                                     "folder); run without --resume=true to start it")
    assert not (tmp_path / "typo").exists()


def test_an_integer_beyond_int64_in_the_partition_is_one_line(data_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    partition = data / "data_reid" / "train_df.csv"
    lines = partition.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[3].split(",")
    cells[header.index("fold")] = "99999999999999999999999"
    partition.write_text("\n".join([*lines[:3], ",".join(cells), *lines[4:]]) + "\n")
    result = run_script("train_our_post_resnet.py", f"--data_dir={data}", f"--checkpoint_dir={tmp_path / 'ck'}",
                        *TRAIN, "--epochs=1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: {partition}: column fold is '99999999999999999999999', out of range "
                                     "(beyond 64-bit integers) in row 4")


def interrupt_at(monkeypatch, stop_epoch: int) -> None:
    """Make the engine stop as a Ctrl-C would once it starts epoch `stop_epoch` (0-based)."""
    import reid.engine

    original = reid.engine.train_epoch

    def interrupted(*args, **kwargs):
        if args[8] == stop_epoch:  # the epoch argument
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(reid.engine, "train_epoch", interrupted)


def test_a_run_stopped_before_its_first_checkpoint_has_nothing_to_resume(data_dir, tmp_path, monkeypatch):
    args = (f"--data_dir={data_dir}", f"--checkpoint_dir={tmp_path}", *TRAIN, "--epochs=2")
    interrupt_at(monkeypatch, 0)
    assert call("train_our_post_resnet.py", *args).returncode == 130
    result = call("train_our_post_resnet.py", *args, "--resume=true")
    assert result.returncode == 1
    assert (f"nothing to resume in {tmp_path / 'resnet50'}: no last.pt (it stopped before its first epoch ended); "
            "run without --resume=true to start it") in result.stderr


def test_a_resume_that_would_end_the_run_early_is_refused_and_an_extension_is_recorded(data_dir, tmp_path,
                                                                                        monkeypatch):
    args = (f"--data_dir={data_dir}", f"--checkpoint_dir={tmp_path}", *TRAIN)
    run = tmp_path / "resnet50"
    interrupt_at(monkeypatch, 2)
    assert call("train_our_post_resnet.py", *args, "--epochs=3").returncode == 130
    monkeypatch.undo()
    saved = (run / "last.pt").read_bytes()
    for epochs, words in ((1, "the run has trained 2 epochs; --epochs=1 would end it before that"),
                          (2, "the run has trained 2 of its 3 epochs; --epochs=2 would end it before")):
        result = call("train_our_post_resnet.py", *args, f"--epochs={epochs}", "--resume=true")
        assert result.returncode == 1 and words in result.stderr, result.stderr
        assert not (run / COMPLETE).exists() and (run / "last.pt").read_bytes() == saved
    result = call("train_our_post_resnet.py", *args, "--epochs=4", "--resume=true")
    assert result.returncode == 0, result.stderr
    assert "its 3-epoch schedule goes on at lr_end to epoch 4" in result.stdout
    record = json.loads((run / COMPLETE).read_text())
    assert record["config"]["epochs"] == 4 and record["schedule_epochs"] == 3


def _csv_case(root, name, edit):
    """Rewrite one CSV of the dataset with `edit(its text)` (text or bytes)."""
    path = root / "data_reid" / name
    content = edit(path.read_text())
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


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
                  *SMOKE_TRAIN)
    assert result.returncode == 1 and "column player is empty" in result.stderr
    assert not (official / "ck").exists()

