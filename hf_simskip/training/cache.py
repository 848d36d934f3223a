"""Stage 1 of the recipe: the fingerprinted embedding cache of the frozen backbone.

    table, info = build_embedding_cache(model, sentences, "~/.cache/hf_simskip")
    table[0:256]        # float32 rows: x (n, d), or the stacks (n, 1 + L, d) of a layer-aware head

The cache holds the head's raw inputs (``SimSkipModel.head_inputs``: x and, for a layer-aware head, the chosen
pooled hidden layers, all from one forward pass per batch) as a ``datasets`` Arrow folder in float16,
written atomically and read memory-mapped (``FeatureTable``), never loaded whole into RAM. The cache key
is a sha256 of everything that changes those inputs (backbone id, revision, pooling, max_seq_length,
encoder_normalize, layers and their pooling, any stage-0 fine-tuning, the storage dtype) and of the
corpus fingerprint, so a second run with the same key only reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from pyarrow import types as pa_types

from ..files import temp_dir_beside, write_json
from .corpus import corpus_fingerprint

logger = logging.getLogger(__name__)  # plain logging: usable without an Accelerator
DEFAULT_CACHE_DIR = "~/.cache/hf_simskip"
CACHE_DTYPES = ("float16", "float32")
CACHE_FORMAT = 2  # 2: the head's raw inputs in a "features" column (1: x only, float32, "embedding")


class FeatureTable:
    """The rows of an embedding cache, memory-mapped: ``len(table)``, ``table.shape`` and
    ``table[index]`` (an int, a slice, or a list/array/tensor of row numbers) -> float32 tensor, as a
    tensor would answer. The Arrow buffers are read in place as numpy arrays (zero copy), so only the
    rows asked for are touched."""

    def __init__(self, dataset):
        self.dataset = dataset
        table = dataset.data.table if hasattr(dataset.data, "table") else dataset.data
        self._chunks = [_as_numpy(chunk) for chunk in table.column("features").chunks if len(chunk)]
        sizes = [len(c) for c in self._chunks]
        self._starts = np.cumsum([0] + sizes)
        row = self._chunks[0].shape[1:] if self._chunks else ()
        self.shape = (int(self._starts[-1]), *row)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, (int, np.integer)):
            return self[[int(index)]][0]
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index.tolist() if isinstance(index, torch.Tensor) else index, dtype=np.int64)
        if index.size and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"row index out of range for a table of {len(self)} rows")
        index = np.where(index < 0, index + len(self), index)
        out = np.empty((len(index), *self.shape[1:]), dtype=np.float32)
        which = np.searchsorted(self._starts, index, side="right") - 1  # the chunk of every row
        for c in np.unique(which):
            rows = which == c
            out[rows] = self._chunks[c][index[rows] - self._starts[c]]
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        return f"FeatureTable(shape={self.shape}, chunks={len(self._chunks)})"


def _as_numpy(chunk) -> np.ndarray:
    """A zero-copy numpy view of one Arrow chunk of fixed-shape rows (datasets' Array2D or a fixed-size list)."""
    if hasattr(chunk, "to_numpy") and not pa_types.is_fixed_size_list(chunk.type):
        return chunk.to_numpy(zero_copy_only=True)  # datasets' Array2D extension array: (rows, a, b)
    width = chunk.type.list_size
    values = chunk.flatten().to_numpy(zero_copy_only=True)
    return values.reshape(len(chunk), width)


def cache_key(model, fingerprint: str, extra: dict | None = None) -> str:
    """sha256 of what changes a raw embedding x and of the corpus (``extra``: e.g. stage-0 settings)."""
    c = model.config
    parts = {
        "backbone": c.encoder_name_or_path,
        "revision": c.encoder_revision,
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


@torch.no_grad()
def embed_sentences(
    model,
    sentences: list[str],
    batch_size: int = 64,
    device=None,
    show_progress_bar: bool = False,
    dropout: bool = False,
    seed: int | None = None,
) -> torch.Tensor:
    """The head's raw inputs (``model.head_inputs``: x (n, d), or (n, 1 + L, d) with layers) in float32 on the
    CPU, through ``model.map_sentences`` (the loop behind ``model.encode``).

    dropout=True keeps the backbone's dropout active (SimCSE's augmentation): each call gives a
    different "dropout view" of every sentence (reproducible with ``seed``); no gradients either way.
    """
    if dropout and model.encoder is None:
        raise ValueError("dropout views need a backbone; this SimSkipModel is head-only")
    was_training = model.training
    model.eval()
    if dropout:
        model.encoder.train()  # dropout on, even for a frozen backbone
        if seed is not None:
            torch.manual_seed(seed)
    try:
        return model.map_sentences(sentences, lambda x: x.float().cpu(), batch_size, device, show_progress_bar)
    finally:
        model.train(was_training)


def load_feature_table(path) -> FeatureTable:
    """A cache folder written by build_embedding_cache, memory-mapped."""
    import datasets

    return FeatureTable(datasets.load_from_disk(str(path)))


def _save_cached(x: torch.Tensor, path: Path, meta: dict, dtype: str) -> None:
    """save_to_disk into a tmp folder, then rename it: a crash never leaves a half-written cache."""
    import datasets

    tmp = temp_dir_beside(path)
    row = tuple(x.shape[1:])
    value = datasets.Value(dtype)
    feature = datasets.Array2D(shape=row, dtype=dtype) if len(row) == 2 else datasets.Sequence(value, length=row[0])
    array = x.numpy().astype(dtype)
    datasets.Dataset.from_dict({"features": array}, features=datasets.Features({"features": feature})).save_to_disk(
        str(tmp)
    )
    write_json(tmp / "simskip_cache.json", meta)
    try:
        os.replace(tmp, path)
    except OSError:  # another process finished the same key first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def _info(accelerator, msg, *args):
    if accelerator is None or accelerator.is_main_process:
        logger.info(msg, *args)


def build_embedding_cache(
    model,
    sentences: list[str],
    cache_dir=DEFAULT_CACHE_DIR,
    accelerator=None,
    batch_size: int = 64,
    extra_key: dict | None = None,
    name: str = "corpus",
    dropout_seed: int | None = None,
    dtype: str = "float16",
):
    """The head's raw inputs for ``sentences`` (in that order: x, or x and the pooled layers), encoded
    once and kept as a ``datasets`` Arrow folder under ``cache_dir`` in ``dtype``. With an ``accelerator``
    of several processes each encodes a contiguous shard, the shards are gathered and the main process
    writes the cache. ``dropout_seed``: cache one dropout view per sentence instead (the backbone's
    dropout on; part of the key). Returns (FeatureTable, info) with info = {"path", "key", "reused"}."""
    if not sentences:
        raise ValueError(f"cannot build an embedding cache for an empty list of sentences ({name})")
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"cache dtype must be one of {list(CACHE_DTYPES)}, got {dtype!r}")
    extra_key = {**(extra_key or {}), "dtype": dtype}
    if dropout_seed is not None:
        extra_key["dropout_seed"] = dropout_seed
    key = cache_key(model, corpus_fingerprint(sentences), extra_key)
    path = Path(cache_dir).expanduser() / f"{name}-{key[:32]}"
    info = {"path": str(path), "key": key, "reused": path.is_dir()}
    if path.is_dir():
        table = load_feature_table(path)
        if len(table) == len(sentences):
            _info(accelerator, "reusing the embedding cache %s %s: no encoding", path, tuple(table.shape))
            return table, info
        raise ValueError(f"embedding cache {path} holds {len(table)} rows, expected {len(sentences)}: delete it")
    _info(accelerator, "encoding %d sentences with the frozen backbone into %s", len(sentences), path)
    bar = accelerator is None or accelerator.is_local_main_process
    seed = None if dropout_seed is None else dropout_seed + (accelerator.process_index if accelerator else 0)
    views = {} if seed is None else {"dropout": True, "seed": seed}
    if accelerator is None or accelerator.num_processes == 1:
        x = embed_sentences(model, sentences, batch_size, show_progress_bar=bar, **views)
    else:
        with accelerator.split_between_processes(list(sentences), apply_padding=True) as shard:
            local = embed_sentences(model, shard, batch_size, accelerator.device, show_progress_bar=bar, **views)
        x = accelerator.gather_for_metrics(local.to(accelerator.device)).cpu()[: len(sentences)]  # pad rows dropped
    if accelerator is None or accelerator.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        c = model.config
        meta = {
            "key": key,
            "rows": len(sentences),
            "shape": list(x.shape),
            "backbone": c.encoder_name_or_path,
            "revision": c.encoder_revision,
            "pooling": c.pooling,
            "layers": c.layers,
            "extra": extra_key,
        }
        _save_cached(x, path, meta, dtype)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    del x  # every process reads the cache as written (memory-mapped, the same rounding for all)
    return load_feature_table(path), info


__all__ = [
    "cache_key",
    "embed_sentences",
    "build_embedding_cache",
    "load_feature_table",
    "FeatureTable",
    "DEFAULT_CACHE_DIR",
    "CACHE_DTYPES",
]
