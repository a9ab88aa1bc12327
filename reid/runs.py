"""What a training run is: when it may be resumed, and when a finished one may be reused.

A run's weights are determined by its recipe (the config less the fields that only say where
files are or how fast and how verbosely to work) and by the data it trained on, summed up in a
fingerprint. Paths are in neither, so a moved run or a moved dataset is still the same run.
A run that finished writes a completion record last; a run folder without one was interrupted.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterable, Iterator

from reid.errors import ReidError
from reid.files import read_json, temporary_of, write_error, write_json
from reid.io import read_table
from reid.outputs import exclusive, remove_if_empty
from reid.rules import Count, PositiveInt, Range, checked

COMPLETE = "complete.json"
LAST = "last.pt"  # everything an exact resume needs, rewritten after every epoch
CONFIG = "config.json"  # written when a run starts
PARTITION = "train_df.csv"
# Everything a training writes into its run folder (each also under a temporary name while written:
# reid.files.temporary_of).
RUN_FILES = frozenset({CONFIG, LAST, "best.pt", "metrics.csv", "curves.png", COMPLETE})
BestMap = Annotated[float, Range(lo=-1, hi=1)]  # a validation mAP, or -1 where none was measured
# Where files are, how fast or how verbosely to work: none of these changes the weights.
NOT_RECIPE = frozenset({"data_dir", "checkpoint_dir", "run_name", "resume", "num_workers", "device",
                        "eval_batch_size", "rerank_eval"})
# More epochs extend a resumed run at lr_end (its schedule, restored with it, keeps its length).
RESUMABLE = NOT_RECIPE | {"epochs"}


@contextmanager
def hold_run(run_dir: Path) -> Iterator[None]:
    """Hold the run folder for this process (an exclusive lock on the folder itself): a second
    training into it stops at once instead of interleaving its checkpoints with this one's.
    Folders made here and left empty by a failure are removed."""
    run_dir = Path(run_dir)
    made = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # removed again if left empty
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, run_dir) from None
    try:
        with exclusive(run_dir, f"{run_dir} is being written by another training; wait for it to end or "
                                "choose another --run_name"):
            yield
    finally:
        remove_if_empty(made)


def images_fingerprint(root: Path, images: Iterable[str], digest: Any = None) -> str:
    """sha256 over every image's path below `root`, size and mtime (continuing `digest`, if given).

    Cheap (one stat per image) and blind to where the dataset lives; a changed, added or
    removed image changes it.
    """
    digest = digest or hashlib.sha256()
    for rel in sorted(images):
        try:
            st = (Path(root) / rel).stat()
        except OSError as exc:
            raise ReidError(f"cannot read image {Path(root) / rel}: {exc.strerror or exc}") from None
        digest.update(f"{rel}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
    return digest.hexdigest()


def data_fingerprint(root: Path) -> str:
    """The fingerprint of a training partition: its CSV's bytes and every image it lists."""
    csv = Path(root) / PARTITION
    try:
        table = csv.read_bytes()
    except OSError as exc:
        raise ReidError(f"cannot read {csv}: {exc.strerror or exc}; run preprocess_data.py first") from None
    df = read_table(csv, {"folder": str, "img_id": str})
    return images_fingerprint(root, df["folder"] + "/" + df["img_id"], hashlib.sha256(table))


@checked
def file_sha256(path: Path, chunk: PositiveInt = 1 << 24) -> str:
    """sha256 of a file's bytes, read in chunks (checkpoints can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def recipe_changes(saved: dict[str, Any], wanted: dict[str, Any], ignore: frozenset[str] = NOT_RECIPE) -> list[str]:
    """`field: saved -> wanted` for every field, outside `ignore`, whose value differs."""
    fields = sorted((set(saved) | set(wanted)) - ignore)
    return [f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in fields if saved.get(k) != wanted.get(k)]


def require_checkpoint(run_dir: Path) -> Path:
    """The last.pt that --resume=true continues from; refused, saying why, where there is none
    (checked before the run folder is made, so a mistyped run name is not taken for a run)."""
    run_dir = Path(run_dir)
    last = run_dir / LAST
    if last.is_file():
        return last
    why = ("no such run folder" if not run_dir.is_dir()
           else "it stopped before its first epoch ended" if (run_dir / CONFIG).is_file()
           else "the folder holds no run")
    raise ReidError(f"nothing to resume in {run_dir}: no {LAST} ({why}); run without --resume=true to start it")


def schedule_epochs(ckpt: dict[str, Any]) -> int:
    """The epochs a run's learning-rate schedule spans: set when it started and kept by a resume
    that extends it (a checkpoint from before this was saved counts its config's epochs)."""
    return int(ckpt.get("schedule_epochs", ckpt["config"]["epochs"]))


@checked
def early_end(trained: Count, schedule: PositiveInt, epochs: PositiveInt) -> str | None:
    """Why resuming with `epochs` would end a run too early, or None: before epochs it has
    already trained, or before its schedule has decayed to lr_end (the weights would then be
    those of no recipe, and the completion record would claim one)."""
    if epochs < trained:
        return (f"the run has trained {trained} epochs; --epochs={epochs} would end it before that: "
                f"pass --epochs={max(trained, schedule)} (or more, to extend it at lr_end)")
    if epochs < schedule:
        return (f"the run has trained {trained} of its {schedule} epochs; --epochs={epochs} would end it "
                f"before its learning rate decays to lr_end: pass --epochs={schedule} (or more, to extend "
                "it at lr_end), or start a new run")
    return None


@checked
def write_complete(run_dir: Path, config: dict[str, Any], data: str, best_map: BestMap,
                   schedule: PositiveInt | None = None) -> Path:
    """The completion record, written atomically after everything else of the run. `schedule`
    is the epochs its learning rate decayed over (default: the config's), which a resume that
    extended the run leaves short of the epochs trained."""
    record = {"config": config, "data": data, "best_map": best_map,
              "schedule_epochs": config.get("epochs") if schedule is None else schedule}
    return write_json(record, Path(run_dir) / COMPLETE)


def foreign_files(run_dir: Path) -> list[str]:
    """What in `run_dir` no training wrote: a folder holding any of it is not ours to delete."""
    if not Path(run_dir).is_dir():
        return []
    return sorted(p.name for p in Path(run_dir).iterdir()
                  if p.name not in RUN_FILES and temporary_of(p.name) not in RUN_FILES)


def reuse_problem(run_dir: Path, config: dict[str, Any], data: str) -> str | None:
    """None when `run_dir` finished with this recipe on this data; else why it cannot be reused."""
    path = Path(run_dir) / COMPLETE
    if not Path(run_dir).is_dir():
        return "not trained yet"
    try:
        record = read_json(path, None)
    except ReidError as exc:
        return f"its completion record cannot be read ({exc})"
    if record is None:
        return "it never finished (no completion record)"
    if record.get("data") != data:
        return "it was trained on other data (the data fingerprint differs)"
    changes = recipe_changes(record.get("config", {}), config)
    if changes:
        return "it was trained with other settings: " + "; ".join(changes)
    epochs = record.get("config", {}).get("epochs")
    if record.get("schedule_epochs", epochs) != epochs:
        return (f"it extended its {record['schedule_epochs']}-epoch schedule to {epochs} epochs at lr_end "
                "(resumed with a larger --epochs)")
    return None
