"""bench/ctrl_c.py presses Ctrl-C and prints its table; make_loader as it is now ends cleanly.

The comparison with a committed make_loader needs git history, which a checkout may lack: the
test runs the present way only."""

from __future__ import annotations

import re

import pytest

from bench.ctrl_c import Config, main


@pytest.mark.slow
def test_presses_end_with_one_line_and_the_table_counts_them(capsys):
    main(Config(runs=1, load=0, reference=""))  # one press: a child started, interrupted, counted
    out = capsys.readouterr().out
    assert "1 presses each way, 0 busy processes beside" in out, out
    assert re.search(r"^now +1 +0 +0$", out, re.M), out
    assert "before" not in out, out
