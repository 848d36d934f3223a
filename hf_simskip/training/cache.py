"""Stage 1 of the recipe: the embedding cache of the frozen backbone, built and read in bounded memory.

    table, info = build_embedding_cache(model, sentences)   # under default_cache_dir()
    table[0:256], table[[5, 3, 9]]   # float32 rows, in the order of `sentences`: x (n, d), or (n, 1 + L, d)

**What is cached.** The head's raw inputs (``SimSkipModel.head_inputs``: x and, for a layer-aware head, the
chosen pooled hidden layers, all from one backbone pass per batch), in float16 by default (``dtype``).

**Layout.** ``<cache_dir>/<name>-<key[:32]>/`` holds one Arrow IPC stream per encoding process,
``shard-00000-of-00002.arrow`` ... (``datasets.Dataset.from_file`` opens one), with the columns ``position``
(int64: the row's index in ``sentences``) and ``features`` (one flattened row), in the order encoded
(longest sentence first within a shard), and ``simskip_cache.json`` (key, rows, row shape, dtype, every
shard's rows and bytes, what was encoded how). `FeatureTable` reads the shards memory-mapped: only the rows
asked for are touched, and the only per-row state in RAM is one int64 per row (where it is stored).

**Build.** Streaming: each process encodes its contiguous share of ``sentences`` with
``SimSkipModel.iter_head_inputs`` and appends it, batch by batch, to its shard file; peak memory is one
batch and one write buffer (about ``_WRITE_BYTES``) whatever the corpus size, and nothing is gathered
between processes. Every batch is checked before it is written: NaN or Inf, or a value beyond float16's
range in a float16 cache, stops the build with a ValueError and leaves no cache (``dtype="float32"``,
``--cache_dtype float32``, holds such backbones). With ``mixed_precision`` "bf16"/"fp16" (or an
``accelerator`` that asks for it) the backbone runs under ``torch.autocast``.

**Atomic.** The shards are written into a hidden temporary folder ``.<name>-<key>.tmp-<id>``; the meta JSON
is written last and the folder is then renamed into place. A crash leaves at most a temporary folder, which
no run trusts (``clear_caches`` removes those left for an hour); a cache folder is trusted only with its
meta, and a shard whose size or rows differ from the meta (truncated, zeroed) is a one-line ValueError
naming the folder to delete. Two runs racing on one key both build, the first rename wins, the other run
drops its copy and reads the winner's.

**Key.** sha256 of everything that decides the rows: the backbone's weights (a fingerprint of the tensors
in memory, so a stage-0 fine-tune or a local folder retrained in place is a new key), id, revision, pooling,
max_seq_length, normalisation, layers and their pooling, the storage dtype, the autocast dtype, the
caller's ``extra_key`` (the recipe's stage-0 settings), the sentences in order, and for dropout views the
seed, the encode batch size and the number of encoding processes (a batch's dropout draws depend on them).

**Several processes, one machine or a shared disk.** Every process encodes one shard into the same
temporary folder; the main process waits for all, writes the meta and renames; then every process reads
the same memory-mapped cache. A failure on any process (bad input, overflow) is raised on every process
and removes the temporary folder; a process that dies makes the launcher stop the others, and the
temporary folder left behind is never trusted: the rerun builds the cache again, with the same rows.

**Several machines with their own disks.** Before building, the global main process writes a marker file in
``cache_dir``; after a barrier every process reports whether it sees it. When all do, the directory is
shared and the cache is built once, as above. When any does not, every node (the processes with the same
``process_index - local_process_index``) builds its own complete copy on its own disk, split among its
local processes, and its local main process finalises it; nodes whose copy exists skip the encoding. (A
shared directory seen late, e.g. through NFS attribute caching, only costs duplicate work: the copies race
to one rename as above.) Every process then reads its node's copy.

**Location.** ``default_cache_dir()``: ``$HF_SIMSKIP_CACHE``, else ``$HF_HOME/hf_simskip`` (HF_HOME as
huggingface_hub resolves it: ``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface``).
``list_caches`` and ``clear_caches`` list and remove caches there (``hf-simskip cache list|clear``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from ..files import write_json

logger = logging.getLogger(__name__)  # plain logging: usable without an Accelerator

CACHE_DTYPES = ("float16", "float32")
CACHE_FORMAT = 3  # 3: streamed Arrow shards + positions (2: one datasets folder in input order; 1: x only)
META_FILE = "simskip_cache.json"
MIXED_PRECISION = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.bfloat16}
STALE_TMP_SECONDS = 3600  # clear_caches removes temporary folders untouched for this long (a live build writes)
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504
_WRITE_BYTES = 8 << 20  # rows go to disk in Arrow record batches of about this size (bounded memory, few chunks)
_TMP = ".tmp-"
_CACHE_NAME = re.compile(r"^(?P<name>.+)-(?P<key>[0-9a-f]{32})$")


def default_cache_dir() -> Path:
    """``$HF_SIMSKIP_CACHE``, else ``$HF_HOME/hf_simskip`` with HF_HOME resolved as huggingface_hub does
    (``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface``). Read from the environment at each call."""
    own = os.environ.get("HF_SIMSKIP_CACHE")
    if own:
        return Path(os.path.expandvars(own)).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    hf_home = os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(hf_home)).expanduser() / "hf_simskip"


# resolved when this module is imported (a recipe's argument default); pass cache_dir=None to resolve per call
DEFAULT_CACHE_DIR = str(default_cache_dir())


# --- reading --------------------------------------------------------------------------------------
class FeatureTable:
    """A cache folder's rows, memory-mapped: ``len(table)``, ``table.shape`` and ``table[index]`` (an int, a
    slice, or a list/array/tensor of row numbers) -> float32 tensor, as a tensor would answer. Rows are in the
    order of the sentences the cache was built from; the shards' Arrow buffers are read in place (zero copy),
    so only the rows asked for are touched. ``path``, ``dtype`` (as stored) and ``meta`` describe the cache."""

    def __init__(self, path):
        self.path = Path(path)
        self.meta = _read_meta(self.path)
        n, row = int(self.meta["rows"]), tuple(int(s) for s in self.meta["shape"][1:])
        self.shape = (n, *row)
        self.dtype = self.meta["dtype"]
        self._stored = np.dtype(self.dtype)
        self._row_bytes = math.prod(row) * self._stored.itemsize
        # every shard file as bytes, and as overlapping rows of _row_bytes starting at each byte (a view): a
        # row anywhere in the file is then one fancy index, so a batch is gathered without a loop over chunks
        self._files, self._rows_at = [], []
        chunk_file, chunk_offset, sizes = [], [], []  # per record batch: its shard, its rows' byte offset
        where = np.full(n, -1, dtype=np.int64)  # input row -> storage row
        stored = 0
        for shard in self.meta["shards"]:
            table, data = _open_shard(self.path, shard, row, self.dtype)
            whole = np.frombuffer(data, dtype=np.uint8)
            for feats, pos in zip(table.column("features").chunks, table.column("position").chunks):
                if not len(feats):
                    continue
                positions = pos.to_numpy(zero_copy_only=True)
                if positions.min() < 0 or positions.max() >= n:
                    raise _damaged(self.path, f"{shard['file']} holds row positions outside 0..{n - 1}")
                where[positions] = np.arange(stored, stored + len(feats))
                values = feats.flatten().to_numpy(zero_copy_only=True)
                offset = values.ctypes.data - whole.ctypes.data
                if offset < 0 or offset + values.nbytes > whole.nbytes or values.nbytes != len(feats) * self._row_bytes:
                    raise _damaged(self.path, f"{shard['file']} has a record batch outside the file")
                chunk_file.append(len(self._files))
                chunk_offset.append(offset)
                sizes.append(len(feats))
                stored += len(feats)
            self._files.append(whole)
            shape = (max(len(whole) - self._row_bytes + 1, 0), self._row_bytes)
            self._rows_at.append(np.lib.stride_tricks.as_strided(whole, shape, (1, 1), writeable=False))
        if stored != n or (where < 0).any():
            raise _damaged(self.path, f"the shards hold {stored} rows for {n} positions, not each row once")
        self._where = where
        self._starts = np.cumsum([0] + sizes)
        self._chunk_file = np.asarray(chunk_file, dtype=np.int64)
        self._chunk_offset = np.asarray(chunk_offset, dtype=np.int64)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            return self[[int(index)]][0]
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        index = np.asarray(index)
        if index.size and index.dtype.kind not in "iu":
            raise TypeError(f"rows are indexed by ints, slices or integer arrays, got dtype {index.dtype}")
        index = index.astype(np.int64, copy=False)
        if index.size and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"row index out of range for a table of {len(self)} rows")
        rows = self._where[np.where(index < 0, index + len(self), index).reshape(-1)]  # storage rows
        chunk = np.searchsorted(self._starts, rows, side="right") - 1  # the record batch of every row
        at = self._chunk_offset[chunk] + (rows - self._starts[chunk]) * self._row_bytes  # byte offset in its file
        raw = np.empty((len(rows), self._row_bytes), dtype=np.uint8)
        files = self._chunk_file[chunk]
        for f in np.unique(files):  # one gather per shard file
            mine = files == f
            raw[mine] = self._rows_at[f][at[mine]]
        out = raw.view(self._stored).astype(np.float32).reshape(*index.shape, *self.shape[1:])
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        return f"FeatureTable(shape={self.shape}, dtype={self.dtype}, path={str(self.path)!r})"


def load_feature_table(path) -> FeatureTable:
    """A cache folder written by build_embedding_cache, memory-mapped."""
    return FeatureTable(path)


def _damaged(path: Path, why: str) -> ValueError:
    return ValueError(f"embedding cache {path} is damaged ({why}): delete the folder {path} and run again")


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _damaged(path, f"no {META_FILE}") from None
    except (OSError, ValueError) as err:
        raise _damaged(path, f"{META_FILE} unreadable: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise _damaged(path, f"format {got}, expected {CACHE_FORMAT}")
    try:
        fields = (int(meta["rows"]), [int(s) for s in meta["shape"]], CACHE_DTYPES.index(meta["dtype"]))
        shards = [(str(s["file"]), int(s["rows"]), int(s["bytes"])) for s in meta["shards"]]
    except (KeyError, TypeError, ValueError) as err:
        raise _damaged(
            path, f"{META_FILE} has no valid rows, shape, dtype and shards: {type(err).__name__} {err}"
        ) from None
    if fields[1][0] != fields[0] or sum(rows for _, rows, _ in shards) != fields[0]:
        raise _damaged(path, f"{META_FILE} counts {fields[0]} rows, its shape and shards do not")
    return meta


def _open_shard(path: Path, shard: dict, row: tuple[int, ...], dtype: str) -> tuple[pa.Table, pa.Buffer]:
    """One shard's Arrow stream, memory-mapped, and the mapped bytes its buffers point into; its size, rows and
    schema checked against the meta."""
    file = path / shard["file"]
    try:
        size = file.stat().st_size
        if size != shard["bytes"]:
            raise _damaged(path, f"{shard['file']} has {size} bytes, expected {shard['bytes']}")
        data = pa.memory_map(str(file), "r").read_buffer()  # zero copy: the mapped file
        table = pa.ipc.open_stream(data).read_all()  # its buffers are slices of data
    except FileNotFoundError:
        raise _damaged(path, f"{shard['file']} is missing") from None
    except (pa.ArrowException, OSError) as err:
        raise _damaged(path, f"{shard['file']} unreadable: {str(err).splitlines()[0]}") from None
    want = pa.list_(pa.from_numpy_dtype(np.dtype(dtype)), math.prod(row))
    if table.num_rows != shard["rows"] or table.schema.field("features").type != want:
        raise _damaged(path, f"{shard['file']} holds {table.num_rows} rows of {table.schema.field('features').type}")
    return table, data


# --- the key ----------------------------------------------------------------------------------------
def weights_fingerprint(module) -> str:
    """sha256 of a module's state_dict (names, dtypes, shapes and bytes of every tensor), in memory: the
    identity of the weights, whatever file or fine-tune they came from (on 2 CPU cores: 0.2 s for
    all-MiniLM-L6-v2, 0.8 s for a BERT-base)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def sentences_fingerprint(sentences, chunk: int = 65536) -> str:
    """sha256 of the sentences in order (rows follow that order, so it is part of what a cache holds): each
    block of ``chunk`` sentences as its UTF-8 lengths (int64) and then its bytes, so no two lists collide."""
    digest = hashlib.sha256()
    for start in range(0, len(sentences), chunk):
        part = sentences[start : start + chunk]
        try:
            data = [s.encode("utf-8", "surrogatepass") for s in part]
        except AttributeError:
            i, bad = next((start + k, s) for k, s in enumerate(part) if not isinstance(s, str))
            raise TypeError(f"sentences[{i}] must be a str, got {type(bad).__name__}: {bad!r:.80}") from None
        digest.update(np.fromiter(map(len, data), dtype=np.int64, count=len(data)).tobytes())
        digest.update(b"".join(data))
    return digest.hexdigest()


def cache_key(model, fingerprint: str, extra: dict | None = None, weights: str | None = None) -> str:
    """sha256 of what decides the cached rows: the backbone (its weights' fingerprint, ``weights``, computed
    here when not given), its settings, the sentences' ``fingerprint`` and ``extra`` (stage-0 settings, dtype...)."""
    c = model.config
    if weights is None and model.encoder is not None:
        weights = weights_fingerprint(model.encoder)
    parts = {
        "backbone": c.encoder_name_or_path,
        "revision": c.encoder_revision,
        "weights": weights,
        "pooling": c.pooling,
        "max_length": c.max_seq_length,
        "encoder_normalize": c.encoder_normalize,
        "embedding_dim": c.embedding_dim,
        "layers": c.layers,
        "layer_pooling": c.layer_pooling if c.layers else None,
        "format": CACHE_FORMAT,
        "corpus": fingerprint,
        "extra": extra or {},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# --- encoding -----------------------------------------------------------------------------------------
def _autocast_dtype(mixed_precision, accelerator) -> torch.dtype | None:
    """The autocast dtype of the backbone pass: the explicit argument, else the accelerator's setting."""
    if mixed_precision is None:
        mixed_precision = getattr(accelerator, "mixed_precision", None) or "no"
    mixed_precision = str(getattr(mixed_precision, "value", mixed_precision))
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {list(MIXED_PRECISION)} or None, got {mixed_precision!r}")
    return MIXED_PRECISION[mixed_precision]


@contextlib.contextmanager
def _encoding(model, dropout: bool, seed: int | None, autocast: torch.dtype | None):
    """eval mode (with ``dropout`` the backbone's dropout on, seeded with ``seed`` if given), no gradients,
    autocast if asked; then the caller's mode."""
    if dropout and model.encoder is None:
        raise ValueError("dropout views need a backbone; this SimSkipModel is head-only")
    was_training = model.training
    model.eval()
    if dropout:
        model.encoder.train()  # dropout on, even for a frozen backbone
        if seed is not None:
            torch.manual_seed(seed)
    amp = torch.autocast(model.device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    try:
        with torch.no_grad(), amp:
            yield
    finally:
        model.train(was_training)


def embed_sentences(
    model,
    sentences: list[str],
    batch_size: int = 64,
    device=None,
    show_progress_bar: bool = False,
    dropout: bool = False,
    seed: int | None = None,
    mixed_precision: str | None = None,
) -> torch.Tensor:
    """The head's raw inputs (``model.head_inputs``: x (n, d), or (n, 1 + L, d) with layers) in float32 on the
    CPU, all in memory (for small inputs; a corpus goes through `build_embedding_cache`).

    dropout=True keeps the backbone's dropout active (SimCSE's augmentation): each call gives a
    different "dropout view" of every sentence (reproducible with ``seed``); no gradients either way.
    ``mixed_precision`` "bf16"/"fp16": the backbone runs under autocast.
    """
    with _encoding(model, dropout, seed, _autocast_dtype(mixed_precision, None)):
        return model.map_sentences(sentences, lambda x: x.float().cpu(), batch_size, device, show_progress_bar)


class _ShardWriter:
    """Rows of one shard appended to an Arrow IPC stream through a fixed write buffer (``capacity`` rows)."""

    def __init__(self, file: Path, row: tuple[int, ...], dtype: str, capacity: int):
        self.file, self.width, self.rows = file, math.prod(row), 0
        value = pa.from_numpy_dtype(np.dtype(dtype))
        self.schema = pa.schema([("position", pa.int64()), ("features", pa.list_(value, self.width))])
        self._pos = np.empty(capacity, dtype=np.int64)
        self._buf = np.empty((capacity, self.width), dtype=dtype)  # (capacity, prod(row))
        self._k = 0
        self._fh = open(file, "wb")  # noqa: SIM115 (closed by close/abort)
        self._writer = pa.ipc.new_stream(self._fh, self.schema)

    def write(self, positions: np.ndarray, rows: np.ndarray) -> None:
        """positions (b,) int64 and rows (b, prod(row)) float32."""
        done = 0
        while done < len(rows):
            take = min(len(self._buf) - self._k, len(rows) - done)
            self._pos[self._k : self._k + take] = positions[done : done + take]
            self._buf[self._k : self._k + take] = rows[done : done + take]  # cast to the stored dtype
            self._k, done = self._k + take, done + take
            if self._k == len(self._buf):
                self._flush()

    def _flush(self) -> None:
        if self._k:
            feats = pa.FixedSizeListArray.from_arrays(pa.array(self._buf[: self._k].reshape(-1)), self.width)
            self._writer.write_batch(pa.record_batch([pa.array(self._pos[: self._k]), feats], schema=self.schema))
            self.rows, self._k = self.rows + self._k, 0

    def close(self) -> dict:
        self._flush()
        self._writer.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return {"file": self.file.name, "rows": self.rows, "bytes": self.file.stat().st_size}

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self._fh.close()


def _check_rows(rows: np.ndarray, positions: np.ndarray, dtype: str, name: str) -> None:
    """Refuse what the cache cannot hold faithfully: NaN/Inf, or values beyond float16's range."""
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"the backbone returned NaN or Inf for {int((~finite).sum())} sentence(s) of {name!r} (first: "
            f"sentence {int(positions[~finite][0])}); no cache was written"
        )
    if dtype == "float16":
        big = float(np.abs(rows).max(initial=0.0))
        if big > FLOAT16_MAX:
            raise ValueError(
                f"the backbone's outputs reach {big:.4g}, beyond float16's largest value {FLOAT16_MAX:.0f}: a float16 "
                f"cache of {name!r} would hold inf; rebuild with --cache_dtype float32 (dtype='float32'); "
                "no cache was written"
            )


@dataclass
class _ShardJob:
    """What one process writes: sentences[lo:hi] as shard ``shard`` of ``shards`` into ``folder``."""

    lo: int
    hi: int
    folder: Path
    shard: int
    shards: int
    batch_size: int
    dtype: str
    dropout_seed: int | None
    autocast: object
    name: str
    bar: bool


def _write_shard(model, sentences, job: _ShardJob) -> dict:
    """Encode sentences[job.lo:job.hi] batch by batch into its shard file; returns the shard's meta entry."""
    row = tuple(model.head.input_shape)
    capacity = max(1, min(job.hi - job.lo, max(job.batch_size, _WRITE_BYTES // (math.prod(row) * 4))))
    writer = _ShardWriter(job.folder / f"shard-{job.shard:05d}-of-{job.shards:05d}.arrow", row, job.dtype, capacity)
    seed = None if job.dropout_seed is None else job.dropout_seed + job.shard
    try:
        with _encoding(model, seed is not None, seed, job.autocast):
            batches = model.iter_head_inputs(sentences[job.lo : job.hi], job.batch_size, None, job.bar)
            for positions, inputs in batches:
                if tuple(inputs.shape[1:]) != row:
                    raise ValueError(f"the backbone gave rows of shape {tuple(inputs.shape[1:])}, the head reads {row}")
                rows = inputs.float().cpu().numpy().reshape(len(positions), -1)  # (b, prod(row))
                positions = np.asarray(positions, dtype=np.int64) + job.lo
                _check_rows(rows, positions, job.dtype, job.name)
                writer.write(positions, rows)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


# --- processes ----------------------------------------------------------------------------------------
def _world(accelerator) -> tuple[int, int]:
    if accelerator is None:
        return 0, 1
    return accelerator.process_index, accelerator.num_processes


def _from_main(accelerator, value):
    """The main process's ``value`` on every process."""
    if _world(accelerator)[1] == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value if accelerator.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _gather(accelerator, value) -> list:
    """Every process's ``value``, in process order."""
    if _world(accelerator)[1] == 1:
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])


def _groups(seen: list[tuple[int, int, bool]]) -> dict[int, list[int]]:
    """rank -> the ranks that build one copy together, from every process's (rank, local rank, sees the main
    process's marker): all ranks when all see it (a shared disk), else the ranks of each node."""
    if all(s for _, _, s in seen):
        everyone = sorted(r for r, _, _ in seen)
        return {r: everyone for r in everyone}
    nodes: dict[int, list[int]] = {}
    for rank, local, _ in seen:
        nodes.setdefault(rank - local, []).append(rank)
    return {r: sorted(members) for members in nodes.values() for r in members}


def _plan(accelerator, cache_dir: Path, token: str) -> list[int]:
    """The ranks (in shard order) that build this process's copy of the cache; see the module docstring."""
    rank, world = _world(accelerator)
    if world == 1:
        return [0]
    marker = cache_dir / f".probe{_TMP}{token}"
    if accelerator.is_main_process:
        marker.write_text("written by the main process to find out which processes share this folder\n")
    accelerator.wait_for_everyone()
    sees = marker.exists() or marker.name in os.listdir(cache_dir)  # listdir: refresh a network file system's view
    seen = _gather(accelerator, (rank, accelerator.local_process_index, sees))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        marker.unlink(missing_ok=True)
    groups = _groups(seen)
    if len(groups[rank]) < world and accelerator.is_main_process:
        logger.info("%s is not shared by all processes: every node builds its own copy of the cache", cache_dir)
    return groups[rank]


def _finalise(tmp: Path, path: Path, meta: dict) -> None:
    """Meta last, then the rename; another run's finished copy at ``path`` is kept and ours dropped."""
    write_json(tmp / META_FILE, meta)
    try:
        os.replace(tmp, path)
    except OSError:
        if not (path / META_FILE).is_file():
            raise
        logger.info("another run finished the cache %s first: using it", path)
        shutil.rmtree(tmp, ignore_errors=True)


def _info(accelerator, msg, *args):
    if accelerator is None or accelerator.is_main_process:
        logger.info(msg, *args)


def build_embedding_cache(
    model,
    sentences: list[str],
    cache_dir=None,
    accelerator=None,
    batch_size: int = 64,
    extra_key: dict | None = None,
    name: str = "corpus",
    dropout_seed: int | None = None,
    dtype: str = "float16",
    mixed_precision: str | None = None,
):
    """The head's raw inputs for ``sentences`` (x, or x and the pooled layers), encoded once, streamed to an
    Arrow cache under ``cache_dir`` (None: `default_cache_dir()`) in ``dtype`` and read memory-mapped.

    ``accelerator``: with several processes each encodes a contiguous shard (see the module docstring for
    shared and per-node disks); its ``mixed_precision`` applies unless ``mixed_precision`` ("no", "bf16",
    "fp16") is given. ``extra_key``: what else decides the backbone's outputs (stage-0 settings).
    ``dropout_seed``: cache one dropout view per sentence instead (the backbone's dropout on).
    Returns (FeatureTable, info) with info = {"path", "key", "reused"}."""
    if not isinstance(sentences, (list, tuple)):
        raise TypeError(f"sentences must be a list of str, got {type(sentences).__name__}")
    if not sentences:
        raise ValueError(f"cannot build an embedding cache for an empty list of sentences ({name})")
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"cache dtype must be one of {list(CACHE_DTYPES)}, got {dtype!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(name, str) or not name or "/" in name or os.sep in name or name.startswith("."):
        raise ValueError(f"name must be a non-empty file name (no '/', not starting with '.'), got {name!r}")
    if model.encoder is None:
        raise ValueError("an embedding cache needs a backbone; this SimSkipModel is head-only")
    autocast = _autocast_dtype(mixed_precision, accelerator)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    rank, world = _world(accelerator)
    corpus = sentences_fingerprint(sentences)  # on every process: it also checks that every sentence is a str
    token = _from_main(accelerator, uuid.uuid4().hex[:12])
    group = _plan(accelerator, cache_dir, token)
    weights, main_corpus = _from_main(accelerator, (weights_fingerprint(model.encoder), corpus) if rank == 0 else None)
    extra = {**(extra_key or {}), "dtype": dtype, "autocast": str(autocast) if autocast else None}
    if dropout_seed is not None:  # a batch's dropout draws depend on its rows and on the process's seed
        extra.update(dropout_seed=dropout_seed, batch_size=batch_size, processes=len(group))
    key = cache_key(model, main_corpus, extra, weights)
    path = cache_dir / f"{name}-{key[:32]}"
    info = {"path": str(path), "key": key, "reused": True}

    # 1. who has it already (a damaged copy, or other sentences than the main process's, fail every process)
    have, status, existing = path.exists(), None, None
    if corpus != main_corpus:
        status = f"process {rank} was given other sentences than the main process for the cache {name!r}"
    elif have:
        try:
            existing = FeatureTable(path)  # checks the meta and every shard's size, rows and positions
        except ValueError as err:
            status = str(err)
    found = _gather(accelerator, (have, status))
    errors = [s for _, s in found if s]
    if errors:
        raise ValueError(errors[0])
    if all(h for h, _ in found):
        _info(accelerator, "reusing the embedding cache %s %s: no encoding", path, existing.shape)
        return existing, info
    builds = not all(found[r][0] for r in group)
    info["reused"] = not builds

    # 2. encode this process's shard of its group's copy
    shard, shards, leader = group.index(rank), len(group), group[0]
    tmp = cache_dir / f".{path.name}{_TMP}{token}-{leader}"
    n = len(sentences)
    lo, hi = shard * n // shards, (shard + 1) * n // shards
    entry, failure = None, None
    if builds:
        _info(accelerator, "encoding %d sentences with the frozen backbone into %s (%d shards)", n, path, shards)
        tmp.mkdir(parents=True, exist_ok=True)
        bar = accelerator is None or accelerator.is_local_main_process
        job = _ShardJob(lo, hi, tmp, shard, shards, batch_size, dtype, dropout_seed, autocast, name, bar)
        try:
            entry = _write_shard(model, sentences, job)
        except BaseException as err:
            if world == 1:
                shutil.rmtree(tmp, ignore_errors=True)
            if world == 1 or not isinstance(err, Exception):
                raise
            failure = err  # raised on every process below, once all have stopped writing
    results = _gather(accelerator, (entry, f"{type(failure).__name__}: {failure}" if failure else None))

    # 3. any failure: no cache; else the group's first process writes the meta and renames
    failed = [(r, msg) for r, (_, msg) in enumerate(results) if msg]
    if failed:
        if builds and rank == leader:
            shutil.rmtree(tmp, ignore_errors=True)
        if failure is not None:
            raise failure
        r, msg = failed[0]
        raise ValueError(f"building the embedding cache {path} failed on process {r}: {msg.splitlines()[0]}")
    if builds and rank == leader:
        c = model.config
        meta = {
            "format": CACHE_FORMAT,
            "key": key,
            "name": name,
            "rows": n,
            "shape": [n, *model.head.input_shape],
            "dtype": dtype,
            "shards": [results[r][0] for r in group],
            "backbone": c.encoder_name_or_path,
            "revision": c.encoder_revision,
            "weights_sha256": weights,
            "pooling": c.pooling,
            "layers": c.layers,
            "extra": extra,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _finalise(tmp, path, meta)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return FeatureTable(path), info


# --- the cache folder -----------------------------------------------------------------------------------
def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _newest_mtime(folder: Path) -> float:
    times = [folder.stat().st_mtime] + [f.stat().st_mtime for f in folder.rglob("*")]
    return max(times)


def list_caches(cache_dir=None) -> list[dict]:
    """The caches under ``cache_dir`` (None: `default_cache_dir()`): one dict each with path, name, key, rows,
    shape, dtype, size_bytes, created (ISO time), format and complete (False: no readable meta, delete it)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir()):
        match = _CACHE_NAME.match(folder.name)
        if not folder.is_dir() or folder.name.startswith(".") or match is None:
            continue
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = None
        if not isinstance(meta, dict):
            if not any(folder.glob("*.arrow")):
                continue  # not a cache of ours
            meta = {}
        created = meta.get("created") or datetime.fromtimestamp(folder.stat().st_mtime, timezone.utc).isoformat(
            timespec="seconds"
        )
        out.append(
            {
                "path": str(folder),
                "name": meta.get("name", match["name"]),
                "key": meta.get("key", match["key"]),
                "rows": meta.get("rows"),
                "shape": meta.get("shape"),
                "dtype": meta.get("dtype", (meta.get("extra") or {}).get("dtype")),
                "size_bytes": _size(folder),
                "created": created,
                "format": meta.get("format", 2 if meta else None),
                "complete": bool(meta),
            }
        )
    return out


def _matches(key: str, keys) -> bool:
    return keys is None or any(key.startswith(k) or k.startswith(key) for k in keys)


def clear_caches(cache_dir=None, keys=None) -> list[str]:
    """Remove whole cache folders under ``cache_dir`` (None: `default_cache_dir()`): all of them, or those
    whose key starts with one of ``keys`` (full keys or prefixes, as `list_caches` shows them), and the
    temporary folders of interrupted builds (of those keys) untouched for ``STALE_TMP_SECONDS`` (a live build
    writes to its folder every batch). Returns the paths removed."""
    if isinstance(keys, str):
        keys = [keys]
    if keys is not None:
        keys = list(keys)
        bad = [k for k in keys if not isinstance(k, str) or not re.fullmatch(r"[0-9a-f]{4,64}", k)]
        if bad:
            raise ValueError(f"keys must be cache keys or prefixes of at least 4 hex digits, got {bad[0]!r}")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    removed = []
    for entry in list_caches(root):
        if _matches(entry["key"], keys):
            shutil.rmtree(entry["path"], ignore_errors=True)
            removed.append(entry["path"])
    if root.is_dir():
        now = time.time()
        for tmp in sorted(root.glob(f".*{_TMP}*")):
            match = _CACHE_NAME.match(tmp.name[1:].split(_TMP)[0])
            if keys is not None and (match is None or not _matches(match["key"], keys)):
                continue
            try:
                stale = now - _newest_mtime(tmp) > STALE_TMP_SECONDS
            except OSError:  # removed meanwhile (its build finished or failed)
                continue
            if stale:
                shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
                removed.append(str(tmp))
    return removed


__all__ = [
    "cache_key",
    "weights_fingerprint",
    "sentences_fingerprint",
    "embed_sentences",
    "build_embedding_cache",
    "load_feature_table",
    "FeatureTable",
    "default_cache_dir",
    "list_caches",
    "clear_caches",
    "DEFAULT_CACHE_DIR",
    "CACHE_DTYPES",
]
