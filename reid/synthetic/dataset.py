"""The dataset on disk: every crop, the challenge ground truth, the contact sheet and the marker.

Written in a hidden folder and renamed at the end, so a crash never leaves half a dataset.
"""

from __future__ import annotations

import csv
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from reid.errors import ReidError
from reid.files import write_json
from reid.images import usable_cores
from reid.layouts import Layout
from reid.outputs import staging_folder
from reid.rules import Count, PositiveInt, checked
from reid.splits import GROUND_TRUTH
from reid.synthetic.crops import render_sequence
from reid.synthetic.layouts import relayout
from reid.synthetic.planning import Plan, Size, plan
from reid.synthetic.preview import contact_sheet

MARKER = "synthetic.json"
CONTACT_SHEET = "synthetic_contact_sheet.png"


def ground_truth_rows(p: Plan) -> list[tuple[str, int, int, int, str]]:
    """(img_id, player, sequence, frame, img_type) of every challenge image."""
    return [(path, person.player, seq.number, frame, "q" if frame == 0 else "g")
            for seq in p.sequences if seq.split == "challenge"
            for person in seq.people for frame, path in person.files]


def _render_all(p: Plan, root: Path, workers: int, progress: bool) -> None:
    """Render every sequence, in worker processes when there is more than one."""
    from tqdm import tqdm

    jobs = [(seq, p.seed, str(root)) for seq in sorted(p.sequences, key=lambda s: -s.n_images)]
    with tqdm(total=p.n_images, unit="img", desc=f"synthetic {p.size}", disable=not progress) as bar:
        if workers <= 1:
            for job in jobs:
                bar.update(render_sequence(job))
            return
        context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for done in as_completed([pool.submit(render_sequence, job) for job in jobs]):
                bar.update(done.result())


@checked
def generate(data_dir: Path, size: Size = "small", seed: Count = 0, workers: PositiveInt | None = None,
             progress: bool = True, layout: Layout = "official") -> Path:
    """Write the synthetic dataset to `<data_dir>/data_reid/` in `layout` (official, folders or
    market1501: reid/synthetic/layouts.py) and return that folder.

    Built in a hidden folder beside the target and renamed at the end, so an interrupted run
    leaves no half dataset. An existing target is never overwritten.
    """
    target = Path(data_dir) / "data_reid"
    if target.exists():
        raise ReidError(f"{target} already exists: move it away to generate synthetic data there")
    p = plan(size, seed)
    partial = staging_folder(target)
    try:
        folders = {str(Path(path).parent) for seq in p.sequences for person in seq.people for _, path in person.files}
        for folder in folders:
            (partial / folder).mkdir(parents=True, exist_ok=True)
        _render_all(p, partial, workers or usable_cores(), progress)
        with open(partial / GROUND_TRUTH, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["img_id", "player", "sequence", "frame", "img_type"])
            writer.writerows(ground_truth_rows(p))
        contact_sheet(partial, p).quantize(256).save(partial / CONTACT_SHEET, optimize=True)
        relayout(partial, layout)
        marker = {"synthetic": True, "generator": "reid/synthetic.py", "size": size, "seed": seed,
                  **({"layout": layout} if layout != "official" else {}), "counts": p.counts()}
        write_json(marker, partial / MARKER)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target
