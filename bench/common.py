"""Shared benchmark inputs, the public re-ranking port, and this repository's own earlier code.

The port (`torchreid/reid/utils/rerank.py` from `torchreid==0.2.5`) is downloaded with pip
into ~/.cache/reid-bench (or $XDG_CACHE_HOME/reid-bench) and that one file is loaded by path,
so the heavy torchreid package is never imported and its code is never copied into this
repository. An earlier version of a module is read from git, so a benchmark can compare
with it in the same run instead of with numbers written down.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import time
import tracemalloc
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from reid.files import write_text

PORT_VERSION = "0.2.5"
PORT_MEMBER = "torchreid/reid/utils/rerank.py"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reid-bench"
REPO = Path(__file__).resolve().parents[1]


def features(nq: int = 618, ng: int = 9505, dim: int = 256, per_id: int = 15,
             noise: float = 2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """L2-normalised (qf, gf, q_ids, g_ids): one query per identity, `per_id` gallery images each.

    Gallery images beyond `nq * per_id` belong to distractor identities that have no query.
    """
    rng = np.random.default_rng(seed)
    q_ids = np.arange(nq)
    g_ids = rng.permutation(np.arange(ng) // per_id)
    centres = rng.standard_normal((max(nq, g_ids.max() + 1), dim)).astype(np.float32)

    def draw(ids: np.ndarray) -> np.ndarray:
        x = centres[ids] + noise * rng.standard_normal((len(ids), dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return draw(q_ids), draw(g_ids), q_ids, g_ids


def load_port() -> Callable[..., np.ndarray] | None:
    """The port's `re_ranking`, or None (with a message) when it cannot be obtained."""
    target = CACHE / f"torchreid-{PORT_VERSION}-rerank.py"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"torchreid=={PORT_VERSION}", "-d", str(CACHE)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = sorted(CACHE.glob(f"torchreid-{PORT_VERSION}*"))
        archives = [a for a in archives if a.suffix in (".gz", ".whl", ".zip")]
        if done.returncode or not archives:
            print(f"cannot obtain torchreid=={PORT_VERSION} with pip: {done.stderr.strip()[-300:]}")
            return None
        text = _read_member(archives[0])
        if text is None:
            print(f"{archives[0].name} has no {PORT_MEMBER}")
            return None
        write_text(target, text)
    spec = importlib.util.spec_from_file_location("torchreid_port_rerank", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.re_ranking


def load_revision(path: str, rev: str) -> ModuleType | None:
    """The module at `path` as committed in git revision `rev`, or None (with a message).

    Its own imports resolve against the working tree, so it must still run with today's `reid`.
    """
    try:
        done = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, cwd=REPO, check=True)
        module = ModuleType(f"{Path(path).stem}_at_{rev}")
        sys.modules[module.__name__] = module  # where dataclasses look a class's module up
        exec(compile(done.stdout, f"{rev}:{path}", "exec"), module.__dict__)
    except Exception as err:  # any failure only drops the comparison
        print(f"cannot load {path} at {rev}: {getattr(err, 'stderr', None) or err}".strip())
        return None
    return module


def _read_member(archive: Path) -> str | None:
    """The text of the re-ranking file inside an sdist or a wheel."""
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.name.endswith(PORT_MEMBER):
                    return tar.extractfile(member).read().decode()
        return None
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            if name.endswith(PORT_MEMBER):
                return zf.read(name).decode()
    return None


def measure(fn: Callable[[], Any], repeat: int = 1, trace: bool = True) -> tuple[Any, float, int]:
    """(result, best wall time of `repeat` untraced runs, traced peak bytes of one more run).

    Tracing slows Python-level allocation a lot, so time and memory come from separate runs.
    """
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    peak = 0
    if trace:
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, best, peak
