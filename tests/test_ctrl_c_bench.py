"""bench/ctrl_c.py presses Ctrl-C in both ways and prints its table; make_loader as it is now ends cleanly."""

from __future__ import annotations

import re

import pytest

from bench.ctrl_c import Config, main


@pytest.mark.slow
def test_one_press_each_way_prints_the_table(capsys):
    main(Config(runs=1, load=0))
    out = capsys.readouterr().out
    assert "1 presses each way, 0 busy processes beside" in out, out
    assert re.search(r"^now +1 +0 +0$", out, re.M), out
    counts = re.search(r"^before \(b5a5371\) +(\d+) +(\d+) +(\d+)$", out, re.M)
    assert counts and sum(map(int, counts.groups())) == 1, out
