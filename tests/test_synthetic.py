"""The synthetic dataset: official layout and names, counts, ground truth, determinism, atomic writes."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from reid import synthetic
from reid.errors import ReidError
from reid.synthetic import dataset

LABELLED = re.compile(r"^(\d{3})_(\d{2})_(\d{2})\.jpeg$")
ANONYMOUS = re.compile(r"^(\d+)\.jpeg$")


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def checksum(root: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted path order."""
    digest = hashlib.sha256()
    for name in sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()):
        digest.update(name.encode() + b"\0")
        digest.update((root / name).read_bytes())
    return digest.hexdigest()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return synthetic.generate(tmp_path_factory.mktemp("tiny"), "tiny", seed=0, workers=2, progress=False)


def test_full_plan_matches_the_2023_counts():
    counts = synthetic.plan("full", seed=0).counts()
    assert counts["train"]["players"] == 436
    assert counts["train"]["queries"] + counts["train"]["gallery"] == 8569
    assert counts["test"] == {"players": 50, "queries": 50, "gallery": 910}
    assert counts["challenge"] == {"players": 618, "queries": 618, "gallery": 9505}


def test_small_is_about_a_tenth_with_several_test_sequences():
    full, small = synthetic.plan("full", seed=0), synthetic.plan("small", seed=0)
    assert 0.07 < small.n_images / full.n_images < 0.15
    assert sum(s.split == "test" for s in small.sequences) >= 2


@pytest.mark.parametrize("seed", [0, 1])
def test_sequences_have_8_to_12_people_and_frame_00_always(seed):
    p = synthetic.plan("full", seed=seed)
    for seq in p.sequences:
        assert 8 <= len(seq.people) <= 12
        for person in seq.people:
            frames = [f for f, _ in person.files]
            assert frames[0] == 0 and frames == sorted(set(frames)) and frames[-1] < synthetic.FRAMES
    players = [person.player for seq in p.sequences for person in seq.people]
    assert len(players) == len(set(players))


def test_unknown_size_is_refused(tmp_path):
    with pytest.raises(ReidError, match="size='huge': expected one of tiny, small, full"):
        synthetic.generate(tmp_path, "huge")
    assert not list(tmp_path.iterdir())


def test_layout_and_names(tiny):
    train = names(tiny / "reid_training")
    assert train and all(LABELLED.match(n) for n in train)
    query, gallery = names(tiny / "reid_test/query"), names(tiny / "reid_test/gallery")
    assert all(LABELLED.match(n) for n in query + gallery)
    assert {LABELLED.match(n).group(3) for n in query} == {"00"}
    assert {int(LABELLED.match(n).group(3)) for n in gallery} <= set(range(1, 20))
    # The gallery holds every player of every test sequence; each query player is in it.
    assert {n[:6] for n in query} == {n[:6] for n in gallery}
    plan = synthetic.plan("tiny", seed=0)
    assert len(train) + len(query) + len(gallery) == sum(
        s.n_images for s in plan.sequences if s.split != "challenge")
    train_players = {n[:3] for n in train}
    assert train_players.isdisjoint(n[:3] for n in query)


def test_images_look_like_detections(tiny):
    for path in sorted((tiny / "reid_training").iterdir())[::7]:
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert 60 <= img.height <= 400
            assert 0.29 <= img.width / img.height <= 0.61


def test_challenge_ids_are_anonymous_and_the_ground_truth_covers_them(tiny):
    files = {f"reid_challenge/{kind}/{n}": kind for kind in ("query", "gallery")
             for n in names(tiny / "reid_challenge" / kind)}
    assert all(ANONYMOUS.match(Path(f).name) for f in files)
    ids = [int(Path(f).stem) for f in files]
    assert len(ids) == len(set(ids)), "ids must be unique across query and gallery"
    with open(tiny / synthetic.GROUND_TRUTH, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["img_id"] for r in rows} == set(files) and len(rows) == len(files)
    for r in rows:
        assert r["img_type"] == ("q" if files[r["img_id"]] == "query" else "g")
        assert (r["frame"] == "0") == (r["img_type"] == "q")
    queries = {r["player"] for r in rows if r["img_type"] == "q"}
    assert queries == {r["player"] for r in rows if r["img_type"] == "g"}


def test_marked_synthetic_with_a_contact_sheet(tiny):
    marker = json.loads((tiny / synthetic.MARKER).read_text())
    assert marker["synthetic"] is True and marker["size"] == "tiny" and marker["seed"] == 0
    assert marker["counts"] == synthetic.plan("tiny", seed=0).counts()
    with Image.open(tiny / synthetic.CONTACT_SHEET) as sheet:
        assert sheet.format == "PNG" and sheet.width > 400
    assert not list(tiny.parent.glob(".data_reid*"))


def test_same_seed_same_bytes_whatever_the_workers(tiny, tmp_path):
    again = synthetic.generate(tmp_path / "again", "tiny", seed=0, workers=1, progress=False)
    assert tree(again) == tree(tiny)


def test_tiny_seed_0_bytes_are_pinned(tiny):
    """Refactoring the generator must not change a byte it writes. Every file is hashed: the marker
    holds no timestamp or absolute path. The pin assumes the pinned libraries' rendering (Pillow's
    JPEG and PNG encoders, FreeType, matplotlib's DejaVu fonts, numpy's generators): after upgrading
    one of them, re-pin only if the same upgrade changes the bytes of the unmodified generator too."""
    assert checksum(tiny) == "a59f9530023d2766a6cf6756de87f27f5487eedb5bffc27892a2d351761c32fe"


def test_another_seed_gives_other_images(tiny, tmp_path):
    other = tree(synthetic.generate(tmp_path, "tiny", seed=1, workers=1, progress=False))
    first = tree(tiny)
    shared = set(first) & set(other)
    assert sum(first[k] == other[k] for k in shared if k.endswith(".jpeg")) == 0


def test_existing_dataset_is_never_overwritten(tiny):
    before = (tiny / synthetic.MARKER).read_bytes()
    with pytest.raises(ReidError, match="already exists"):
        synthetic.generate(tiny.parent, "tiny", progress=False)
    assert (tiny / synthetic.MARKER).read_bytes() == before


def test_a_crash_leaves_no_half_dataset(tmp_path, monkeypatch):
    calls = []

    def failing(job):
        calls.append(job)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(job)

    original = dataset.render_sequence
    monkeypatch.setattr(dataset, "render_sequence", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        synthetic.generate(tmp_path, "tiny", workers=1, progress=False)
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []
