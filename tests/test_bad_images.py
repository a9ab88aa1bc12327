"""Images that decode wrongly or hide: a corrupt PNG stream, a JPEG cut short, 16-bit pixels,
linked and broken-linked files, junk-only splits; refused in one line before anything is written."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import SMOKE_TRAIN, call, dataset_files, run_script, write_checkpoint, write_tree
from reid.data import assign_folds
from reid.errors import ReidError
from reid.images import as_rgb, find_images, image_problem, read_image, unreadable
from reid.layouts import list_images
from reid.synthetic.crops import sample_crops


def image_bytes(image: np.ndarray, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **options)
    return buf.getvalue()


def crop(seed: int, height: int = 96, width: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def corrupt_png(seed: int) -> bytes:
    """A PNG whose compressed pixel stream has 40 bytes zeroed: its header reads fine."""
    data = image_bytes(crop(seed), "PNG")
    at = data.index(b"IDAT") + 40
    return data[:at] + bytes(40) + data[at + 40:]


def jpeg_cut_in_half(seed: int) -> bytes:
    """A JPEG cut in the middle of its scan, its end marker put back: libjpeg only warns."""
    data = image_bytes(crop(seed), "JPEG")
    return data[:len(data) // 2] + b"\xff\xd9"


def checksum(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_images_are_decoded_in_full_and_read_as_checked(tmp_path):
    files = {"good.jpeg": image_bytes(crop(0), "JPEG"), "good.png": image_bytes(crop(1), "PNG"),
             "progressive.jpeg": image_bytes(crop(2), "JPEG", progressive=True),
             "restarts.jpeg": image_bytes(crop(3), "JPEG", restart_marker_blocks=2),
             "stream.png": corrupt_png(4), "half.jpeg": jpeg_cut_in_half(5)}
    write_tree(tmp_path, files)
    assert Image.open(tmp_path / "half.jpeg").load() is not None, "PIL alone takes the cut JPEG"
    problems = dict(unreadable(sorted(tmp_path.iterdir())))
    assert {p.name for p in problems} == {"stream.png", "half.jpeg"}
    assert "broken data stream" in problems[tmp_path / "stream.png"]
    assert "cut short" in problems[tmp_path / "half.jpeg"]
    for name, data in files.items():
        if tmp_path / name in problems:
            with pytest.raises(ReidError, match=f"cannot read image .*{name}"):
                read_image(tmp_path / name)
        else:
            assert image_problem(tmp_path / name) is None
            assert np.array_equal(read_image(tmp_path / name), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_jpegs_of_every_shape_read_whole_and_any_cut_is_caught(tmp_path):
    path = tmp_path / "x.jpg"
    for seed, (height, width) in enumerate([(1, 1), (7, 3), (64, 33), (128, 64), (301, 97)]):
        for options in ({"quality": 95}, {"quality": 20, "subsampling": 0}, {"optimize": True}):
            data = image_bytes(crop(seed, height, width), "JPEG", **options)
            path.write_bytes(data)
            assert image_problem(path) is None, (height, width, options)
            if height * width >= 64 * 33:
                scan = data.index(b"\xff\xda")
                for kept in (0.2, 0.5, 0.8):
                    path.write_bytes(data[:scan + int(kept * (len(data) - scan))] + b"\xff\xd9")
                    assert image_problem(path), (height, width, options, kept)


def test_16_bit_twins_read_as_their_8_bit_originals(tmp_path):
    gray = crop(6)[..., 0]
    Image.fromarray(gray).save(tmp_path / "8.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "16.png")
    original = read_image(tmp_path / "8.png")
    assert Image.open(tmp_path / "16.png").mode.startswith("I;16")
    assert np.array_equal(read_image(tmp_path / "16.png"), original)
    wide = Image.open(tmp_path / "16.png")
    for image in (wide, wide.convert("I"), wide.convert("F"), Image.fromarray(gray.astype(np.float32) / 255),
                  Image.fromarray(gray.astype(np.float32))):
        assert np.abs(as_rgb(image, 0).astype(int) - original).max() <= 1, image.mode
    colour = crop(7)
    for mode in ("P", "LA", "RGBA", "CMYK", "1"):
        assert as_rgb(Image.fromarray(colour).convert(mode), 0).shape == colour.shape


def test_linked_folders_are_followed_once_and_broken_links_named(tmp_path):
    elsewhere = write_tree(tmp_path / "elsewhere", {f"far{i}.jpg": image_bytes(crop(i), "JPEG") for i in range(3)})
    crops = write_tree(tmp_path / "crops", {"near.png": image_bytes(crop(9), "PNG"), ".hidden/x.jpg": b"",
                                            "notes.txt": b"no image"})
    (crops / "linked").symlink_to(elsewhere)
    (crops / "again").symlink_to(elsewhere)  # one real folder, read once
    (crops / "linked" / "up").symlink_to(crops)  # a loop
    (crops / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    found = find_images(crops)
    assert found == sorted([Path("again/far0.jpg"), Path("again/far1.jpg"), Path("again/far2.jpg"),
                            Path("gone.jpg"), Path("near.png")], key=str)
    problems = unreadable(crops / p for p in found)
    assert [(p.name, why) for p, why in problems] == [("gone.jpg", f"broken link to {tmp_path / 'deleted.jpg'}")]
    assert list_images(crops) == ["gone.jpg", "near.png", "notes.txt"], "the official layout's listing keeps it too"


def test_scanning_shows_its_count_when_asked_and_a_folder_it_cannot_list_is_named(tmp_path, capsys, monkeypatch):
    crops = write_tree(tmp_path / "crops", {f"p{i}/a.jpg": image_bytes(crop(i), "JPEG") for i in range(3)})
    find_images(crops)
    assert capsys.readouterr().err == "", "a quick scan is quiet"
    find_images(crops, progress=True)
    shown = capsys.readouterr().err
    assert f"scanning {crops}" in shown and "4 folders" in shown and "3 images" in shown
    listing = os.scandir

    def refuse(path):
        if Path(path).name == "p1":
            raise PermissionError(13, "Permission denied")
        return listing(path)
    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(ReidError, match=f"{crops / 'p1'}: cannot list this folder \\(Permission denied\\)"):
        find_images(crops)


@pytest.mark.parametrize("layout, damage", [("official", jpeg_cut_in_half), ("folders", corrupt_png),
                                           ("folders", lambda seed: b"")])
def test_preprocess_refuses_a_bad_decode_in_one_line_and_writes_nothing(tmp_path, layout, damage):
    root = tmp_path / "data_reid"
    if layout == "official":
        files = dataset_files(challenge=False)
        bad = "reid_test/gallery/012_00_03.jpeg"
    else:
        files = {f"{split}/p{i}/{j}.png": image_bytes(crop(10 * i + j), "PNG")
                 for split, players in (("train", range(4)), ("test", range(4, 6))) for i in players for j in range(3)}
        bad = "train/p2/1.png"
    files[bad] = damage(1)
    write_tree(root, files)
    before = checksum(root)
    result = run_script("preprocess_data.py", f"--data_dir={tmp_path}", "--n_folds=2")
    assert result.returncode == 1 and result.stderr.startswith("error: 1 unreadable images") and bad in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert checksum(root) == before, "no players.csv nor any partition is written"


def test_linked_player_folders_and_broken_links_reach_preprocess(tmp_path):
    root = tmp_path / "data_reid"
    write_tree(root, {f"{split}/p{i}/{j}.png": image_bytes(crop(10 * i + j), "PNG")
                      for split, players in (("train", range(3)), ("test", range(3, 5))) for i in players
                      for j in range(3)})
    write_tree(tmp_path / "kept", {f"{j}.png": image_bytes(crop(90 + j), "PNG") for j in range(3)})
    (root / "train" / "linked").symlink_to(tmp_path / "kept")
    result = call("preprocess_data.py", f"--data_dir={tmp_path}", "--n_folds=2")
    assert result.returncode == 0, result.stderr
    assert "linked" in set(pd.read_csv(root / "players.csv")["name"])
    (root / "train" / "p0" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    result = call("preprocess_data.py", f"--data_dir={tmp_path}", "--n_folds=2")
    assert result.returncode == 1 and "gone.png (broken link to" in result.stderr


def write_market(root: Path, names: dict[str, list[str]]) -> None:
    crops = iter(sample_crops(sum(len(v) for v in names.values()), seed=5))
    for folder, files in names.items():
        (root / folder).mkdir(parents=True)
        for name in files:
            Image.fromarray(next(crops)).save(root / folder / name)
        (root / folder / "Thumbs.db").write_bytes(b"as in the published archive")


def test_market_reads_png_and_refuses_a_split_of_junk(tmp_path):
    root = tmp_path / "data" / "data_reid"
    train = [f"{pid:04d}_c{cam}s1_{100 * pid + cam:06d}_00.jpg" for pid in range(1, 5) for cam in (1, 2)]
    query = [f"{pid:04d}_c1s1_{900 + pid:06d}_00.jpg" for pid in range(5, 8)]
    gallery = [f"{pid:04d}_c2s1_{500 * pid:06d}_01.{'png' if pid == 7 else 'jpg'}" for pid in range(5, 8)]
    write_market(root, {"bounding_box_train": train, "query": query, "bounding_box_test": gallery})
    result = call("preprocess_data.py", f"--data_dir={tmp_path / 'data'}", "--n_folds=2")
    assert result.returncode == 0, result.stderr
    df = pd.read_csv(root / "train_df.csv")
    assert "0007_c2s1_003500_01.png" in set(df["img_id"]) and (df["split"] == "test").sum() == 6

    junk = tmp_path / "junk" / "data_reid"
    write_market(junk, {"bounding_box_train": [f"-1_c1s1_{i:06d}_00.jpg" for i in range(4)] + ["0000_c1s1_9_00.jpg"],
                        "query": query, "bounding_box_test": gallery})
    result = call("preprocess_data.py", f"--data_dir={tmp_path / 'junk'}", "--n_folds=2")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"{junk / 'bounding_box_train'}: all 5 images are junk (pid -1) or distractors (pid 0)" in result.stderr
    assert not list(junk.glob("*.csv"))


def test_folds_say_why_there_are_too_few_games():
    one_game = pd.DataFrame({"split": ["train"] * 3, "game": [4] * 3})
    with pytest.raises(ReidError, match="all 3 images are of one game \\(train/4\\)"):
        assign_folds(one_game, 2)
    with pytest.raises(ReidError, match="no image"):
        assign_folds(one_game.iloc[:0], 2)


def test_identify_refuses_or_skips_what_cannot_be_decoded(tmp_path):
    write_checkpoint(tmp_path / "ck" / "a" / "best.pt", "test_vit", 32, seed=1)
    crops = tmp_path / "crops"
    write_tree(crops, {f"{i}.png": image_bytes(c, "PNG") for i, c in enumerate(sample_crops(6, seed=2))})
    write_tree(crops, {"stream.png": corrupt_png(3), "half.jpg": jpeg_cut_in_half(4)})
    args = ["identify.py", f"--checkpoints={tmp_path / 'ck' / 'a'}", f"--images={crops}", "--num_workers=1",
            "--device=cpu", "--scales=1", f"--out_dir={tmp_path / 'out'}"]
    refused = call(*args)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and not (tmp_path / "out").exists()
    assert "2 unreadable images" in refused.stderr and "half.jpg" in refused.stderr and "stream.png" in refused.stderr
    skipped = call(*args, "--skip_bad=true")
    assert skipped.returncode == 0, skipped.stderr
    assert sorted(pd.read_csv(tmp_path / "out" / "identities.csv")["image"]) == [f"{i}.png" for i in range(6)]


@pytest.mark.parametrize("damage, words", [
    (lambda data: b"", "empty file"),
    (lambda data: data[:-10], "truncated JPEG"),
    (lambda data: b"GIF89a not really", "cannot identify image file"),
])
def test_preprocess_lists_unreadable_images_and_writes_nothing(tmp_path, damage, words):
    files = dataset_files()
    bad = "reid_test/gallery/012_00_03.jpeg"
    files[bad] = damage(files[bad])
    write_tree(tmp_path / "data_reid", files)
    result = call("preprocess_data.py", f"--data_dir={tmp_path}")
    assert result.returncode == 1 and "1 unreadable images" in result.stderr and bad in result.stderr
    assert words in result.stderr and not list((tmp_path / "data_reid").glob("*.csv"))


def test_training_lists_an_unreadable_validation_image_before_the_first_epoch(official):
    image = sorted((official / "data_reid" / "reid_test" / "gallery").iterdir())[0]
    image.write_bytes(image.read_bytes()[:-10])
    result = call("train_our_post_resnet.py", f"--data_dir={official}", f"--checkpoint_dir={official / 'ck'}",
                  *SMOKE_TRAIN)
    assert result.returncode == 1 and "1 unreadable images" in result.stderr and image.name in result.stderr
    assert "steps per epoch on" not in result.stdout, "refused before the training loop was set up"
    assert not (official / "ck").exists()

