"""Batched feature extraction for evaluation and prediction."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA when a dtype is given; plain fp32 elsewhere."""
    if device.type == "cuda" and dtype is not None:
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


@torch.no_grad()
def extract_features(model: nn.Module, loader: DataLoader, device: torch.device,
                     amp_dtype: torch.dtype | None = None, flip: bool = False,
                     desc: str = "features", progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L2-normalised float32 features, ids, "q"/"g" types) of an `EvalDataset` loader.

    With `flip`, the features of each image and its mirror image are summed before the
    normalisation (test-time augmentation).
    """
    was_training = model.training
    model.eval()
    feats, ids, types = [], [], []
    for images, batch_ids, batch_types in tqdm(loader, desc=desc, leave=False, disable=not progress):
        images = images.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            out = model(images).float()
            if flip:
                out = out + model(images.flip(-1)).float()
        feats.append(F.normalize(out, dim=-1).cpu())
        ids.append(np.asarray(batch_ids))
        types += list(batch_types)
    model.train(was_training)
    return torch.cat(feats).numpy(), np.concatenate(ids), np.asarray(types)
