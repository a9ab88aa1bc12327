"""rerank_features at 5,000 queries x 95,000 gallery (256-d), one subprocess per method.

Each method runs in a fresh child process; its wall time and peak resident memory (from
getrusage of the children) are printed against the targets of 4 minutes and 8 GiB. The
dense port would need five N x N float32 arrays, about 200 GB at this size.

    python -m bench.rerank_scale [--nq=5000] [--ng=95000]
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import numpy as np

from bench.common import features
from reid.rerank import rerank_features


def child(method: str, nq: int, ng: int) -> None:
    """Run one method; print a checksum (so the work cannot be skipped) and this process's peak RSS."""
    qf, gf, _, _ = features(nq, ng)
    out = rerank_features(qf, gf, method=method)
    print(f"  {method}: output {out.shape} {out.dtype}, finite {bool(np.isfinite(out).all())}, "
          f"mean {out.mean(dtype=np.float64):.6f}")
    print(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


def main(nq: int, ng: int) -> int:
    print(f"inputs: {nq} queries x {ng} gallery, 256-d")
    ok = True
    for method in ("k_reciprocal", "hard_weight"):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "bench.rerank_scale", f"--child={method}", f"--nq={nq}",
                               f"--ng={ng}"], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        lines = done.stdout.splitlines()
        peak = [int(x.split("=")[1]) for x in lines if x.startswith("peak_rss_kib=")]
        print("\n".join(x for x in lines if not x.startswith("peak_rss_kib=")) or done.stderr[-2000:])
        gib = peak[0] / 2**20 if peak else float("nan")
        good = done.returncode == 0 and seconds <= 240 and gib <= 8
        print(f"{method:14s} {seconds:7.1f} s   peak RSS {gib:5.2f} GiB   "
              f"target <= 240 s and <= 8 GiB: {'ok' if good else 'MISSED'}")
        ok &= good
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"largest child peak RSS (getrusage RUSAGE_CHILDREN): {children:.2f} GiB")
    return 0 if ok else 1


if __name__ == "__main__":
    args = dict(a.lstrip("-").split("=") for a in sys.argv[1:])
    nq, ng = int(args.get("nq", 5000)), int(args.get("ng", 95000))
    if "child" in args:
        child(args["child"], nq, ng)
    else:
        sys.exit(main(nq, ng))
