"""reid.visualize: pictures drawn on figures of their own, leaving matplotlib's global state alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from reid.visualize import identity_sheet, ranked_sheet, training_curves

REPO = Path(__file__).resolve().parents[1]


def test_importing_the_engine_switches_no_backend():
    """A notebook's backend survives importing the engine, and pyplot is never loaded."""
    code = ("import sys, matplotlib; matplotlib.use('svg'); import reid.visualize, reid.engine; "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend(); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_each_picture_is_a_png_and_leaves_no_temporary(tmp_path):
    rng = np.random.default_rng(0)
    crops = []
    for i in range(6):
        crops.append(tmp_path / "crops" / f"{i}.png")
        crops[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)).save(crops[-1])
    out = tmp_path / "out"
    history = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0], "lr": [1e-3, 1e-4], "mAP": [0.1, 0.2]})
    written = [ranked_sheet(out / "ranked.png", rng.random((3, 5)), crops[:3], crops[1:], np.arange(3), np.arange(5)),
               identity_sheet(out / "identities.png", crops, np.array([0, 0, 1, 1, 1, 2])),
               training_curves(history, out / "curves.png", title="run")]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    for path in written:
        with Image.open(path) as picture:
            assert picture.format == "PNG" and min(picture.size) > 100, path
