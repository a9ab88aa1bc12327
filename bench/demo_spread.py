"""README's demo table: the demo run with three pairs of training seeds, each figure's spread.

    python -m bench.demo_spread          # about three times `make demo`; reuses finished runs

The first pair of seeds is the demo's own (1, 2), in its own folders, so a finished `make demo`
counts as the first run. Writes docs/demo_results.json (per row and column: mean, min, max over
the runs, and the settings they share), which `make demo` compares its own figures with, and
prints the table in README's form: mean ± half the spread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

import demo
from reid.config import format_config, run
from reid.files import write_json
from reid.rules import Checked, Count, PositiveInt


@dataclass
class Config(Checked):
    runs: PositiveInt = 3  # demos, with seeds (1, 2), (3, 4), (5, 6), ...
    num_workers: Count = 2  # data loader processes
    reference: Path = demo.REFERENCE  # where the figures go (README's table)


def seeds_of(i: int, models: int) -> tuple[int, ...]:
    """The i-th demo's seeds: one per model, never shared with another demo."""
    return tuple(range(i * models + 1, (i + 1) * models + 1))


def markdown(spread: dict[str, dict[str, dict[str, float]]]) -> str:
    """README's table: untrained rows as single values, the others as mean ± half the spread."""
    columns = list(next(iter(spread.values())))
    lines = ["| matrix | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row, cells in spread.items():
        values = [f"{c['mean']:.2f}" if c["min"] == c["max"] else f"{c['mean']:.2f} ± {(c['max'] - c['min']) / 2:.2f}"
                  for c in cells.values()]
        lines.append(f"| {row} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(cfg: Config) -> None:
    print(format_config(cfg))
    started = time.time()
    base = demo.Config(num_workers=cfg.num_workers)
    tables, seeds = [], []
    for i in range(cfg.runs):
        pair = seeds_of(i, len(base.img_sizes))
        suffix = "" if pair == base.seeds else "_seeds_" + "_".join(map(str, pair))
        one = replace(base, seeds=pair, checkpoint_dir=Path(f"{base.checkpoint_dir}{suffix}"),
                      out_dir=Path(f"{base.out_dir}{suffix}"))
        demo.main(one)
        tables.append(pd.read_csv(one.out_dir / "results.csv", index_col=0))
        seeds.append(list(pair))
    spread = demo.spread(tables)
    write_json({"recipe": demo.recipe(base), "seeds": seeds, "rows": spread}, cfg.reference)
    print(f"\nREADME's demo table ({len(tables)} demos, seeds {seeds}), in percent:\n")
    print(markdown(spread))
    print(f"\nwrote {cfg.reference}; {(time.time() - started) / 60:.0f} min")


if __name__ == "__main__":
    run(main, Config)
