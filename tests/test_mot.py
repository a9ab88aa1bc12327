"""reid/mot.py: MOT txt rows and seqinfo.ini read back as written; every fault one line naming
the file and its row."""

from __future__ import annotations

import re

import numpy as np
import pytest

from reid.errors import ReidError
from reid.mot import check_frames, mot_text, read_mot, read_seqinfo, write_mot

SEQINFO = ("[Sequence]\nname=game\nimDir=img1\nframeRate=25\nseqLength=150\n"
           "imWidth=1920\nimHeight=1080\nimExt=.jpg\n")


def mot(tmp_path, text: str, name: str = "tracks.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(path, kind="tracks") -> str:
    with pytest.raises(ReidError) as err:
        read_mot(path, kind)
    return str(err.value)


def test_write_then_read_gives_the_same_frames_ids_and_boxes(tmp_path):
    frame = np.array([3, 1, 1, 2])
    ids = np.array([7, 2, 1, 2])
    box = np.array([[1.5, 2.25, 10, 20], [0, 0, 5.5, 6], [100.12, 50, 30, 60], [-3, 4, 8, 9]])
    conf = np.array([0.9, 0.5, 1.0, 0.25])
    path = write_mot(tmp_path / "out" / "tracks.txt", frame, ids, box, conf)
    rows = read_mot(path)
    order = np.lexsort((ids, frame))
    assert rows.path == path and len(rows) == 4
    assert rows.frame.tolist() == frame[order].tolist() and rows.id.tolist() == ids[order].tolist()
    np.testing.assert_allclose(rows.box, box[order], atol=0.005)
    np.testing.assert_allclose(rows.conf, conf[order], atol=5e-5)
    assert rows.frame.dtype == np.int64 and rows.id.dtype == np.int64


def test_mot_text_keeps_each_tail_and_sorts_by_frame_then_id(tmp_path):
    path = mot(tmp_path, "2,5,1,2,3,4,0.5,-1,-1,-1\n1,9, 10.000,20,30,40\n\n1,3,7,8,9,10,1,x,y,z\n")
    rows = read_mot(path)
    assert rows.tail == [",1,2,3,4,0.5,-1,-1,-1", ", 10.000,20,30,40", ",7,8,9,10,1,x,y,z"]
    text = mot_text(rows.frame, np.array([1, 2, 1]), rows.tail)
    assert text == "1,1,7,8,9,10,1,x,y,z\n1,2, 10.000,20,30,40\n2,1,1,2,3,4,0.5,-1,-1,-1\n"
    assert mot_text(rows.frame, rows.id, rows.tail).splitlines()[0] == "1,3,7,8,9,10,1,x,y,z"


def test_twelve_point_zero_is_a_whole_frame(tmp_path):
    rows = read_mot(mot(tmp_path, "12.0,3,1,2,3,4\n"))
    assert rows.frame.tolist() == [12] and rows.id.tolist() == [3] and rows.conf.tolist() == [1.0]


@pytest.mark.parametrize("text, row, words", [
    ("1,1,2,3,4,5\n1,2,3,4,5\n", 2, "5 comma-separated columns, expected at least 6 (frame,id,x,y,w,h[,conf,...])"),
    ("1,1,2,3,4,5\n\n1.5,2,3,4,5,6\n", 3, "frame '1.5' is not a whole number of at least 1"),
    ("x,2,3,4,5,6\n", 1, "frame 'x' is not a number"),
    ("1,1,2,3,4,5\n0,2,3,4,5,6\n", 2, "frame '0' is not a whole number of at least 1"),
    ("1,2.5,3,4,5,6\n", 1, "id '2.5' is not a whole number of at least 0"),
    ("1,a,3,4,5,6\n", 1, "id 'a' is not a number"),
    ("1,1,3,4,5,6\n2,-1,3,4,5,6\n", 2, "id '-1' is not a whole number of at least 0"),
    ("1,1,3,4,0,6\n", 1, "box 0 x 6: width and height must be positive"),
    ("1,1,3,4,5,6\n1,2,3,4,5,-2\n", 2, "box 5 x -2: width and height must be positive"),
    ("1,1,nan,4,5,6\n", 1, "x 'nan' is not a finite number"),
    ("1,1,3,inf,5,6\n", 1, "y 'inf' is not a finite number"),
    ("1,1,3,4,5,-inf\n", 1, "h '-inf' is not a finite number"),
    ("1,1,3,4,5,6,nan\n", 1, "conf 'nan' is not a finite number"),
    ("1,1,3,4,5,6\n2,1,3,4,5,6\n2,1,7,8,9,10\n", 3, "id 1 is already in frame 2 (row 2): one box per id and frame"),
])
def test_a_bad_row_names_the_file_and_its_row(tmp_path, text, row, words):
    path = mot(tmp_path, text)
    assert refused(path) == f"{path} row {row}: {words}"


def test_a_detections_file_takes_id_minus_one_and_repeats_but_not_minus_two(tmp_path):
    path = mot(tmp_path, "1,-1,3,4,5,6\n1,-1,3,4,5,6\n", "det.txt")
    assert read_mot(path, "detections").id.tolist() == [-1, -1]
    assert refused(path, "tracks") == f"{path} row 1: id '-1' is not a whole number of at least 0"
    bad = mot(tmp_path, "1,-1,3,4,5,6\n1,-2,3,4,5,6\n", "det2.txt")
    assert refused(bad, "detections") == f"{bad} row 2: id '-2' is not a whole number of at least -1"


@pytest.mark.parametrize("text", ["", "\n\n  \n\t\n"])
def test_a_file_with_no_row_is_refused(tmp_path, text):
    path = mot(tmp_path, text)
    assert refused(path) == f"{path}: no tracks in it (an empty file)"
    assert refused(path, "detections") == f"{path}: no detections in it (an empty file)"


def test_a_missing_file_is_one_line(tmp_path):
    assert refused(tmp_path / "nothing.txt") == f"{tmp_path / 'nothing.txt'}: no such file"


def test_check_frames_refuses_rows_past_the_end(tmp_path):
    rows = read_mot(mot(tmp_path, "1,1,3,4,5,6\n150,1,3,4,5,6\n151,1,3,4,5,6\n160,2,3,4,5,6\n"))
    check_frames(rows, 160, "the video")
    with pytest.raises(ReidError) as err:
        check_frames(rows, 150, "seq/seqinfo.ini")
    assert str(err.value) == (f"{rows.path}: 2 rows are past the end of seq/seqinfo.ini (150 frames), "
                              "the first frame 151")


def test_read_seqinfo_of_a_good_folder(tmp_path):
    (tmp_path / "seqinfo.ini").write_text(SEQINFO)
    info = read_seqinfo(tmp_path)
    assert (info.name, info.frames, info.width, info.height, info.fps) == ("game", 150, 1920, 1080, 25.0)
    assert info.frame_path(tmp_path, 7) == tmp_path / "img1" / "000007.jpg"


@pytest.mark.parametrize("edit, words", [
    (lambda s: s.replace("seqLength=150\n", ""), "no seqLength in [Sequence]"),
    (lambda s: s.replace("seqLength=150", "seqLength=many"), "seqLength=many is not a int"),
    (lambda s: s.replace("seqLength=150", "seqLength=0"), "seqLength=0 must be positive"),
    (lambda s: s.replace("imWidth=1920", "imWidth=-5"), "imWidth=-5 must be positive"),
    (lambda s: s.replace("frameRate=25", "frameRate=fast"), "frameRate=fast is not a float"),
    (lambda s: s.replace("[Sequence]", "[Other]"), "no [Sequence] section"),
])
def test_a_bad_seqinfo_names_the_file_and_key(tmp_path, edit, words):
    (tmp_path / "seqinfo.ini").write_text(edit(SEQINFO))
    with pytest.raises(ReidError) as err:
        read_seqinfo(tmp_path)
    assert str(err.value) == f"{tmp_path / 'seqinfo.ini'}: {words}"


def test_a_folder_without_seqinfo_or_no_folder_at_all(tmp_path):
    with pytest.raises(ReidError, match=re.escape(f"{tmp_path / 'seqinfo.ini'}: no such file")):
        read_seqinfo(tmp_path)
    with pytest.raises(ReidError) as err:
        read_seqinfo(tmp_path / "absent")
    assert str(err.value) == f"--sequence={tmp_path / 'absent'}: not a folder"
    (tmp_path / "seqinfo.ini").write_text("not = an ini\n")
    with pytest.raises(ReidError, match=re.escape(f"{tmp_path / 'seqinfo.ini'}: not an ini file")):
        read_seqinfo(tmp_path)
