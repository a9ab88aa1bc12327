"""What several test modules share: tiny datasets and checkpoints, running a stage as a user
would, a local HTTP server, reading a process's output up to a sign it gives.

Plain functions and constants only, imported by the tests (`from helpers import call`); the
fixtures built on them live in conftest.py, where pytest finds them. No test module is imported
by another, so each one reads on its own.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import math
import os
import select
import subprocess
import sys
import threading
import time
import types
import typing
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Annotated, Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from reid.config import run
from reid.distance import sq_euclidean
from reid.models import build_encoder
from reid.rules import FolderName, Items, Range, rules_of, shown

REPO = Path(__file__).resolve().parents[1]


def jpeg_bytes(rng: np.random.Generator, height: int = 24, width: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def dataset_files(games: int = 4, players: int = 3, frames: int = 5, test_games: int = 2,
                  challenge: bool = True, seed: int = 0) -> dict[str, bytes]:
    """{relative path: JPEG bytes} of a small dataset in the official layout."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    player = 0
    for game in range(games):
        for _ in range(players):
            for frame in range(frames):
                files[f"reid_training/{player:03d}_{game:02d}_{frame:02d}.jpeg"] = jpeg_bytes(rng)
            player += 1
    for game in range(test_games):
        for _ in range(players):
            for frame in range(frames):
                folder = "query" if frame == 0 else "gallery"
                files[f"reid_test/{folder}/{player:03d}_{game:02d}_{frame:02d}.jpeg"] = jpeg_bytes(rng)
            player += 1
    if challenge:
        for i in range(4):
            files[f"reid_challenge/query/{i}.jpeg"] = jpeg_bytes(rng)
        for i in range(4, 12):
            files[f"reid_challenge/gallery/{i}.jpeg"] = jpeg_bytes(rng)
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    """A zip of `entries`, the same bytes for the same entries (entry times fixed, not the clock's)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2023, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def run_script(script: str, *args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a stage script as a user would, capturing its output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def call(script: str, *args: str) -> Result:
    """Run a stage script's entry point in this process, as its command line would.

    Expected failures come back as exit code 1 with a message; anything unexpected raises,
    so a test that passes also shows the user would have seen no traceback.
    """
    module = importlib.import_module(Path(script).stem)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            run(module.main, module.Config, list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


class FileServer:
    """Serves `files` on 127.0.0.1 with Range support; can drop the first responses half-way."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.drop_next = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drop_next:
                    server.drop_next -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# The smallest training a stage accepts: one epoch of two steps of an offline backbone on the CPU.
SMOKE_TRAIN = ["--model=efficientnet_lite0", "--img_size=64", "--batch_size=8", "--num_workers=0", "--device=cpu",
               "--max_steps_per_epoch=2", "--epochs=1", "--rerank_eval=false"]


def torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    """Launch `args` on `nproc` CPU processes with torchrun, as a user launches training."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                           "--standalone", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def read_until(pipe: IO, text: str, timeout: float = 120) -> str:
    """What a child's `pipe` gives up to and including `text`: wait for a sign the child gives,
    not for a guess of how long it takes. Fails when the child ends or stays silent first."""
    fd, seen, deadline = pipe.fileno(), b"", time.monotonic() + timeout
    while text.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            raise AssertionError(f"{text!r} never came ({'silent' if not ready else 'ended'}): {seen[-2000:]!r}")
        seen += chunk
    return seen.decode(errors="replace")


def write_checkpoint(path: Path, name: str, img_size: int, seed: int = 0) -> Path:
    """A checkpoint in the engine's format, of a randomly initialised `name`."""
    torch.manual_seed(seed)
    model, data = build_encoder(name, pretrained=False, img_size=img_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": {"model": name}, "data_config": data.to_dict()}, path)
    return path


def save_jpegs(folder: Path, crops) -> list[Path]:
    """`crops` as 0.jpeg, 1.jpeg, ... in `folder`, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, crop in enumerate(crops):
        Image.fromarray(crop).save(folder / f"{i}.jpeg", quality=95)
        paths.append(folder / f"{i}.jpeg")
    return paths


def export(checkpoint, out, *args: str) -> Result:
    """export.py on `checkpoint`, writing `out`."""
    return call("export.py", f"--checkpoint={checkpoint}", f"--out={out}", *args)


def features(nq: int, ng: int, dim: int = 8, seed: int = 0, levels: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random features; with `levels`, coordinates on a coarse grid so distances are exact and tie."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((nq + ng, dim)).astype(np.float32)
    if levels:
        x = np.round(x * levels / 2) / levels
    return x[:nq], x[nq:]


def blocks(qf: np.ndarray, gf: np.ndarray, power: float = 1.0):
    """(q_g, q_q, g_g) of squared Euclidean distances raised to `power`."""
    return tuple(sq_euclidean(a, b) ** power for a, b in ((qf, gf), (qf, qf), (gf, gf)))


def asymmetric(nq: int, ng: int, seed: int):
    """Unrelated positive blocks: q_q and g_g not symmetric, so transposes matter."""
    rng = np.random.default_rng(seed)
    return (rng.random((nq, ng)).astype(np.float32) + 0.1, rng.random((nq, nq)).astype(np.float32),
            rng.random((ng, ng)).astype(np.float32))


# ---------------------------------------------------------------- bad values, from the rules themselves

def outside(rule: Range, integer: bool) -> list[float]:
    """A value just past each bound `rule` has (NaN for a float with none: every float must be finite)."""
    step = 1 if integer else 0.5
    values = []
    if rule.lo is not None:
        values.append(rule.lo if rule.lo_open else rule.lo - step)
    if rule.hi is not None:
        values.append(rule.hi if rule.hi_open else rule.hi + step)
    return values or ([] if integer else [math.nan])


def ranged_number(kind: Any) -> Any:
    """The Annotated number an annotation holds, alone or optional (None for anything else)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Annotated and args[0] in (int, float):
        return kind
    if origin in (typing.Union, types.UnionType):
        found = [ranged_number(a) for a in args if a is not type(None)]
        return found[0] if len(found) == 1 else None
    return None


def _plain(value: float) -> str:
    """A number as a user types it (2, not 2.0)."""
    return str(int(value)) if float(value).is_integer() else str(value)


def bad_arguments(cls: type) -> list[tuple[str, str]]:
    """(`--field=value`, what its refusal says) for every rule a Config's fields carry: each bound
    of a range crossed (in a list, by its last item), NaN and inf where a float is due, a folder
    name that leaves its folder, a list emptied or repeated, a choice not offered."""
    cases = []
    kinds = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        kind = kinds[f.name]
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        listed = origin is tuple or (origin is Annotated and typing.get_origin(args[0]) is tuple)
        item = typing.get_args(args[0] if origin is Annotated else kind)[0] if listed else kind
        number = ranged_number(item)
        prefix = ",".join(map(shown, f.default[:1])) + "," if listed and f.default else ""
        if number is not None:
            integer = typing.get_args(number)[0] is int
            for rule in (r for r in number.__metadata__ if isinstance(r, Range)):
                cases += [(f"--{f.name}={prefix}{_plain(v)}", f"expected {rule}") for v in outside(rule, integer)]
            if not integer:
                cases += [(f"--{f.name}={prefix}{v}", "expected a finite number") for v in ("nan", "inf")]
        rules = rules_of(kind)
        if any(isinstance(r, FolderName) for r in rules):
            cases += [(f"--{f.name}=", "plain folder name"), (f"--{f.name}=../escaped", "plain folder name")]
        for rule in (r for r in rules if isinstance(r, Items)):
            cases.append((f"--{f.name}=", f"expected {rule}"))
            if rule.distinct and f.default:
                cases.append((f"--{f.name}={shown(f.default[0])},{shown(f.default[0])}", "expected each value once"))
        if typing.get_origin(item) is typing.Literal:
            cases.append((f"--{f.name}=nope", "expected one of"))
    return cases
