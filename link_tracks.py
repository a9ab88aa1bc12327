"""Stage 9: a tracker's tracklets -> player identities across a game, in the tracker's own format.

    python link_tracks.py --sequence=SEQ --tracks=tracks.txt --checkpoints=checkpoints/clips/lite0_96 --out_dir=out
    python link_tracks.py --video=game.mp4 --tracks=game_tracks.txt --checkpoints=model.onnx --out_dir=out

Each tracklet is embedded at a bounded sample of its boxes, cut where its player changes and
the pieces grouped into identities, never two pieces that share a frame (reid/linking.py). It
writes OUT/tracks.txt (every input row, the id replaced by its identity), OUT/identities.csv,
OUT/identities.png and provenance.json; with ground truth (--truth, or the sequence's
gt/gt.txt) it prints HOTA and IDF1 before and after. README.md, stage 9.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from reid.api import check_entry, entry_name, input_paths, open_embedder
from reid.config import format_config, run
from reid.device import Amp, amp_note, resolve_device
from reid.embedding import Scales
from reid.errors import ReidError
from reid.files import write_json, write_text
from reid.frames import Frames, ImageFolder, Video, cut_crops, inside
from reid.fusion import fuse_features
from reid.io import PROVENANCE, write_csv
from reid.linking import Distance, Linked, MinPart, Settings, Similarity, link_tracklets
from reid.mot import MotRows, check_frames, mot_text, read_mot, read_seqinfo
from reid.outputs import claimed, folder_as_unit
from reid.rules import Checked, Count, PositiveInt
from reid.track_metrics import scores_line, tracking_scores
from reid.visualize import identity_sheet

STAGE = "link_tracks"


@dataclass
class Config(Checked):
    sequence: Path | None = None  # a MOT sequence folder: img1/000001.jpg..., seqinfo.ini (gt/gt.txt to score)
    video: Path | None = None  # or a video file (read with OpenCV) instead of --sequence
    tracks: Path = Path("tracks.txt")  # the tracker's MOT txt: frame,id,x,y,w,h,conf,...
    checkpoints: tuple[Path, ...] = (Path("checkpoints/clips/lite0_96"),)  # as identify.py: several fused
    out_dir: Path = Path("outputs/link_tracks")  # tracks.txt, identities.csv, identities.png, provenance.json
    truth: Path | None = None  # MOT ground truth to score before and after (default: <sequence>/gt/gt.txt)
    samples: PositiveInt = Settings.samples  # boxes embedded per tracklet at most (bounds time and memory)
    split_distance: Distance = Settings.split_distance  # cut where two parts' mean features are this far apart
    min_part: MinPart = Settings.min_part  # sampled boxes on each side of a cut at least
    link_similarity: Similarity = Settings.link_similarity  # merge while mean pair Jaccard similarity exceeds this
    k1: PositiveInt = Settings.k1  # k-reciprocal neighbours of each embedded box
    k2: PositiveInt = Settings.k2  # their local query expansion
    batch_size: PositiveInt = 64  # crops per forward pass
    num_workers: Count = 2  # image-preprocessing threads
    device: Literal["auto", "cuda", "cpu"] = "auto"  # auto: CUDA when available
    amp: Amp = "bf16"  # mixed precision on CUDA; CPU runs fp32
    scales: Scales = (1.0,)  # embed at these multiples of each model's input size, averaged
    sheet_rows: PositiveInt = 24  # identities shown on identities.png


def open_frames(cfg: Config) -> Frames:
    """The frames of --sequence or --video (one of them)."""
    if (cfg.sequence is None) == (cfg.video is None):
        raise ReidError("give the frames: --sequence=<MOT sequence folder> or --video=<file>, one of them")
    if cfg.video is not None:
        return Video(cfg.video)
    return ImageFolder(cfg.sequence, read_seqinfo(cfg.sequence))


def truth_file(cfg: Config) -> Path | None:
    if cfg.truth is not None:
        if not cfg.truth.is_file():
            raise ReidError(f"--truth={cfg.truth}: no such file")
        return cfg.truth
    found = None if cfg.sequence is None else cfg.sequence / "gt" / "gt.txt"
    return found if found is not None and found.is_file() else None


def inputs_of(cfg: Config) -> list[tuple[str, Path]]:
    named = [("sequence", cfg.sequence), ("video", cfg.video), ("tracks", cfg.tracks), ("truth", cfg.truth)]
    return [(o, p) for o, p in named if p is not None] + [("checkpoints", p) for p in input_paths(cfg.checkpoints)]


def embed_crops(cfg: Config, crops: list[np.ndarray]) -> tuple[np.ndarray, list[dict]]:
    """Fused unit features of `crops` over every checkpoint, and where each model came from."""
    device = resolve_device(cfg.device)
    if note := amp_note(cfg.amp, device):
        print(note)
    features, sources = [], []
    for entry in cfg.checkpoints:
        embedder = open_embedder(entry, device, amp=cfg.amp, scales=cfg.scales, own_size_if_refused=True,
                                 workers=cfg.num_workers)
        features.append(embedder.embed(crops, batch_size=cfg.batch_size, progress=True, desc=entry_name(entry)))
        sources.append({**embedder.source, "scales": list(embedder.used_scales())})
    return fuse_features(features), sources


def report_outside(rows: MotRows, outside: np.ndarray) -> None:
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        print(f"{int(outside.sum())} boxes lie (almost) outside the frame, e.g. frame {rows.frame[first]} id "
              f"{rows.id[first]}: kept in tracks.txt under their tracklet's identity, not embedded")


def main(cfg: Config) -> None:
    print(format_config(cfg))
    if not cfg.checkpoints:
        raise ReidError("no checkpoints given: --checkpoints=run_folder[,run_folder...]")
    for entry in cfg.checkpoints:
        check_entry(entry)
    frames = open_frames(cfg)
    rows = read_mot(cfg.tracks, "tracks")
    if frames.count:
        check_frames(rows, frames.count, frames.name)
    truth = truth_file(cfg)
    with claimed([cfg.out_dir], "out_dir", STAGE, inputs_of(cfg)):
        write_linked(cfg, frames, rows, truth)


def write_linked(cfg: Config, frames: Frames, rows: MotRows, truth: Path | None) -> None:
    """Sample, embed, split and link the tracklets, then write the output folder as one unit."""
    started = time.perf_counter()
    usable = inside(rows.box, frames.width, frames.height)
    report_outside(rows, ~usable)
    crops: list[np.ndarray] = []
    sources: list[dict] = []

    def embed(sampled: np.ndarray) -> np.ndarray:
        new = cut_crops(frames, rows.frame[sampled], rows.box[sampled], progress=True)
        crops.extend(new)
        features, used = embed_crops(cfg, new)
        sources[:] = used
        return features

    settings = Settings(cfg.samples, cfg.split_distance, cfg.min_part, cfg.link_similarity, cfg.k1, cfg.k2)
    linked = link_tracklets(rows.frame, rows.id, rows.box, rows.conf, usable, embed, settings)
    seconds = time.perf_counter() - started
    pieces, identity = linked.pieces, linked.identity
    n_tracklets = len(np.unique(rows.id))
    with folder_as_unit(cfg.out_dir, STAGE) as stage:
        write_text(stage / "tracks.txt", mot_text(rows.frame, linked.new_id, rows.tail))
        write_csv(piece_table(rows, linked), stage / "identities.csv")
        shown = np.concatenate(pieces.samples)
        identity_sheet(stage / "identities.png", [crops[i] for i in shown], np.repeat(identity, pieces.sample_counts),
                       max_rows=cfg.sheet_rows, title=f"{rows.path}: {identity.max() + 1} identities")
        write_json({"tracks": str(rows.path), "frames": frames.name, "sources": sources,
                    "settings": asdict(settings)}, stage / PROVENANCE)
    print(f"{n_tracklets} tracklets -> {identity.max() + 1} identities ({len(pieces)} pieces, {len(linked.sampled)} "
          f"crops embedded, {seconds:.1f} s); wrote {cfg.out_dir}")
    if truth is not None:
        before, after = tracking_scores(truth, rows.path), tracking_scores(truth, cfg.out_dir / "tracks.txt")
        print(f"against {truth}: tracker {scores_line(before)}")
        print(f"{' ' * (len(str(truth)) + 10)}linked  {scores_line(after)}")


def piece_table(rows: MotRows, linked: Linked) -> pd.DataFrame:
    """identities.csv: each piece's tracklet, first and last frame, boxes, boxes embedded,
    identity (the id in tracks.txt) and confidence."""
    of_row, n = linked.pieces.of_row, len(linked.pieces)
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.zeros(n, dtype=np.int64)
    np.minimum.at(first, of_row, rows.frame)
    np.maximum.at(last, of_row, rows.frame)
    track_id = np.zeros(n, dtype=np.int64)
    track_id[of_row] = rows.id
    return pd.DataFrame({"piece": np.arange(n), "track_id": track_id, "first_frame": first, "last_frame": last,
                         "boxes": np.bincount(of_row, minlength=n), "samples": linked.pieces.sample_counts,
                         "identity": linked.identity + 1, "confidence": np.round(linked.confidence, 4)})


if __name__ == "__main__":
    run(main, Config)
