"""Safe file writing and reading: the one way the project puts a file on disk or reads JSON back.

A file is written to a hidden temporary beside it (`.<name>.<random>.part`) that is renamed onto
it only once complete, so an interrupted or failed write never leaves half a file, nor the
temporary; the file gets the permissions `open()` would give under the process's umask. A
download that must survive a failure to be resumed is the one exception: it grows in `<name>.part`.
Every fault is one line naming the file.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from reid.errors import ReidError

PART = ".part"
_MISSING = object()


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_error(exc: OSError, path: Path) -> ReidError:
    """One line for a failed write: a full disk said as such, else the system's reason."""
    if exc.errno == errno.ENOSPC:
        return ReidError(f"disk full while writing {path}: free some space and run again")
    return ReidError(f"cannot write {path}: {exc.strerror or exc}")


def require_writable(folder: Path | str, option: str) -> Path:
    """Refuse, before any work, an output folder that cannot be made or written: a path through a
    file, or a read-only place. Creates nothing."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ReidError(f"--{option}={folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ReidError(f"--{option}={folder}: {existing} is not writable")
    return folder


def temporary_of(name: str) -> str | None:
    """The file name a temporary of this module stands for, or None when `name` is not one: how
    a folder's owner tells its own interrupted writes from files it did not write."""
    if not (name.startswith(".") and name.endswith(PART)):
        return None
    stem, dot, _ = name[1:-len(PART)].rpartition(".")
    return stem if dot and stem else None


@contextmanager
def _replacing(path: Path) -> Iterator[tuple[int, Path]]:
    """A temporary file beside `path` (its descriptor and name), renamed onto `path` when the block
    ends normally and removed however it ends; an OSError becomes a write error naming `path`."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PART)
        tmp = Path(name)
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; a file should get what open() gives
        yield fd, tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(exc, path) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: Path | str) -> Iterator[BinaryIO]:
    """A binary file to stream into (an archive member, a copy) that appears at `path` only once
    the block ends normally."""
    with _replacing(Path(path)) as (fd, _), os.fdopen(fd, "wb") as f:
        yield f


def write_with(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Let `write` (a writer that wants a file name, such as torch.save) write `path` atomically;
    what it raises besides OSError (torch reports a full disk as a RuntimeError) is passed on,
    the temporary removed."""
    path = Path(path)
    with _replacing(path) as (fd, tmp):
        os.close(fd)
        write(tmp)
    return path


def write_bytes(path: Path | str, data: bytes) -> Path:
    """`data` as the whole content of `path`, written atomically."""
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    """`text` (UTF-8) as the whole content of `path`, written atomically."""
    return write_bytes(path, text.encode())


def write_json(obj: Any, path: Path | str, sort_keys: bool = False) -> Path:
    """An object as indented JSON, written atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def read_json(path: Path | str, missing: Any = _MISSING) -> Any:
    """The JSON in `path`: `missing` where there is no such file (an error when not given), and an
    error naming the file where it cannot be read or is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if missing is _MISSING:
            raise ReidError(f"{path}: no such file") from None
        return missing
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bytes that are not UTF-8
        raise ReidError(f"{path}: cannot read ({exc})") from None


def move_into_place(src: Path, dest: Path) -> Path:
    """Rename a finished file (a staged export, a completed download) onto `dest`, replacing what
    is there; a failure is a write error naming `dest`."""
    try:
        src.replace(dest)
    except OSError as exc:
        raise write_error(exc, dest) from None
    return dest


def partial_of(dest: Path) -> Path:
    """Where a resumable download of `dest` grows: kept after a failure, so the next call resumes,
    and moved onto `dest` (`move_into_place`) once complete."""
    return dest.with_name(dest.name + PART)

