"""The one working-memory budget of the memory-bounded steps, and the block sizes derived from it.

Every step that would otherwise hold an N x N (or queries x gallery) array works a block of
rows, or a chunk of entries, at a time. How large is one setting, `BUDGET`: the bytes one
such step may hold at once, on the host or on the device it runs on (its inputs and the
output it fills are not counted). Each step states what one entry of its block costs, in
bytes, next to its code (`*_BYTES`), and gets as many entries as fit; scaling `BUDGET` scales
every block alike. Where a charge is well above what an entry really costs, it is a share of
the budget, and its comment says why (a small peak beside inputs the caller already holds, or
figures that depend on the block size).

Block sizes of distances computed by matrix products also fix how those products round, so
changing `BUDGET` may move a distance by a float32 rounding step, and with it a neighbour that
rounding decides; the figures this project reports were made with the value below.
"""

from __future__ import annotations

from reid.rules import Count, PositiveInt, checked

BUDGET = 1 << 30  # bytes a bounded step may hold at once (1 GiB)


@checked
def entries(bytes_per_entry: PositiveInt) -> int:
    """How many entries costing `bytes_per_entry` each fit in the budget (at least one).

    Reads `BUDGET` at each call, so that a test can shrink every block at once.
    """
    return max(1, BUDGET // bytes_per_entry)


@checked
def rows(n_cols: Count, bytes_per_entry: PositiveInt) -> int:
    """How many rows of an (?, n_cols) block fit in the budget (at least one)."""
    return max(1, entries(bytes_per_entry) // max(n_cols, 1))
