"""Output folders a stage writes whole: checked before any work, held while written, swapped in at the end.

The rule: this project never deletes or replaces what it did not write. A folder that a stage
replaces as a unit (identify.py's and the fusions' `--out_dir`, each of predict.py's `<run>/<split>/`) must be new,
empty, or an earlier output of the same stage, known by the `manifest.json` that the stage
writes into it last; and it may not be, hold or lie inside any of the stage's inputs. Both are
checked before any work, so a refusal costs nothing.

While a run writes a folder it holds an exclusive lock on a hidden file beside it (the folder
itself is replaced, so it cannot carry the lock): a second run into the same folder stops at
once. Staging folders have unique names; those that a killed run left behind are removed by
the next run that holds the lock. A folder given as a link to another is written at its target.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from reid.errors import ReidError
from reid.files import current_umask, read_json, require_writable, write_error, write_json

MANIFEST = "manifest.json"  # written last into every output folder: {"stage": ..., "files": [...]}
_STAGING, _OLD, _LOCK = "partial-", "old-", "lock"


def _hidden(folder: Path, kind: str) -> str:
    """The name of a hidden sibling of `folder` for this project's own use (staging, lock)."""
    return f".{folder.name}.{kind}"


def real_folder(folder: Path | str, option: str) -> Path:
    """The absolute folder that writing to `folder` means: a link is followed to its target; a
    link to nothing, the root, the home folder and the current folder or any above it are refused
    (a folder replaced whole cannot be one of those)."""
    folder = Path(folder)
    if folder.is_symlink() and not folder.exists():
        raise ReidError(f"--{option}={folder}: a link to {os.readlink(folder)}, which does not exist")
    real = Path(os.path.realpath(folder))
    cwd = Path.cwd().resolve()
    where = ("the root folder" if real == real.parent else "the home folder" if real == Path.home().resolve()
             else "the current folder" if real == cwd else "a folder above the current one" if real in cwd.parents
             else None)
    if where:
        raise ReidError(f"--{option}={folder}: is {where}; an output folder is replaced whole, so give a folder "
                        "of its own, e.g. outputs/identify")
    return real


def refuse_overlap(folder: Path | str, option: str, inputs: Iterable[tuple[str, Path]]) -> None:
    """Refuse an output folder that is, holds or lies inside one of `inputs` ((option, path)
    pairs): its writes would change what the stage reads, or the next run would read them back.
    An input that is not there is left to the stage to name when it reads it."""
    real = Path(os.path.realpath(folder))
    for name, path in inputs:
        if not Path(path).exists():
            continue
        inp = Path(os.path.realpath(path))
        how = ("is" if real == inp else "holds" if real in inp.parents else
               "lies inside" if inp in real.parents else None)
        if how:
            harm = "would take in the outputs" if how == "lies inside" else "would be overwritten"
            raise ReidError(f"--{option}={folder} {how} the input --{name}={path}, which {harm}: choose an "
                            "output folder apart from the inputs")


def foreign_entries(folder: Path, stage: str) -> tuple[list[str], str]:
    """What in an existing `folder` this stage did not write (names, sorted), and why."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return [], ""
    record = read_json(folder / MANIFEST, {})
    if not isinstance(record, dict) or not isinstance(record.get("files"), list):
        return names, f"it has no {MANIFEST}, so nothing in it was written by this project"
    if record.get("stage") != stage:
        return names, f"it holds the output of {record.get('stage')!r}, not of {stage}"
    ours = set(record["files"]) | {MANIFEST}
    return [n for n in names if n.rstrip("/") not in ours], "they are not among the files it wrote"


def check_output_folder(folder: Path | str, option: str, stage: str,
                        inputs: Iterable[tuple[str, Path]] = ()) -> Path:
    """Before any work: the real folder `stage` may replace whole at `folder`, or a ReidError."""
    real = real_folder(folder, option)
    refuse_overlap(folder, option, inputs)
    if real.exists() and not real.is_dir():
        raise ReidError(f"--{option}={folder}: is a file, not a folder")
    if real.is_dir():
        foreign, why = foreign_entries(real, stage)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise ReidError(f"--{option}={folder}: holds {shown}, which {stage} did not write ({why}); this "
                            f"project never replaces what it did not write: give a new or empty folder")
    require_writable(folder, option)
    return real


@contextmanager
def exclusive(path: Path, busy: str) -> Iterator[None]:
    """An exclusive lock on `path` (a folder, or a lock file made here and removed afterwards)
    for the block; while another process holds it, a ReidError saying `busy`, at once."""
    made = not path.is_dir()
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | (os.O_CREAT if made else 0), 0o644)
        except OSError as exc:
            raise write_error(exc, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ReidError(busy) from None
        try:  # a lock file removed by its last holder between our open and our lock: take the new one
            if not made or os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        if made:
            path.unlink(missing_ok=True)
        os.close(fd)


def _clear_leftovers(real: Path) -> None:
    """Remove the staging a killed run left beside `real` (only a holder of its lock may); a
    run killed between moving the old folder aside and the new one in left the old one, which
    comes back."""
    for old in sorted(real.parent.glob(_hidden(real, _OLD) + "*")):
        if not real.exists() and (old / MANIFEST).is_file():
            old.rename(real)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for staged in real.parent.glob(_hidden(real, _STAGING) + "*"):
        shutil.rmtree(staged, ignore_errors=True)


@contextmanager
def held(target: Path, option: str) -> Iterator[None]:
    """Hold `target` (a folder, or a file, this run writes) for the block: a second run into it is
    refused at once; while held, what a killed run left beside it is cleared. Folders made for
    the lock and left empty are removed afterwards."""
    real = Path(os.path.realpath(target))
    made = [d for d in (real.parent, *real.parent.parents) if not d.exists()]
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, real.parent) from None
    try:
        with exclusive(real.parent / _hidden(real, _LOCK), f"{target} is being written by another run; wait for it "
                                                             f"to end or choose another --{option}"):
            _clear_leftovers(real)
            yield
    finally:
        remove_if_empty(made)


def remove_if_empty(folders: Iterable[Path]) -> None:
    """Remove those of `folders` (made by this run, deepest first) that it left empty."""
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def staging_folder(target: Path) -> Path:
    """A new folder beside `target`, named uniquely, to write it in before it is moved into place;
    the next holder of `target` clears one that a killed run left."""
    real = Path(os.path.realpath(target))
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=_hidden(real, _STAGING), dir=real.parent))
    except OSError as exc:
        raise write_error(exc, real) from None


@contextmanager
def claimed(folders: Sequence[Path], option: str, stage: str, inputs: Iterable[tuple[str, Path]] = (),
            hold: bool = True) -> Iterator[None]:
    """Check every output folder (check_output_folder), then hold each for the block (`held`).
    Under torchrun every process checks, so all stop together, and only the writing one holds."""
    inputs = list(inputs)
    for folder in folders:
        check_output_folder(folder, option, stage, inputs)
    with ExitStack() as stack:
        for folder in folders if hold else ():
            stack.enter_context(held(folder, option))
        yield


@contextmanager
def folder_as_unit(folder: Path | str, stage: str) -> Iterator[Path]:
    """Write a folder's files all or none: the caller writes into a staging folder beside it,
    which replaces the folder, with the manifest written last, only once every file is there.
    A failure part-way leaves the folder as it was. Hold the folder first (`claimed`)."""
    real = Path(os.path.realpath(folder))
    staging = staging_folder(real)
    try:
        yield staging
        write_json({"stage": stage, "files": sorted(p.name for p in staging.iterdir())}, staging / MANIFEST)
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700; a folder should get what mkdir gives
        if real.exists():
            os.replace(real, tempfile.mkdtemp(prefix=_hidden(real, _OLD), dir=real.parent))  # onto an empty folder
        staging.rename(real)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _clear_leftovers(real)

