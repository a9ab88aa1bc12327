"""Stage 1: fetch the DeepSportradar re-identification data (md5-checked), or make synthetic data.

    python download.py                        # the official 2023 archive
    python download.py --zip=~/synergyreid_data.zip
    python download.py --synthetic=true       # the procedural stand-in, no network needed
    python download.py --synthetic=true --synthetic_kind=clips --data_dir=data/clips   # MOT game clips
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from reid import synthetic
from reid.config import format_config, run
from reid.errors import ReidError
from reid.fetch import copy_member, download, find_member, local_source, md5sum, safe_extract
from reid.files import read_json, require_writable, write_json
from reid.layouts import Layout
from reid.outputs import held, staging_folder
from reid.rules import Checked, Count, NonNegative, Positive, Probability
from reid.synthetic.clips import CLIPS, Detector, generate_clip_crops, generate_clips

MARKER = ".download.json"


@dataclass
class Config(Checked):
    url: str = (  # the challenge repository (branch master) as a zip; also a local path or file:// URL
        "https://github.com/DeepSportradar/player-reidentification-challenge/archive/refs/heads/master.zip")
    inner_zip: str = "baseline/data/synergyreid/raw/synergyreid_data.zip"  # the dataset inside it, under its top folder
    md5: str = "2a1cdbd10d2b8f0da6575e3581343e31"  # of the dataset zip, 2023 (2022: see README); empty: no check
    zip: str = ""  # a synergyreid_data.zip you already have: no download
    data_dir: Path = Path("data")  # the dataset lands in <data_dir>/data_reid/
    synthetic: bool = False  # make the procedural synthetic dataset instead of downloading
    synthetic_size: synthetic.Size = "small"  # tiny (tests), small (about a tenth of the 2023 counts) or full
    # crops: the re-id dataset in <data_dir>/data_reid/; clips: MOT game clips in <data_dir>/clips/ (tiny 1 x 150
    # frames, small 2 x 600, full 1 x 2000); clip_crops: crops of other clips, folders layout, to train a linker
    synthetic_kind: Literal["crops", "clips", "clip_crops"] = "crops"
    det_miss: Probability = 0.04  # clips' det.txt: chance a fully visible person is missed in a frame
    det_occluded: Probability = 0.5  # ... visibility under which misses rise linearly to certain at 0
    det_jitter: NonNegative = 0.04  # ... standard deviation of each box edge, in box heights
    det_false_positives: NonNegative = 0.05  # ... mean spurious boxes a frame
    seed: Count = 0  # seed of the synthetic dataset
    layout: Layout = "official"  # layout of the synthetic data on disk
    retries: Count = 5  # retries after a dropped connection, a timeout or a 5xx answer
    timeout: Positive = 30.0  # seconds without an answer before a retry
    backoff: NonNegative = 2.0  # seconds before the first retry, doubled for each next one
    keep_archive: bool = False  # keep the downloaded repository zip in <data_dir>/downloads/


def marker(path: Path) -> dict:
    """A marker file's record, or {} when there is none or it cannot be read (the dataset was made
    otherwise, so it is not ours to reuse)."""
    try:
        return read_json(path, {})
    except ReidError:
        return {}


def dataset_root(extracted: Path) -> Path:
    """The folder holding reid_training/: the archive's data_reid/ or its top level."""
    for candidate in (extracted / "data_reid", extracted, *sorted(extracted.iterdir())):
        if (candidate / "reid_training").is_dir():
            return candidate
    raise ReidError("the dataset zip has no reid_training folder")


def fetch_dataset_zip(cfg: Config, downloads: Path) -> tuple[Path, str, list[Path]]:
    """(the dataset zip, its md5, the files made here that can go once it is extracted)."""
    if cfg.zip:
        path = Path(cfg.zip).expanduser()
        if not path.is_file():
            raise ReidError(f"--zip={cfg.zip}: no such file")
        print(f"checking md5 of {path}")
        return path, md5sum(path), []
    made: list[Path] = []
    outer = local_source(cfg.url)
    if outer is None:
        name = Path(urlparse(cfg.url).path).name or "archive.zip"
        outer = download(cfg.url, downloads / name, retries=cfg.retries,
                         timeout=cfg.timeout, backoff=cfg.backoff)
        if not cfg.keep_archive:
            made.append(outer)
    elif not outer.is_file():
        raise ReidError(f"--url={cfg.url}: no such file")
    try:
        archive = zipfile.ZipFile(outer)
    except zipfile.BadZipFile as exc:
        advice = "delete it to download again" if outer in made else "is it the repository's zip?"
        raise ReidError(f"{outer}: not a valid zip archive ({exc}); {advice}") from None
    with archive:
        inner = downloads / Path(cfg.inner_zip).name
        downloads.mkdir(parents=True, exist_ok=True)
        print(f"extracting {cfg.inner_zip} from {outer}")
        digest = copy_member(archive, find_member(archive, cfg.inner_zip), inner)
    return inner, digest, made + [inner]


def main(cfg: Config) -> None:
    print(format_config(cfg))
    require_writable(cfg.data_dir, "data_dir")
    target = cfg.data_dir / (CLIPS if cfg.synthetic and cfg.synthetic_kind == "clips" else "data_reid")
    with held(target, "data_dir"):  # two downloads into one folder: the second stops at once
        if cfg.synthetic:
            make_synthetic(cfg, target)
        else:
            fetch_official(cfg, target)


def fetch_official(cfg: Config, target: Path) -> None:
    """The official archive, md5-checked, unpacked beside `target` and renamed into place."""
    if target.exists():
        if cfg.md5 and marker(target / MARKER).get("md5") == cfg.md5:
            print(f"{target} is already downloaded and verified (md5 {cfg.md5}): nothing to do")
            return
        raise ReidError(f"{target} exists but is not the verified dataset (md5 {cfg.md5 or 'any'}): "
                        "move it away to download again")
    downloads = cfg.data_dir / "downloads"
    dataset_zip, digest, made = fetch_dataset_zip(cfg, downloads)
    if cfg.md5 and digest != cfg.md5:
        if dataset_zip in made:
            dataset_zip.unlink()
        raise ReidError(f"md5 mismatch for {cfg.inner_zip}: expected {cfg.md5}, got {digest} "
                        "(another edition? pass --md5=...)")
    print(f"md5 {digest} ok")
    partial = staging_folder(target)
    try:
        safe_extract(dataset_zip, partial)
        root = dataset_root(partial)
        write_json({"md5": digest, "source": cfg.zip or cfg.url}, root / MARKER)
        root.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    for path in made:
        path.unlink(missing_ok=True)
    print(f"dataset ready in {target}")


def make_synthetic(cfg: Config, target: Path) -> None:
    """The procedural stand-in dataset, labelled as synthetic (reid/synthetic.py)."""
    kind = cfg.synthetic_kind
    layout = {"crops": cfg.layout, "clips": "official", "clip_crops": "folders"}[kind]
    detector = Detector(cfg.det_miss, cfg.det_occluded, cfg.det_jitter, cfg.det_false_positives)
    if target.exists():
        made = marker(target / synthetic.MARKER)
        wanted = (kind, cfg.synthetic_size, cfg.seed, layout, asdict(detector) if kind == "clips" else None)
        if (made.get("kind", "crops"), made.get("size"), made.get("seed"), made.get("layout", "official"),
                made.get("detector")) == wanted:
            print(f"{target} already holds synthetic {kind} (size {cfg.synthetic_size}, seed {cfg.seed}): "
                  "nothing to do")
            return
        raise ReidError(f"{target} exists and is not synthetic {kind} of size {cfg.synthetic_size}, seed {cfg.seed}"
                        f"{', layout ' + layout if kind == 'crops' else ''} with these settings: move it away or "
                        "pick another --data_dir")
    if kind == "clips":
        generate_clips(cfg.data_dir, cfg.synthetic_size, cfg.seed, detector)
    elif kind == "clip_crops":
        generate_clip_crops(cfg.data_dir, cfg.synthetic_size, cfg.seed)
    else:
        synthetic.generate(cfg.data_dir, cfg.synthetic_size, cfg.seed, layout=cfg.layout)


if __name__ == "__main__":
    run(main, Config)
