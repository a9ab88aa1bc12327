"""bench/gpu.py runs end to end on the CPU at smoke sizes, so it is known to work when a GPU appears."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

import bench.gpu as gpu
from helpers import REPO
from reid.errors import ReidError

CUDA_ONLY = {"peak_memory_gib", "peak_tflops", "mfu"}  # null on the CPU


def numbers(value, key: str = "") -> list[tuple[str, object]]:
    """(key, value) of every scalar in a JSON value, nested keys joined with dots."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in numbers(v, f"{key}.{k}".lstrip("."))]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in numbers(v, f"{key}.{i}")]
    return [(key, value)]


@pytest.mark.slow
def test_smoke_run_on_cpu_prints_one_json_line():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "bench.gpu", "--device=cpu", "--smoke=true"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])
    assert {"device", "model", "batch_pairs", "train", "rerank", "total_s"} <= set(result)
    assert {"images_per_s", "step_s", "peak_memory_gib", "tflop_per_step", "achieved_tflops", "peak_tflops",
            "peak_tflops_from", "mfu"} <= set(result["train"])
    assert [r["images"] for r in result["rerank"]] == [200, 500]
    for key, value in numbers(result):
        if key.rsplit(".", 1)[-1] in CUDA_ONLY:
            assert value is None, key
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            assert math.isfinite(value) and value >= 0, key
    assert result["train"]["images_per_s"] > 0 and result["train"]["tflop_per_step"] > 0
    assert all(r["seconds"] > 0 for r in result["rerank"])
    assert result["rerank"][0]["vs_numpy"]["max_abs_diff"] <= 1e-5


def test_out_of_memory_retries_once_with_checkpointing(monkeypatch):
    tried = []

    def train(cfg: gpu.Config, device: torch.device) -> dict:
        tried.append(cfg.grad_checkpointing)
        if not cfg.grad_checkpointing or len(tried) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return {"images_per_s": 1.0}

    monkeypatch.setattr(gpu, "train", train)
    cfg, result = gpu.train_fitting(gpu.Config(), torch.device("cpu"))
    assert tried == [False, True] and cfg.grad_checkpointing and result == {"images_per_s": 1.0}
    with pytest.raises(ReidError, match="smaller --batch_size"):
        gpu.train_fitting(gpu.Config(), torch.device("cpu"))
