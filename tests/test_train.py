"""The training engine through its scripts: distributed equivalence, resume, smoke runs, NaN."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import REPO, SMOKE_TRAIN, call, dataset_files, torchrun, write_tree
from reid.engine import RankContext, Siamese, TrainConfig, build_optimizer, train_step
from reid.errors import ReidError
from reid.losses import InfoNCE
from reid.models import build_encoder, load_checkpoint

TINY = ["--model=test_vit", "--pretrained=false", "--img_size=32", "--num_workers=0",
        "--warmup_epochs=0", "--rerank_eval=false", "--eval_batch_size=16"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_tree(root / "data_reid", dataset_files(games=4, players=4, frames=5, test_games=2))
    assert call("preprocess_data.py", f"--data_dir={root}", "--n_folds=4").returncode == 0
    return root


def train(script, data_dir, ckpt, *args):
    result = call(script, f"--data_dir={data_dir}", f"--checkpoint_dir={ckpt}", *TINY, *args)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("precision,tolerance", [("fp32", 1e-6), ("bf16", 3e-2)])
def test_gathered_infonce_gradient_equals_one_process(tmp_path, precision, tolerance):
    """Two gloo ranks, each with half the batch, against one fp32 process on all of it: equal in
    fp32, and within bfloat16's precision (8 bits of mantissa) when the features are bf16."""
    out = tmp_path / "grads.pt"
    result = torchrun(2, str(REPO / "tests" / "dist_step.py"), str(out), precision)
    assert result.returncode == 0, result.stderr[-3000:]
    got = torch.load(out, weights_only=True)
    torch.manual_seed(0)
    encoder, loss_fn = torch.nn.Linear(6, 4), InfoNCE()
    q, g = torch.randn(8, 6), torch.randn(8, 6)
    loss_fn(encoder(q), encoder(g)).backward()
    for name, want in (("weight", encoder.weight.grad), ("bias", encoder.bias.grad),
                       ("scale", loss_fn.logit_scale.grad)):
        assert (got[name] - want).abs().max() <= tolerance * max(1.0, want.abs().max().item()), name
    if precision == "bf16":
        assert not torch.equal(got["weight"], encoder.weight.grad), "bf16 really ran"


@pytest.mark.slow
def test_a_bf16_autocast_training_step_runs_on_cpu():
    """The engine's step under CPU bfloat16 autocast (a tiny ViT): a finite loss near fp32's,
    and the weights move."""
    losses, moved = {}, {}
    for dtype in (None, torch.bfloat16):
        torch.manual_seed(0)
        encoder, _ = build_encoder("test_vit", pretrained=False, img_size=32)
        net = Siamese(encoder, InfoNCE())
        before = {k: v.clone() for k, v in encoder.state_dict().items()}
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        batch = (torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32), torch.arange(4))
        ctx = RankContext(0, 1, torch.device("cpu"))
        losses[dtype] = train_step(net, [batch], optimizer, scaler, TrainConfig(), ctx, dtype, "test")
        moved[dtype] = max((encoder.state_dict()[k] - v).abs().max().item() for k, v in before.items())
    assert abs(losses[torch.bfloat16] - losses[None]) < 2e-2 * abs(losses[None])
    assert losses[torch.bfloat16] != losses[None] and moved[torch.bfloat16] > 1e-4


@pytest.mark.slow
def test_amp_that_does_not_apply_is_said_once(data_dir, tmp_path):
    result = train("train_our_post.py", data_dir, tmp_path / "ck", "--amp=bf16", "--epochs=1", "--batch_size=4",
                   "--max_steps_per_epoch=1")
    assert result.stdout.count("amp=bf16 applies on CUDA only: this cpu run computes in fp32") == 1
    quiet = train("train_our_post.py", data_dir, tmp_path / "ck2", "--amp=off", "--epochs=1", "--batch_size=4",
                  "--max_steps_per_epoch=1")
    assert "applies on CUDA only" not in quiet.stdout


def parameters(last: dict) -> dict[str, torch.Tensor]:
    """A last.pt's parameters in the optimiser's order, the order of its parameter groups (those
    without weight decay first), as the engine's optimizer over the same model has them."""
    model = Siamese(build_encoder("test_vit", False, img_size=32)[0], InfoNCE())
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for group in build_optimizer(model, TrainConfig()).param_groups for p in group["params"]]
    saved = ({f"encoder.{k}": v for k, v in last["model"].items()}
             | {f"criterion.{k}": v for k, v in last["criterion"].items()})
    return {name: saved[name] for name in order}


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_take_the_same_step_as_one(data_dir, tmp_path):
    """torchrun with 2 x 4 pairs against one process with 8 pairs: one AdamW step.

    The gradients (recovered from AdamW's first moment, m = 0.1 g) must agree everywhere, and
    so must the parameters, except where the gradient is mathematically zero (the attention
    key biases, which softmax ignores): there float rounding leaves |g| ~ 1e-10, and AdamW's
    g / (|g| + eps) turns that noise into steps of up to lr in either run.
    """
    common = [f"--data_dir={data_dir}", "--epochs=1", "--max_steps_per_epoch=1", "--lr=1e-3", *TINY]
    launched = torchrun(2, str(REPO / "train_our_post.py"), *common, "--batch_size=4",
                        f"--checkpoint_dir={tmp_path / 'two'}")
    assert launched.returncode == 0, launched.stderr[-3000:]
    train("train_our_post.py", data_dir, tmp_path / "one", "--epochs=1", "--max_steps_per_epoch=1",
          "--lr=1e-3", "--batch_size=8")
    one = load_checkpoint(tmp_path / "one" / "eva02_l448" / "last.pt")
    two = load_checkpoint(tmp_path / "two" / "eva02_l448" / "last.pt")
    assert one["model"].keys() == two["model"].keys()
    assert len(two["rng"]) == 2 and not torch.equal(two["rng"][0]["torch"], two["rng"][1]["torch"]), \
        "each rank draws its own random numbers, and each rank's state is kept for the resume"
    torch.manual_seed(1)
    init = build_encoder("test_vit", False, img_size=32)[0].state_dict()
    moved = max((one["model"][k] - v).abs().max().item() for k, v in init.items())
    assert moved > 1e-4, "the step must change the weights for the comparison to mean anything"
    noise_level, elements = 0, 0
    params_one, params_two = parameters(one), parameters(two)
    for i, name in enumerate(params_one):
        grad_one = one["optimizer"]["state"][i]["exp_avg"] / 0.1
        grad_two = two["optimizer"]["state"][i]["exp_avg"] / 0.1
        assert (grad_one - grad_two).abs().max().item() < 1e-5, name
        determined = grad_one.abs() > 1e-6
        diff = (params_one[name] - params_two[name]).abs()
        if determined.any():
            assert diff[determined].max().item() < 1e-5, name
        noise_level += (~determined).sum().item()
        elements += determined.numel()
    assert noise_level < 0.01 * elements


@pytest.mark.slow
def test_a_moved_run_on_a_moved_dataset_resumes_to_the_same_weights(data_dir, tmp_path, monkeypatch):
    args = ["--epochs=2", "--max_steps_per_epoch=2", "--batch_size=4", "--lr=1e-3"]
    train("train_our_post_resnet.py", data_dir, tmp_path / "straight", *args)

    import reid.engine

    original = reid.engine.train_epoch

    def interrupted(*a, **k):
        if a[8] == 1:  # the epoch argument: stop as a Ctrl-C in the second epoch would
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(reid.engine, "train_epoch", interrupted)
    shutil.copytree(data_dir, tmp_path / "data")  # keeps the files' times, as a move does
    stopped = call("train_our_post_resnet.py", f"--data_dir={tmp_path / 'data'}",
                   f"--checkpoint_dir={tmp_path / 'interrupted'}", *TINY, *args)
    assert stopped.returncode == 130
    assert not (tmp_path / "interrupted" / "resnet50" / "complete.json").exists()
    monkeypatch.setattr(reid.engine, "train_epoch", original)
    # the run and the dataset both move; the dataset is named by a relative path
    (tmp_path / "interrupted").rename(tmp_path / "resumed")
    (tmp_path / "data").rename(tmp_path / "moved_data")
    train("train_our_post_resnet.py", os.path.relpath(tmp_path / "moved_data"), tmp_path / "resumed", *args,
          "--resume=true")

    straight = load_checkpoint(tmp_path / "straight" / "resnet50" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "resnet50" / "last.pt")
    assert resumed["epoch"] == straight["epoch"] == 2
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    metrics = pd.read_csv(tmp_path / "resumed" / "resnet50" / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]


@pytest.mark.slow
def test_smoke_runs_write_the_run_folder(data_dir, tmp_path):
    train("train_our_post.py", data_dir, tmp_path, "--epochs=1", "--max_steps_per_epoch=2",
          "--batch_size=4", "--rerank_eval=true", "--run_name=vit")
    train("train_our_post_resnet.py", data_dir, tmp_path, "--model=efficientnet_lite0",
          "--pretrained=true", "--img_size=64", "--epochs=1", "--max_steps_per_epoch=1",
          "--batch_size=4", "--run_name=lite", "--loss=id")
    for run in ("vit", "lite"):
        folder = tmp_path / run
        assert {p.name for p in folder.iterdir()} == {"config.json", "metrics.csv", "curves.png", "best.pt",
                                                      "last.pt", "complete.json"}
        best, last = load_checkpoint(folder / "best.pt"), load_checkpoint(folder / "last.pt")
        assert {"model", "config", "data", "data_config", "epoch", "metrics"} <= best.keys()
        assert best.keys() <= last.keys(), "last.pt is best.pt's format plus the state to resume"
        assert best["model"].keys() == last["model"].keys()
        assert {"criterion", "optimizer", "scheduler", "scaler", "rng"} <= last.keys()
        with Image.open(folder / "curves.png") as png:
            assert png.format == "PNG" and png.width > 400
        metrics = pd.read_csv(folder / "metrics.csv")
        assert {"epoch", "loss", "lr", "mAP", "rank1", "rank5"} <= set(metrics.columns)
        assert metrics["mAP"].between(0, 1).all()
    assert {"mAP_kr", "mAP_hw"} <= set(pd.read_csv(tmp_path / "vit" / "metrics.csv").columns)
    assert load_checkpoint(tmp_path / "lite" / "best.pt")["data_config"]["img_size"] == 64


@pytest.mark.slow
def test_nan_loss_stops_cleanly_and_keeps_the_last_checkpoint(data_dir, tmp_path, monkeypatch):
    args = ["--epochs=2", "--max_steps_per_epoch=2", "--batch_size=4"]
    train("train_our_post_resnet.py", data_dir, tmp_path, *args[1:], "--epochs=1")
    last = tmp_path / "resnet50" / "last.pt"
    saved = last.read_bytes()
    calls = {"n": 0}
    original = InfoNCE.forward

    def poisoned(self, q, g, labels=None):
        calls["n"] += 1
        loss = original(self, q, g, labels)
        return loss * float("nan") if calls["n"] == 2 else loss

    monkeypatch.setattr(InfoNCE, "forward", poisoned)
    result = call("train_our_post_resnet.py", f"--data_dir={data_dir}", f"--checkpoint_dir={tmp_path}",
                  *TINY, *args, "--resume=true")
    assert result.returncode == 1
    assert "loss is nan at epoch 2, step 2" in result.stderr and str(last) in result.stderr
    assert last.read_bytes() == saved


@pytest.mark.slow
def test_resume_on_changed_data_is_refused(data_dir, tmp_path):
    shutil.copytree(data_dir, tmp_path / "data")
    train("train_our_post_resnet.py", tmp_path / "data", tmp_path, "--epochs=1", "--max_steps_per_epoch=1",
          "--batch_size=4")
    image = next((tmp_path / "data" / "data_reid" / "reid_training").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    again = call("train_our_post_resnet.py", f"--data_dir={tmp_path / 'data'}", f"--checkpoint_dir={tmp_path}",
                 *TINY, "--epochs=2", "--max_steps_per_epoch=1", "--batch_size=4", "--resume=true")
    assert again.returncode == 1 and "trained on other data" in again.stderr


@pytest.mark.slow
def test_resume_with_another_recipe_names_the_field(data_dir, tmp_path):
    train("train_our_post_resnet.py", data_dir, tmp_path, "--epochs=1", "--max_steps_per_epoch=1",
          "--batch_size=4")
    again = call("train_our_post_resnet.py", f"--data_dir={data_dir}", f"--checkpoint_dir={tmp_path}",
                 *TINY, "--epochs=2", "--batch_size=4", "--lr=0.1", "--resume=true")
    assert again.returncode == 1 and "lr" in again.stderr
    fresh = call("train_our_post_resnet.py", f"--data_dir={data_dir}", f"--checkpoint_dir={tmp_path}",
                 *TINY, "--epochs=1", "--batch_size=4")
    assert fresh.returncode == 1 and "--resume=true" in fresh.stderr


def test_a_last_pt_with_one_weight_decay_for_every_parameter_is_refused_in_one_line(data_dir, tmp_path):
    """Before the parameter groups, the optimizer state had one group: it cannot resume exactly."""
    train("train_our_post_resnet.py", data_dir, tmp_path, "--epochs=1", "--max_steps_per_epoch=1", "--batch_size=4")
    last = tmp_path / "resnet50" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    groups = ckpt["optimizer"]["param_groups"]
    ckpt["optimizer"]["param_groups"] = [groups[1] | {"params": groups[0]["params"] + groups[1]["params"]}]
    torch.save(ckpt, last)
    again = call("train_our_post_resnet.py", f"--data_dir={data_dir}", f"--checkpoint_dir={tmp_path}",
                 *TINY, "--epochs=2", "--max_steps_per_epoch=1", "--batch_size=4", "--resume=true")
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert "optimizer state of an earlier version" in again.stderr and "train a new run" in again.stderr


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("fault,message", [("reader", "error: cannot read image crop_0042.jpeg: broken data stream"),
                                           ("writer", "no space left on device")])
def test_a_fault_on_one_rank_ends_every_rank_with_it_named_once(data_dir, tmp_path, fault, message):
    """Rank 1 cannot read an image mid-epoch, or rank 0 cannot write its checkpoint: both ranks
    exit promptly, the fault is named once, the other rank says why it stopped in one line, and
    no checkpoint is left half-written."""
    started = time.monotonic()
    result = torchrun(2, str(REPO / "tests" / "dist_fault.py"), fault, f"--data_dir={data_dir}",
                      f"--checkpoint_dir={tmp_path}", *TINY, "--epochs=2", "--batch_size=4")
    assert result.returncode != 0 and time.monotonic() - started < 120
    assert result.stderr.count(message) == 1, result.stderr[-3000:]
    assert result.stderr.count("stopped: another process of this run failed") == 1
    assert "]: Traceback" not in result.stderr, "no rank prints a traceback"
    run_dir = tmp_path / "run"
    assert not [p.name for p in run_dir.iterdir() if p.suffix in (".pt", ".tmp") or p.name.endswith(".pt.tmp")]


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
                  "--model=resnet18", f"--pretrained={path}", *SMOKE_TRAIN[1:])
    assert result.returncode == 1 and words in result.stderr and "weights_only=False" not in result.stderr
    assert result.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == ([path] if weights == "text" else [])


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

