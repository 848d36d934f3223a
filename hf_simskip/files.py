"""Files on disk, written atomically: JSON/text records, whole folders, and embedding files.

Every writer goes through :func:`atomic_path` (a temporary name beside the target, then ``os.replace``)
or :func:`replace_dir`, so an interrupted run never leaves a truncated file or a half-written folder
where a good one was. Embedding files for ``hf-simskip refine`` and ``embed``: (n, d) arrays, or (n, 1 + L, d)
stacks, in .npy/.npz/.parquet; text files of one sentence a line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import zipfile
from pathlib import Path

import numpy as np

FORMATS = (".npy", ".npz", ".parquet")


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path beside ``path`` (same folder, so the rename is atomic; ``suffix`` keeps an
    extension that writers look at); on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path, text: str) -> Path:
    """``text`` to ``path`` (UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path, obj) -> Path:
    """``obj`` as indented JSON, atomically (non-JSON values such as paths are written as strings)."""
    return write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def replace_dir(tmp, path) -> Path:
    """Move the finished folder ``tmp`` to ``path``. A folder already at ``path`` is first renamed aside
    and deleted only after ``tmp`` is in place, so a crash never leaves ``path`` half written."""
    tmp, path = Path(tmp), Path(path)
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def temp_dir_beside(path) -> Path:
    """A new empty folder next to ``path`` (same file system), to be filled and then ``replace_dir``-ed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    return tmp


def _suffix(path: Path, role: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{role} {str(path)!r}: expected a {', '.join(FORMATS)} file, got suffix {suffix!r}")
    return suffix


def _as_matrix(array, where: str) -> np.ndarray:
    """float32 embeddings: (n, d), or (n, L, d) stacked layer embeddings for a layer-aware head."""
    array = np.asarray(array)
    if array.dtype == object:
        try:
            array = np.stack(
                [np.asarray(row.tolist() if hasattr(row, "tolist") else row, dtype=np.float64) for row in array]
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: rows are not equal-length numeric vectors ({err})") from err
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{where}: expected real numbers, got dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise ValueError(f"{where}: expected a 2-D (n, d) array (or (n, L, d) stacked layers), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{where}: holds no rows (shape {array.shape}); expected at least one embedding")
    if array.dtype.itemsize > 4 and np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        big = np.abs(np.where(finite, array, 0)).max(initial=0)
        if big > np.finfo(np.float32).max:
            raise ValueError(
                f"{where}: values up to {big:.3g} do not fit in float32 (largest {np.finfo(np.float32).max:.3g}); "
                "the refiner computes in float32: rescale the embeddings"
            )
    return array.astype(np.float32, copy=False)


def _open(loader, path: Path):
    """Run ``loader``; a file that is not what its suffix says becomes a ValueError naming it."""
    try:
        return loader()
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"input file {str(path)!r} could not be read as {path.suffix.lower()} ({err})") from err


def _pick(path: Path, available: list[str], wanted: str | None, what: str, flag: str) -> str:
    """The array/column to read: the only one there, or the one named with ``flag``."""
    if wanted is None:
        if len(available) != 1:
            raise ValueError(f"{str(path)!r} holds {what}s {available}: pass {flag} to choose one")
        return available[0]
    if wanted not in available:
        raise ValueError(f"{str(path)!r} has no {what} {wanted!r}; it holds {available}")
    return wanted


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    with _open(lambda: np.load(path, allow_pickle=False), path) as data:
        key = _pick(path, list(data.files), key, "array", "--key")
        return _as_matrix(data[key], f"{path}[{key}]")


def _read_parquet(path: Path, column: str | None):
    import pyarrow.parquet as pq

    table = _open(lambda: pq.read_table(path), path)
    column = _pick(path, table.column_names, column, "column", "--column")
    values = table.column(column).to_pylist()
    if not values:
        raise ValueError(f"{path}[{column}]: the parquet file holds no rows; expected at least one embedding")
    if any(v is None for v in values):
        raise ValueError(f"{path}[{column}]: {sum(v is None for v in values)} row(s) are null")
    rows = np.empty(len(values), dtype=object)
    rows[:] = values
    return _as_matrix(rows, f"{path}[{column}]"), table


def read_embeddings(path, key: str | None = None, column: str | None = None):
    """(matrix (n, d) float32, parquet table or None) from ``path``."""
    path = Path(path)
    suffix = _suffix(path, "input")
    if not path.is_file():
        raise FileNotFoundError(f"input file {str(path)!r} does not exist")
    if suffix == ".npy":
        return _as_matrix(_open(lambda: np.load(path, allow_pickle=False), path), str(path)), None
    if suffix == ".npz":
        return _read_npz(path, key), None
    return _read_parquet(path, column)


def read_sentences(path) -> list[str]:
    """One sentence a line from a UTF-8 text file (a byte-order mark and Windows line ends are fine).
    Row i of anything computed from it is line i, so an empty line is refused rather than skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {str(path)!r} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: line {line} is not valid UTF-8 (byte {data[err.start]:#04x}): save the file as UTF-8"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    sentences = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not sentences:
        raise ValueError(f"{path}: holds no sentences; expected one sentence a line")
    blank = [i + 1 for i, s in enumerate(sentences) if not s.strip()]
    if blank:
        raise ValueError(
            f"{path}: line {blank[0]} is empty ({len(blank)} empty line(s)); expected one sentence a line "
            "(row i of the output is line i): remove the empty lines"
        )
    return sentences


def _arrow_rows(array: np.ndarray):
    """(n, d) or (n, L, d) -> n fixed-size list rows (nested for 3-D), without a Python loop over rows."""
    import pyarrow as pa

    values = pa.array(np.ascontiguousarray(array).reshape(-1))
    for size in reversed(array.shape[1:]):  # innermost dimension first
        values = pa.FixedSizeListArray.from_arrays(values, size)
    return values


def _write_npz(path: Path, array: np.ndarray, name: str, keep_from) -> None:
    """``name`` as an .npz (what np.savez writes), after the other arrays of the .npz ``keep_from``, copied
    member by member as stored (compressed or not), never loaded whole."""
    with zipfile.ZipFile(path, "w", allowZip64=True) as out:
        if keep_from is not None:
            with zipfile.ZipFile(keep_from) as src:
                for info in src.infolist():
                    if info.filename == f"{name}.npy":
                        continue  # replaced below
                    kept = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                    kept.compress_type = info.compress_type
                    with src.open(info) as fin, out.open(kept, "w", force_zip64=True) as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)
        with out.open(f"{name}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, np.asanyarray(array), allow_pickle=False)


def _write(path: Path, suffix: str, array: np.ndarray, name: str, table, keep_from=None) -> None:
    if suffix == ".npy":
        with open(path, "wb") as fh:
            np.save(fh, array)
    elif suffix == ".npz":
        _write_npz(path, array, name, keep_from)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        values = _arrow_rows(array)
        if table is not None and len(table) == len(array):  # keep the input's other columns, aligned by row
            table = table.drop_columns([name]) if name in table.column_names else table
            table = table.append_column(name, values)
        else:
            table = pa.table({name: values})
        pq.write_table(table, path)


def _check_finite(path: Path, array: np.ndarray) -> None:
    if array.size == 0:
        return
    bad = ~np.isfinite(array).reshape(len(array), -1).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{path}: refusing to write {int(bad.sum())} row(s) holding NaN or Inf (first: row {int(bad.argmax())}); "
            "nothing was written: check the input's scale and the model's weights"
        )


def write_embeddings(path, array: np.ndarray, name: str = "refined", table=None, keep_from=None) -> Path:
    """``array`` (n, d) or (n, L, d), finite, to ``path`` (.npy/.npz/.parquet): written to a temporary file
    beside ``path``, then ``os.replace``, so an existing file is never truncated. ``name``: the array
    (.npz) or column (.parquet) name; ``table``: a parquet input whose other columns are kept;
    ``keep_from``: an .npz whose other arrays are kept (``path`` itself when it is replaced in place)."""
    path = Path(path)
    suffix = _suffix(path, "output")
    if path.parent and not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")
    array = np.asarray(array)
    _check_finite(path, array)
    if keep_from is not None and suffix != ".npz":
        raise ValueError(f"keep_from applies to .npz outputs, got {str(path)!r}")
    try:
        with atomic_path(path) as tmp:
            _write(tmp, suffix, array, name, table, keep_from)
    except OSError as err:  # a full disk, a file-size limit, a vanished folder: one line that names the file
        raise OSError(
            f"could not write {path} ({err.strerror or err}); the file there, if any, is unchanged: "
            "free some disk space or write elsewhere"
        ) from err
    return path


__all__ = [
    "atomic_path",
    "write_text",
    "write_json",
    "replace_dir",
    "temp_dir_beside",
    "read_embeddings",
    "read_sentences",
    "write_embeddings",
    "FORMATS",
]
