"""Distance matrices on disk: `.npy` with its id files, and the official submission CSV.

A matrix is always stored with the ids that give its row and column order, so a stage that
combines matrices can refuse ones that do not line up; `matrices.json` ties each matrix to the
id files it was written with. Every file is written through `reid.files`, so an interrupted
run never leaves half a file behind. The project's CSV inputs are read here too (`read_table`).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from reid.errors import ReidError
from reid.files import read_json, write_bytes, write_json, write_text
from reid.rules import finite_matrix

QUERY_IDS = "query_ids.txt"
GALLERY_IDS = "gallery_ids.txt"
MANIFEST = "matrices.json"
PROVENANCE = "provenance.json"  # what a folder's matrices were computed from (predict.py, the fusions)


def write_csv(df: pd.DataFrame, path: Path | str) -> Path:
    """A table as CSV, written atomically, so an interrupted stage never leaves half a file."""
    return write_text(path, df.to_csv(index=False))


def read_table(path: Path | str, columns: dict[str, type], optional: dict[str, type] | None = None,
               keys: Sequence[str | tuple[str, ...]] = ()) -> pd.DataFrame:
    """A CSV that must have `columns` ({name: int or str}), every cell of them filled, the int
    ones whole numbers within int64: the one reader of the project's CSV inputs, so every fault
    names the file, the column and the first bad row (rows counted as in a text editor, the
    header being 1). `optional` columns are held to the same rules where the file has them.

    Each of `keys` (a column, or a tuple of columns taken together) must name each row once, as
    a repeat would let one row silently override another; optional key columns the file lacks
    are left out of it.
    """
    path = Path(path)
    optional = optional or {}
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ReidError(f"missing {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # pandas' parser and empty-file errors
        raise ReidError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ReidError(f"{path}: missing columns {', '.join(missing)} (it has {', '.join(df.columns) or 'none'})")
    present = {name: kind for name, kind in optional.items() if name in df.columns}
    for name, kind in (columns | present).items():
        cells = df[name].str.strip()
        checks = {"is empty": cells == ""}
        if kind is int:  # ASCII digits, at most int64's bounds (compared as zero-padded text)
            digits = cells.str.lstrip("-").str.lstrip("0")
            bound = np.where(cells.str.startswith("-"), str(-np.iinfo(np.int64).min), str(np.iinfo(np.int64).max))
            checks["not a whole number"] = ~cells.str.fullmatch(r"-?[0-9]+")
            checks["out of range (beyond 64-bit integers)"] = (digits.str.len() > 19) | (digits.str.zfill(19) > bound)
        reason = np.select([c.to_numpy() for c in checks.values()], list(checks), "")
        if (reason != "").any():
            row = int((reason != "").argmax())
            what = reason[row] if cells.iloc[row] == "" else f"is {cells.iloc[row]!r}, {reason[row]}"
            raise ReidError(f"{path}: column {name} {what} in row {row + 2}")
        df[name] = cells.astype(kind)
    for key in keys:
        refuse_repeats(df, path, [c for c in ((key,) if isinstance(key, str) else key)
                                  if c in df.columns or c not in optional])
    return df


def refuse_repeats(df: pd.DataFrame, path: Path, names: list[str]) -> None:
    """A ReidError naming the value and both rows where the columns `names` repeat a row's values."""
    repeat = df.duplicated(names).to_numpy() if names else np.zeros(len(df), dtype=bool)
    if repeat.any():
        second = int(repeat.argmax())
        value = df[names].iloc[second]
        first = int((df[names] == value).all(axis=1).to_numpy().argmax())
        shown = ", ".join(f"{c} {v!r}" for c, v in zip(names, value.tolist(), strict=True))
        label = names[0] if len(names) == 1 else f"({', '.join(names)})"
        raise ReidError(f"{path}: {shown} is in row {first + 2} and again in row {second + 2}; "
                        f"each {label} may be listed once")


def check_matrix(path: Path | str, distmat: np.ndarray, query_ids, gallery_ids) -> np.ndarray:
    """A finite 2-D float32 matrix whose shape matches the ids, or a ReidError naming `path`."""
    distmat = finite_matrix(distmat, str(path), (len(query_ids), len(gallery_ids)), sizes="query and gallery ids")
    for name, ids in (("query", query_ids), ("gallery", gallery_ids)):
        if len(set(map(str, ids))) != len(ids):
            raise ReidError(f"{path}: {name} ids are not unique")
    return distmat


def _int_ids(path: Path | str, ids, name: str) -> np.ndarray:
    """Integer ids (the official CSV has numeric image ids)."""
    try:
        return np.asarray([int(i) for i in ids], dtype=np.int64)
    except (TypeError, ValueError):
        raise ReidError(f"{path}: {name} ids must be integers for the submission CSV") from None


def _submission_text(distmat: np.ndarray, query_ids: np.ndarray, gallery_ids: np.ndarray) -> bytes:
    """The official CSV: `0,` then the gallery ids; then per query (ascending) its distances."""
    order = np.argsort(query_ids, kind="stable")
    buf = io.StringIO()
    buf.write("0," + ",".join(map(str, gallery_ids)) + "\n")
    rows = np.column_stack([query_ids[order].astype(np.float64), distmat[order].astype(np.float64)])
    np.savetxt(buf, rows, fmt=",".join(["%d"] + ["%10.5f"] * distmat.shape[1]))
    return buf.getvalue().encode()


def write_submission(path: Path | str, distmat: np.ndarray, query_ids, gallery_ids) -> Path:
    """Write the official submission CSV (rows sorted by query id)."""
    path = Path(path)
    distmat = check_matrix(path, distmat, query_ids, gallery_ids)
    q, g = _int_ids(path, query_ids, "query"), _int_ids(path, gallery_ids, "gallery")
    return write_bytes(path, _submission_text(distmat, q, g))


def read_submission(path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distmat float32, query_ids, gallery_ids) from an official submission CSV."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReidError(f"{path}: cannot read ({exc})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ReidError(f"{path}: empty file")
    if lines[0].rstrip().endswith(","):
        raise ReidError(f"{path}: the first row ends with a comma (the official CSV has none after the last id)")
    header = [c.strip() for c in lines[0].split(",")]
    if header[0] != "0" or len(header) < 2:
        raise ReidError(f"{path}: not an official submission CSV (first row must be 0 then the gallery ids)")
    gallery_ids = _int_ids(path, header[1:], "gallery")
    if len(lines) == 1:
        raise ReidError(f"{path}: no query rows")
    try:
        table = np.loadtxt(lines[1:], delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ReidError(f"{path}: not an official submission CSV ({exc})") from None
    if table.shape[1] != len(gallery_ids) + 1:
        raise ReidError(f"{path}: rows have {table.shape[1] - 1} distances for {len(gallery_ids)} gallery ids")
    if not np.array_equal(table[:, 0], np.round(table[:, 0])):
        raise ReidError(f"{path}: query ids in the first column must be integers")
    query_ids = table[:, 0].astype(np.int64)
    distmat = check_matrix(path, table[:, 1:], query_ids, gallery_ids)
    return distmat, query_ids, gallery_ids


def _ids_text(ids) -> bytes:
    return "".join(f"{i}\n" for i in ids).encode()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_matrix(path: Path | str, distmat: np.ndarray, query_ids, gallery_ids) -> Path:
    """Save a float32 `.npy` with `query_ids.txt` and `gallery_ids.txt` in the same folder.

    The three files are one unit: `matrices.json`, rewritten last, records the digest of each
    matrix and of the id files it was written with, so a crash between the writes leaves a unit
    that `load_matrix` refuses rather than a matrix paired with another matrix's ids.
    """
    path = Path(path)
    distmat = check_matrix(path, distmat, query_ids, gallery_ids)
    _check_siblings(path, query_ids, gallery_ids)
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(distmat, dtype=np.float32))
    ids = {QUERY_IDS: _ids_text(query_ids), GALLERY_IDS: _ids_text(gallery_ids)}
    manifest = read_json(path.parent / MANIFEST, {})
    if {name: _digest(text) for name, text in ids.items()} != manifest.get("ids"):
        manifest = {"ids": {name: _digest(text) for name, text in ids.items()}, "matrices": {}}
    manifest["matrices"][path.name] = _digest(buf.getvalue())
    for name, text in ids.items():
        write_bytes(path.parent / name, text)
    write_bytes(path, buf.getvalue())
    write_json(manifest, path.parent / MANIFEST, sort_keys=True)
    return path


def _check_siblings(path: Path, query_ids, gallery_ids) -> None:
    """Refuse to rewrite id files that other matrices in the same folder still rely on."""
    others = [p for p in path.parent.glob("*.npy") if p.resolve() != path.resolve()]
    for name, ids in ((QUERY_IDS, query_ids), (GALLERY_IDS, gallery_ids)):
        old = path.parent / name
        if others and old.exists() and old.read_bytes() != _ids_text(ids):
            raise ReidError(f"{path}: {old} already lists other ids for {others[0].name}; "
                            "save this matrix in its own folder")


def _read_ids(path: Path) -> tuple[np.ndarray, bytes]:
    """(ids, the file's bytes) of an id file."""
    if not path.exists():
        raise ReidError(f"{path}: missing (a distance matrix needs its id files beside it)")
    data = path.read_bytes()
    ids = [line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()]
    if not ids:
        raise ReidError(f"{path}: empty file")
    try:
        return np.asarray([int(i) for i in ids], dtype=np.int64), data
    except ValueError:
        return np.asarray(ids), data


def _check_unit(path: Path, matrix: bytes, ids: dict[str, bytes]) -> None:
    """Refuse a matrix whose bytes or id files are not the ones `matrices.json` says were written
    together; a folder without `matrices.json` (matrices made elsewhere) is taken as it is."""
    manifest = read_json(path.parent / MANIFEST, {})
    if not manifest:
        return
    written = manifest.get("matrices", {}).get(path.name)
    stale = [name for name, data in ids.items() if manifest.get("ids", {}).get(name) != _digest(data)]
    if written is None or written != _digest(matrix) or stale:
        raise ReidError(f"{path}: this matrix and {' and '.join(stale) or 'its id files'} were not written "
                        f"together (see {MANIFEST}; an interrupted write?): write it again")


def load_matrix(path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distmat float32, query_ids, gallery_ids) from a `.npy` and the id files beside it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReidError(f"{path}: no such file") from None
    except OSError as exc:
        raise ReidError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        distmat = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ReidError(f"{path}: not a readable .npy matrix ({exc})") from None
    query_ids, q_bytes = _read_ids(path.parent / QUERY_IDS)
    gallery_ids, g_bytes = _read_ids(path.parent / GALLERY_IDS)
    _check_unit(path, data, {QUERY_IDS: q_bytes, GALLERY_IDS: g_bytes})
    return check_matrix(path, distmat, query_ids, gallery_ids), query_ids, gallery_ids


def load_any(path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A matrix from either format, chosen by the file suffix (`.npy` or `.csv`)."""
    path = Path(path)
    if path.suffix == ".npy":
        return load_matrix(path)
    if path.suffix == ".csv":
        return read_submission(path)
    raise ReidError(f"{path}: expected a .npy distance matrix or an official .csv submission")


def load_aligned(paths) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Matrices from several files that must share one query order and one gallery order."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ReidError("no input matrices given")
    mats, ids = [], []
    for path in paths:
        distmat, q, g = load_any(path)
        if ids and not (_same_ids(q, ids[0][0]) and _same_ids(g, ids[0][1])):
            raise ReidError(f"{path}: query or gallery ids differ in content or order from {paths[0]}")
        mats.append(distmat)
        ids.append((q, g))
    return mats, ids[0][0], ids[0][1]


def _same_ids(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) == len(b) and bool((a.astype(str) == b.astype(str)).all())


def numeric_ids(ids) -> bool:
    """Whether ids can go into the official CSV, whose ids are integers."""
    try:
        [int(i) for i in ids]
    except (TypeError, ValueError):
        return False
    return True


def read_labels(path: Path | str) -> dict[str, str]:
    """{image id: player} from a CSV with columns img_id,player (e.g. a ground_truth.csv).

    An img_id written as a path (`reid_challenge/query/12.jpeg`) is keyed by its stem (`12`),
    the id the matrices use.
    """
    df = read_table(path, {"img_id": str, "player": str}, keys=["img_id"])
    stems = df["img_id"].map(lambda i: Path(i).stem)
    if stems.duplicated().any():
        again = int(stems.duplicated().to_numpy().argmax())
        first = int((stems == stems.iloc[again]).to_numpy().argmax())
        raise ReidError(f"{path}: rows {first + 2} and {again + 2} both give image id {stems.iloc[again]!r} "
                        f"({df['img_id'].iloc[first]}, {df['img_id'].iloc[again]}); each image may be listed once")
    return dict(zip(stems, df["player"], strict=True))


def labels_for(path: Path | str, ids) -> np.ndarray:
    """The player of each id, from a labels CSV; every id must be listed."""
    table = read_labels(path)
    missing = [str(i) for i in ids if str(i) not in table]
    if missing:
        raise ReidError(f"{path}: no label for {len(missing)} ids, e.g. {', '.join(missing[:3])}")
    return np.asarray([table[str(i)] for i in ids])


def write_outputs(out_dir: Path | str, distmat: np.ndarray, query_ids, gallery_ids,
                  name: str = "dist") -> list[Path]:
    """`<name>.npy` with its id files, and `<name>.csv` in the official format when ids are integers."""
    out_dir = Path(out_dir)
    written = [save_matrix(out_dir / f"{name}.npy", distmat, query_ids, gallery_ids)]
    if numeric_ids(query_ids) and numeric_ids(gallery_ids):
        written.append(write_submission(out_dir / f"{name}.csv", distmat, query_ids, gallery_ids))
    return written
