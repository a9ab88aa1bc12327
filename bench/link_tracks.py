"""link_tracks.py against the tracker alone and BoxMOT's GTA, on the same tracks and features.

    make boxmot-env                                   # BoxMOT in .venv-boxmot (it pins pandas<3, opencv<5)
    python -m bench.link_tracks --checkpoints=checkpoints/clips/lite0_96
    python -m bench.link_tracks --timing=true         # and a whole-game clip through link_tracks.py

For each seed: the first synthetic clip of that seed (download.py --synthetic_kind=clips, size
`size`), tracked by track.py's tracker; every box of the tracks embedded once with the
checkpoints, fused. GTA (bench/gta_boxmot.py, run by BoxMOT's own interpreter) gets every box's
feature, as BoxMOT's pipeline gives it (with its defaults, and with the connector's merge distance
set for this model: GTA_RUNS); link_tracks' method (reid.linking.link_tracklets) looks
up those same features for the boxes it samples. All three are scored by reid.track_metrics
(HOTA, IDF1, AssA, ID switches), and the identities found set against the clip's true number of
people. Seconds are those of the association alone, features given; GTA's peak memory is its
process's maximum resident set (BoxMOT imports torch), ours the association's tracemalloc peak.

`--timing=true` then makes a `full` clip (about 25,000 boxes), tracks it, and runs link_tracks.py
on it in a fresh process, embedding included: wall seconds and the process's peak resident set.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

import link_tracks
from reid.config import format_config, run
from reid.errors import ReidError
from reid.frames import ImageFolder, cut_crops, inside
from reid.linking import Settings, link_tracklets
from reid.mot import MotRows, read_mot, read_seqinfo, write_mot
from reid.rules import Checked, Count, Items, PositiveInt
from reid.synthetic.clips import CLIPS, generate_clips, sequence_names
from reid.synthetic.planning import Size
from reid.track_metrics import tracking_scores
from reid.tracking import Tracker, track

REPO = Path(__file__).resolve().parents[1]
# (steps, the connector's merge distance, row name): BoxMOT's defaults, then the distance that suits this
# project's clip model (the best of 0.4-0.8 for both variants on seeds 3-5, where link_tracks' defaults were chosen)
GTA_RUNS = (("split", 0.4, "+ BoxMOT GTA, its defaults"), ("split", 0.65, "+ BoxMOT GTA, merge distance 0.65"),
            ("connect", 0.65, "+ BoxMOT GTA connector only, 0.65"))


@dataclass
class Config(Checked):
    seeds: Annotated[tuple[Count, ...], Items()] = (0, 1, 2)  # one clip a seed (the first of its size)
    size: Size = "small"  # clip length: tiny 150 frames, small 600, full 2000
    checkpoints: tuple[Path, ...] = (Path("checkpoints/clips/lite0_96"),)  # fused, as link_tracks.py takes them
    tracker: Tracker = "bytetrack"  # track.py's tracker
    boxmot_python: Path = Path(".venv-boxmot/bin/python")  # an interpreter with boxmot installed
    work_dir: Path = Path("outputs/bench_link_tracks")  # clips, tracks and features (reused when there)
    timing: bool = False  # also link a whole-game clip end to end in a fresh process
    batch_size: PositiveInt = 128  # crops per forward pass while embedding every box


def clip_of(cfg: Config, seed: int, size: Size) -> Path:
    """The first clip of `seed`, made once under work_dir."""
    root = cfg.work_dir / f"{size}-seed{seed}"
    if not (root / CLIPS).is_dir():
        generate_clips(root, size, seed, progress=False)
    return root / CLIPS / sequence_names(size, seed)[0]


def tracked(cfg: Config, sequence: Path) -> MotRows:
    """The tracker's output for a clip, made once beside the clip (as are the features and results)."""
    out = sequence.parent.parent / f"{cfg.tracker}.txt"
    if not out.is_file():
        info = read_seqinfo(sequence)
        write_mot(out, *track(read_mot(sequence / "det" / "det.txt", "detections"), info.frames, cfg.tracker,
                              info.fps))
    return read_mot(out)


def all_features(cfg: Config, sequence: Path, rows: MotRows, usable: np.ndarray) -> np.ndarray:
    """Unit features of every usable box (zeros elsewhere), embedded as link_tracks.py embeds its
    samples, once, and kept."""
    path = sequence.parent.parent / f"{cfg.tracker}-features.npy"
    if path.is_file():
        return np.load(path)
    info = read_seqinfo(sequence)
    rows_in = np.flatnonzero(usable)
    crops = cut_crops(ImageFolder(sequence, info), rows.frame[rows_in], rows.box[rows_in])
    fused, _ = link_tracks.embed_crops(link_tracks.Config(checkpoints=cfg.checkpoints, device="cpu",
                                                          batch_size=cfg.batch_size), crops)
    out = np.zeros((len(rows), fused.shape[1]), dtype=np.float32)
    out[rows_in] = fused
    np.save(path, out)
    return out


def run_gta(cfg: Config, sequence: Path, rows: MotRows, features: np.ndarray, usable: np.ndarray,
            steps: str, merge_distance: float) -> tuple[Path, float, float]:
    """(tracks file, seconds, peak MiB) of BoxMOT's GTA (`steps`: split then connect, or connect
    alone; the connector merging below `merge_distance`) on the usable boxes and their features."""
    if not cfg.boxmot_python.is_file():
        raise ReidError(f"--boxmot_python={cfg.boxmot_python}: no such interpreter; make boxmot-env installs one")
    source = sequence.parent.parent / "gta-in.npz"
    np.savez(source, frame=rows.frame[usable], id=rows.id[usable], box=rows.box[usable], conf=rows.conf[usable],
             feat=features[usable])
    out = sequence.parent.parent / f"gta-{steps}-{merge_distance}.txt"
    _, seconds, peak = measured(cfg.boxmot_python, REPO / "bench" / "gta_boxmot.py",
                                [str(source), str(out), steps, str(merge_distance)])
    return out, seconds, peak


def measured(python: Path | str, script: Path, args: list[str]) -> tuple[str, float, float]:
    """(stdout, wall seconds, peak resident MiB) of `script` run by `python` in a process of its own."""
    code = ("import resource, runpy, sys, time; sys.argv = sys.argv[1:]; t = time.perf_counter(); "
            "runpy.run_path(sys.argv[0], run_name='__main__'); "
            "print('BENCH', time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([str(python), "-c", code, str(script), *args], capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise ReidError(f"{script.name} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    _, seconds, rss = next(line for line in done.stdout.splitlines() if line.startswith("BENCH")).split()
    return done.stdout, float(seconds), int(rss) / 1024


def run_ours(cfg: Config, sequence: Path, rows: MotRows, features: np.ndarray,
             usable: np.ndarray) -> tuple[Path, float, float, int]:
    """(tracks file, seconds, peak MiB, identities) of link_tracks' method on the same features."""
    tracemalloc.start()
    started = time.perf_counter()
    linked = link_tracklets(rows.frame, rows.id, rows.box, rows.conf, usable, lambda r: features[r], Settings())
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    out = sequence.parent.parent / "link_tracks.txt"
    write_mot(out, rows.frame, linked.new_id, rows.box, rows.conf)
    return out, seconds, peak, int(linked.identity.max()) + 1


def people(sequence: Path) -> int:
    return len(np.unique(read_mot(sequence / "gt" / "gt.txt").id))


def compare(cfg: Config, seed: int) -> list[str]:
    sequence = clip_of(cfg, seed, cfg.size)
    rows = tracked(cfg, sequence)
    info = read_seqinfo(sequence)
    usable = inside(rows.box, info.width, info.height)
    features = all_features(cfg, sequence, rows, usable)
    gt = sequence / "gt" / "gt.txt"
    runs = [(cfg.tracker, rows.path, len(np.unique(rows.id)), "", "")]
    for steps, merge_distance, name in GTA_RUNS:
        gta, seconds, mb = run_gta(cfg, sequence, rows, features, usable, steps, merge_distance)
        runs.append((name, gta, len(np.unique(read_mot(gta).id)), f"{seconds:.1f}", f"{mb:.0f} (RSS)"))
    ours, seconds, mb, k = run_ours(cfg, sequence, rows, features, usable)
    runs.append(("+ link_tracks", ours, k, f"{seconds:.1f}", f"{mb:.0f} (traced)"))
    lines = []
    for name, path, ids, seconds, mb in runs:
        s = tracking_scores(gt, path)
        lines.append(f"| {seed} | {name} | {s['HOTA']:.1f} | {s['IDF1']:.1f} | {s['AssA']:.1f} | {s['IDSW']:.0f} | "
                     f"{ids} / {people(sequence)} | {seconds} | {mb} |")
    return lines


def timing(cfg: Config) -> str:
    """A full clip through link_tracks.py in a fresh process: (boxes, wall seconds, peak MiB)."""
    sequence = clip_of(cfg, 0, "full")
    rows = tracked(cfg, sequence)
    out = sequence.parent.parent / "linked"
    if out.exists():
        shutil.rmtree(out)
    said, wall, peak = measured(sys.executable, REPO / "link_tracks.py", [
        f"--sequence={sequence}", f"--tracks={rows.path}", f"--checkpoints={','.join(map(str, cfg.checkpoints))}",
        f"--out_dir={out}"])
    kept = [line for line in said.splitlines() if "tracklets ->" in line or "linked" in line or "tracker" in line]
    return f"{len(rows)} boxes linked end to end in {wall:.0f} s, peak resident {peak:.0f} MiB\n" + "\n".join(kept)


def main(cfg: Config) -> None:
    print(format_config(cfg))
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    print("| seed | method | HOTA | IDF1 | AssA | IDSW | ids / people | seconds | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in cfg.seeds:
        for line in compare(cfg, seed):
            print(line, flush=True)
    if cfg.timing:
        print(timing(cfg))


if __name__ == "__main__":
    run(main, Config)
