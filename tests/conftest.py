"""Shared fixtures: tiny datasets in the official layout, and a local HTTP server."""

from __future__ import annotations

import os

# Before anything can import huggingface_hub: it reads the variable once, at import.
os.environ["HF_HUB_OFFLINE"] = "1"

import importlib
import io
import subprocess
import sys
import threading
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from reid.config import run

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


@pytest.fixture
def file_server():
    server = FileServer()
    yield server
    server.close()
