"""k_reciprocal and hard_weight against the public port, and against their own committed version.

    python -m bench.rerank_speed [--repeat=3] [--baseline=HEAD]

At the 2023 challenge size, prints time, traced peak memory (tracemalloc; numpy reports its
buffers to it) and the largest difference from the port, with the ratios the issue sets as
targets. The committed version (git revision `--baseline`, HEAD by default) runs on the same
inputs in the same process, so the ratios to it are measured under the same load; its speed
ratio is reported, its memory ratio has a target. Ends with one error line, exit 1, when a
target is missed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.common import features, load_port, load_revision, measure
from reid.config import run
from reid.distance import sq_euclidean
from reid.errors import ReidError
from reid.rerank import hard_weight, k_reciprocal
from reid.rules import Checked, PositiveInt


@dataclass
class Config(Checked):
    repeat: PositiveInt = 3  # timed runs of each of ours (the best counts); the port runs once
    baseline: str = "HEAD"  # git revision whose reid/rerank.py runs beside the current one


def main(cfg: Config) -> None:
    repeat, baseline = cfg.repeat, cfg.baseline
    qf, gf, _, _ = features()
    mats = (sq_euclidean(qf, gf), sq_euclidean(qf, qf), sq_euclidean(gf, gf))
    print(f"inputs: {len(qf)} queries x {len(gf)} gallery, {qf.shape[1]}-d; squared Euclidean distances")
    port = load_port()
    if port is None:
        raise ReidError("the public port could not be obtained: no ratios to report")
    expected, port_s, port_peak = measure(lambda: port(*mats, k1=20, k2=6, lambda_value=0.3))
    print(f"port re_ranking         {port_s:7.2f} s  peak {port_peak / 2**20:7.0f} MiB")
    now = {name: measure(lambda fn=fn: fn(*mats), repeat) for name, fn in
           (("k_reciprocal", k_reciprocal), ("hard_weight", hard_weight))}
    (kr, kr_s, kr_peak), (_, hw_s, hw_peak) = now["k_reciprocal"], now["hard_weight"]
    diff = float(np.abs(kr - expected).max())
    print(f"k_reciprocal            {kr_s:7.2f} s  peak {kr_peak / 2**20:7.0f} MiB  max |diff| {diff:.2e}")
    print(f"hard_weight             {hw_s:7.2f} s  peak {hw_peak / 2**20:7.0f} MiB")
    rows = [
        ("k_reciprocal speed-up", port_s / kr_s, ">= 30x", port_s / kr_s >= 30),
        ("k_reciprocal memory ratio", kr_peak / port_peak, "<= 0.333", kr_peak / port_peak <= 1 / 3),
        ("k_reciprocal max |diff|", diff, "<= 1e-4", diff <= 1e-4),
        ("hard_weight speed-up", port_s / hw_s, ">= 15x", port_s / hw_s >= 15),
    ]
    before = load_revision("reid/rerank.py", baseline)
    for name, (result, seconds, peak) in now.items() if before is not None else ():
        old, old_s, old_peak = measure(lambda name=name: getattr(before, name)(*mats), repeat)
        print(f"{name + ' at ' + baseline:23s} {old_s:7.2f} s  peak {old_peak / 2**20:7.0f} MiB  "
              f"max |diff| from now {float(np.abs(old - result).max()):.2e}")
        rows.append((f"{name} speed vs {baseline}", old_s / seconds, "", True))
        rows.append((f"{name} memory vs {baseline}", peak / old_peak, "<= 1.1", peak / old_peak <= 1.1))
    for name, value, target, good in rows:
        verdict = f"target {target:9s} {'ok' if good else 'MISSED'}" if target else "(reported, no target)"
        print(f"{name:32s} {value:10.4g}   {verdict}")
    missed = [name for name, _, _, good in rows if not good]
    if missed:
        raise ReidError("targets missed: " + ", ".join(missed))


if __name__ == "__main__":
    run(main, Config)
