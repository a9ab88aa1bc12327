"""bench/embed_speed.py runs end to end at tiny sizes and prints both ratios."""

from __future__ import annotations

import re

from bench.embed_speed import Config, main


def test_tiny_run_prints_both_ratios(capsys):
    main(Config(n_images=16, img_size=32, batch_size=8, workers=2, rounds=1))
    out = capsys.readouterr().out
    assert re.search(r"^Embedder\.embed / bare loop: \d+\.\d+x \(goal >= 0\.8x\)", out, re.M), out
    assert re.search(r"^OnnxEmbedder / Embedder \(CPU\): \d+\.\d+x$", out, re.M), out
    for method in ("bare loop", "Embedder.embed", "OnnxEmbedder.embed"):
        assert re.search(rf"^{re.escape(method)} +\d+\.\d+ +\d+\.\d+  \d+\.\d+$", out, re.M), out
