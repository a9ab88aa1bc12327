"""Resumable downloads, md5 checks and safe zip extraction, for download.py.

A download streams into `<file>.part` (reid.files.partial_of) and is renamed only when complete;
a later call resumes the `.part` with an HTTP Range request; archive members are written through
reid.files. Extraction refuses absolute paths, `..` components and
symbolic links before writing a single file.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import time
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import requests
from tqdm import tqdm

from reid.errors import ReidError
from reid.files import atomic_open, move_into_place, partial_of, write_error
from reid.rules import Count, NonNegative, Positive, checked

CHUNK = 1 << 20
NET_CHUNK = 1 << 16  # small, so a dropped connection loses little of what arrived


class _Retryable(Exception):
    """A failure worth another try: a dropped connection, a timeout or a 5xx answer."""


def local_source(url: str) -> Path | None:
    """The file a `file://` URL or plain path names, or None for a remote URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    if len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive, i.e. a path
        raise ReidError(f"--url={url}: {parsed.scheme}:// is not supported; use http(s)://, file:// or a path")
    return Path(url).expanduser()


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _complete_part(response: requests.Response, offset: int) -> bool:
    """A 416 whose `Content-Range: bytes */N` says the `.part` already holds all N bytes."""
    total = response.headers.get("Content-Range", "").rpartition("/")[2]
    return total.isdigit() and int(total) == offset


def _stream_once(url: str, part: Path, timeout: float) -> None:
    """One request: resume `part` from its size, or restart it when the server ignores Range."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = requests.get(url, stream=True, timeout=timeout, headers=headers)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retryable(str(exc)) from None
    with response:
        if response.status_code == 416 and offset and _complete_part(response, offset):
            return
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code} {response.reason}")
        if response.status_code >= 400:
            raise ReidError(f"{url}: HTTP {response.status_code} {response.reason}")
        resumed = response.status_code == 206
        length = int(response.headers.get("Content-Length", 0)) or None
        start = offset if resumed else 0
        total = start + length if length else None
        try:
            with open(part, "ab" if resumed else "wb") as f, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
            ) as bar:
                for chunk in response.iter_content(NET_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retryable(f"connection lost: {exc}") from None
        except OSError as exc:
            raise write_error(exc, part) from None
    if total is not None and part.stat().st_size != total:
        raise _Retryable(f"connection closed after {part.stat().st_size} of {total} bytes")


@checked
def download(url: str, dest: Path, retries: Count = 5, timeout: Positive = 30.0,
             backoff: NonNegative = 2.0) -> Path:
    """Fetch `url` to `dest` through `dest.part`, retrying with exponential backoff.

    After the last retry the `.part` stays, so running again resumes where it stopped.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_of(dest)
    attempt = 0
    while True:
        try:
            _stream_once(url, part, timeout)
            break
        except _Retryable as exc:
            if attempt == retries:
                kept = (f"{part.stat().st_size} bytes kept in {part}: run again to resume"
                        if part.exists() and part.stat().st_size else "nothing was received")
                raise ReidError(f"download of {url} failed after {retries} retries ({exc}); {kept}") from None
            wait = backoff * 2**attempt
            print(f"{exc}; retrying in {wait:.0f} s")
            time.sleep(wait)
            attempt += 1
    return move_into_place(part, dest)


def find_member(archive: zipfile.ZipFile, inner: str) -> zipfile.ZipInfo:
    """The entry `inner` at the top of the archive or under its single top folder."""
    for info in archive.infolist():
        name = info.filename
        if name == inner or (name.endswith("/" + inner) and name.count("/") == inner.count("/") + 1):
            return info
    raise ReidError(f"{archive.filename}: no {inner} inside (nor under its top folder)")


def copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> str:
    """Copy one entry out to `dest` (atomically) and return its md5."""
    digest = hashlib.md5()
    with archive.open(info) as src, atomic_open(dest) as out:
        for block in iter(lambda: src.read(CHUNK), b""):
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why writing this entry could escape the target folder, or None when it is safe."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(name).parts:
        return "'..' in path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def safe_extract(zip_path: Path, dest: Path) -> None:
    """Extract every entry under `dest`, after checking that none is unsafe."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise ReidError(f"{zip_path}: not a valid zip archive ({exc})") from None
    with archive:
        bad = [(i.filename, r) for i in archive.infolist() if (r := unsafe_reason(i))]
        if bad:
            listed = ", ".join(f"{n!r} ({r})" for n, r in bad[:10])
            raise ReidError(f"{zip_path}: refusing unsafe entries: {listed}")
        root = dest.resolve()
        for info in archive.infolist():
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(root):
                raise ReidError(f"{zip_path}: entry {info.filename!r} leaves the target folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, atomic_open(target) as out:
                shutil.copyfileobj(src, out, CHUNK)
