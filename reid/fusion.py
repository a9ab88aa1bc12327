"""Fusion of distance matrices from several models (docs/RERANKING.md §4).

All matrices are (queries x gallery) over the same row and column order; a stage that reads
them from disk checks the id files, these functions check the shapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from reid.errors import ReidError
from reid.files import read_json, write_json
from reid.io import PROVENANCE, labels_for, load_aligned, write_outputs
from reid.metrics import evaluate
from reid.outputs import claimed, folder_as_unit
from reid.rerank import smallest
from reid.rules import NonNegative, PositiveInt, checked, finite_matrix


def _stack(mats: Sequence[np.ndarray]) -> np.ndarray:
    """(models, nq, ng) float32 from matrices that must agree in shape and be finite."""
    if len(mats) == 0:
        raise ReidError("nothing to fuse: no distance matrices given")
    first = finite_matrix(mats[0], "matrix 1")
    return np.stack([first, *(finite_matrix(m, f"matrix {i}", first.shape, sizes="matrix 1")
                              for i, m in enumerate(mats[1:], start=2))])


def _shares(weights: Sequence[float] | None, n: int, what: str) -> np.ndarray:
    """Weights as shares summing to one: one per model, not all zero (None: equal shares)."""
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or w.sum() <= 0:
        raise ReidError(f"weights={','.join(map(str, w.tolist()))}: expected one per {what} ({n}), not all zero")
    return w / w.sum()


@checked
def mean_fuse(mats: Sequence[np.ndarray], weights: Sequence[NonNegative] | None = None) -> np.ndarray:
    """The (weighted) element-wise mean, float32."""
    stack = _stack(mats)
    return np.tensordot(_shares(weights, len(stack), "matrix"), stack, axes=1).astype(np.float32)


@checked
def fuse_features(features: Sequence[np.ndarray], weights: Sequence[NonNegative] | None = None) -> np.ndarray:
    """Several models' features of the same images as one feature set whose squared Euclidean
    distances are the (weighted) mean of theirs: `mean_fuse` of the models' plain matrices,
    without forming any matrix, so that all-pairs work (re-ranking, clustering) stays bounded
    by the neighbourhoods. Model m's features are scaled by sqrt(w_m / sum w) and concatenated."""
    if len(features) == 0:
        raise ReidError("nothing to fuse: no features given")
    first = finite_matrix(features[0], "features of model 1")
    rest = [finite_matrix(f, f"features of model {i}", (len(first), None), sizes="the images of model 1")
            for i, f in enumerate(features[1:], start=2)]
    scale = np.sqrt(_shares(weights, len(features), "model"))
    return np.concatenate([f * s for f, s in zip([first, *rest], scale, strict=True)], axis=1).astype(np.float32)


@checked
def consensus_weights(stack: np.ndarray, topk: PositiveInt = 15, min_votes: PositiveInt | None = None) -> np.ndarray:
    """Per-row model weights (nq, models) of dissimilarity fusion, steps 1-5 of §4.

    A model's share of the consensus set is inverted: the model that agrees *more* with the
    others gets *less* weight. That is the published rule, kept as published.
    """
    n_models, nq, ng = stack.shape
    topk = min(topk, ng)
    min_votes = n_models // 2 + 1 if min_votes is None else min_votes
    top = np.stack([smallest(m, topk)[0] for m in stack])  # ties go to the lower gallery index
    keys = np.arange(nq)[None, :, None] * ng + top
    _, where, votes = np.unique(keys, return_inverse=True, return_counts=True)
    good = (votes >= min_votes)[where].reshape(keys.shape)
    counts = good.sum(axis=2).T.astype(np.float64)
    total = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, total, out=np.full_like(counts, 1.0 / n_models), where=total > 0)
    share[(counts == 0) & (total > 0)] = 0.1
    inverse = 1.0 / share
    return inverse / inverse.sum(axis=1, keepdims=True)


@checked
def dissim_fuse(mats: Sequence[np.ndarray], topk: PositiveInt = 15, min_votes: PositiveInt | None = None) -> np.ndarray:
    """Consensus-weighted fusion: each row mixes the models with its own weights, float32."""
    if min_votes is not None and min_votes > len(mats):
        raise ReidError(f"min_votes={min_votes} but only {len(mats)} models vote: no image could reach the "
                        f"consensus (use at most {len(mats)})")
    stack = _stack(mats)
    weights = consensus_weights(stack, topk, min_votes)
    return np.einsum("qm,mqg->qg", weights, stack).astype(np.float32)


STAGE = "fusion"  # sim_fuse.py and dissim_fuse.py write the same files: either may replace the other's


def fuse_files(inputs: Sequence[Path], fuse: Callable[[list[np.ndarray]], np.ndarray], out_dir: Path,
               labels: Path | None = None) -> list[str]:
    """Fuse aligned matrices from disk, write the result with its ids and CSV; report lines.

    The shared body of sim_fuse.py and dissim_fuse.py: only `fuse` differs between them.
    """
    check_inputs(inputs)
    read = [("inputs", unit_of(p)) for p in inputs] + ([("labels", Path(labels))] if labels is not None else [])
    with claimed([out_dir], "out_dir", STAGE, read):
        images = same_images([*inputs, *([labels] if labels is not None else [])])
        mats, query_ids, gallery_ids = load_aligned(inputs)
        fused = fuse(mats)
        lines = []
        if labels is not None:  # before writing: a bad labels file must not leave an unscored output
            s = evaluate(fused, labels_for(labels, query_ids), labels_for(labels, gallery_ids))
            lines.append(f"mAP {s['mAP']:.4f}  rank-1 {s['rank1']:.4f}  rank-5 {s['rank5']:.4f}")
        with folder_as_unit(out_dir, STAGE) as stage:
            written = [Path(out_dir) / p.name for p in write_outputs(stage, fused, query_ids, gallery_ids)]
            if images is not None:  # so that a fusion of this fusion is checked the same way
                sources = [str(Path(p).resolve()) for p in inputs]
                written.append(Path(out_dir) / write_json(images | {"sources": sources}, stage / PROVENANCE).name)
    return [f"wrote {path}" for path in written] + lines


def same_images(paths: Sequence[Path]) -> dict | None:
    """The split and image fingerprint that the files' provenance.json (written by predict.py
    beside them) agree on, or None where none has one. Ids that are positions (the test split's)
    name different images in different datasets, and the same positions of another split: such
    inputs, or labels of other images, are refused rather than silently scored."""
    seen: dict[Path, dict] = {}
    for path in paths:
        record = read_json(Path(path).parent / PROVENANCE, {})
        if record:
            seen[Path(path)] = {"split": record.get("split"), "images": record.get("images")}
    if not seen:
        return None
    first, expected = next(iter(seen.items()))
    for path, found in seen.items():
        if found != expected:
            raise ReidError(f"{path} belongs to other images than {first} (the {found['split']} split vs the "
                            f"{expected['split']} split, or another dataset; see their {PROVENANCE})")
    return expected


def unit_of(matrix: Path) -> Path:
    """What reading `matrix` reads: a `.npy` with the id files and manifest beside it (its
    folder), or an official CSV alone (a matrix that is not there: itself, named when read)."""
    return Path(matrix).parent if Path(matrix).suffix == ".npy" and Path(matrix).is_file() else Path(matrix)


def check_inputs(inputs: Sequence[Path]) -> None:
    """Some inputs, each given once (twice would count double). The output folder is
    kept apart from them by reid.outputs, which `fuse_files` holds it with."""
    if not inputs:
        raise ReidError("no input matrices given")
    seen: set[Path] = set()
    for path in inputs:
        if Path(path).resolve() in seen:
            raise ReidError(f"{path} is given twice in --inputs")
        seen.add(Path(path).resolve())
