"""The tracking field's scores of a tracks file against ground truth: HOTA, AssA, DetA, IDF1,
ID switches, MOTA, by the evaluation module of Roboflow's `trackers` (a port of TrackEval's
matching and metrics, checked against it by its authors), as MOTChallenge scores them."""

from __future__ import annotations

from pathlib import Path

from reid.errors import ReidError

SCORES = ("HOTA", "IDF1", "AssA", "DetA", "IDSW", "MOTA")


def tracking_scores(ground_truth: Path | str, tracks: Path | str) -> dict[str, float]:
    """HOTA, IDF1, AssA, DetA, MOTA in percent and IDSW, a count, of `tracks` against `ground_truth`."""
    from trackers.eval import evaluate_mot_sequence

    for path in (ground_truth, tracks):
        if not Path(path).is_file():
            raise ReidError(f"{path}: no such file")
    result = evaluate_mot_sequence(ground_truth, tracks, metrics=["CLEAR", "HOTA", "Identity"])
    return {"HOTA": 100 * result.HOTA.HOTA, "IDF1": 100 * result.Identity.IDF1, "AssA": 100 * result.HOTA.AssA,
            "DetA": 100 * result.HOTA.DetA, "IDSW": float(result.CLEAR.IDSW), "MOTA": 100 * result.CLEAR.MOTA}


def scores_line(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {scores[k]:.0f}" if k == "IDSW" else f"{k} {scores[k]:.1f}" for k in SCORES)
