"""Stage 1 of the recipe: the fingerprinted embedding cache of the frozen backbone.

    x, info = build_embedding_cache(model, sentences, "~/.cache/hf_simskip")   # (n, d) raw backbone x

The cache key is a sha256 of everything that changes a raw embedding (backbone id, revision, pooling,
max_seq_length, encoder_normalize, any stage-0 fine-tuning) and of the corpus fingerprint, so a second
run with the same key only reads. The cache is a ``datasets`` Arrow folder written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from ..files import temp_dir_beside, write_json
from .corpus import corpus_fingerprint

logger = logging.getLogger(__name__)  # plain logging: usable without an Accelerator
DEFAULT_CACHE_DIR = "~/.cache/hf_simskip"


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
    """Raw backbone embeddings x (n, d) in float32 on the CPU, through ``model.map_sentences`` (the loop
    behind ``model.encode``).

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


def _load_cached(path: Path) -> torch.Tensor:
    import datasets

    ds = datasets.load_from_disk(str(path)).with_format("torch")
    return ds["embedding"][:].float() if len(ds) else torch.zeros(0)


def _save_cached(x: torch.Tensor, path: Path, meta: dict) -> None:
    """save_to_disk into a tmp folder, then rename it: a crash never leaves a half-written cache."""
    import datasets

    tmp = temp_dir_beside(path)
    datasets.Dataset.from_dict({"embedding": x.numpy()}).save_to_disk(str(tmp))
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
):
    """Raw embeddings x (n, d) of ``sentences`` (in that order), encoded once and kept as a ``datasets``
    Arrow dataset under ``cache_dir/<key>``. With an ``accelerator`` of several processes each encodes a
    contiguous shard, the shards are gathered and the main process writes the cache.
    ``dropout_seed``: cache one dropout view per sentence instead (the backbone's dropout on; part of the key).
    Returns (x, info) with info = {"path", "key", "reused"}."""
    if not sentences:
        raise ValueError(f"cannot build an embedding cache for an empty list of sentences ({name})")
    if dropout_seed is not None:
        extra_key = {**(extra_key or {}), "dropout_seed": dropout_seed}
    key = cache_key(model, corpus_fingerprint(sentences), extra_key)
    path = Path(cache_dir).expanduser() / f"{name}-{key[:32]}"
    info = {"path": str(path), "key": key, "reused": path.is_dir()}
    if path.is_dir():
        x = _load_cached(path)
        if x.shape[0] == len(sentences):
            _info(accelerator, "reusing the embedding cache %s (%d x %d): no encoding", path, *x.shape)
            return x, info
        raise ValueError(f"embedding cache {path} holds {x.shape[0]} rows, expected {len(sentences)}: delete it")
    _info(accelerator, "encoding %d sentences with the frozen backbone into %s", len(sentences), path)
    bar = accelerator is None or accelerator.is_local_main_process
    views = (
        {}
        if dropout_seed is None
        else {"dropout": True, "seed": dropout_seed + (accelerator.process_index if accelerator is not None else 0)}
    )
    if accelerator is None or accelerator.num_processes == 1:
        x = embed_sentences(model, sentences, batch_size, show_progress_bar=bar, **views)
    else:
        with accelerator.split_between_processes(list(sentences), apply_padding=True) as shard:
            local = embed_sentences(model, shard, batch_size, accelerator.device, show_progress_bar=bar, **views)
        x = accelerator.gather_for_metrics(local.to(accelerator.device)).cpu()[: len(sentences)]  # pad rows dropped
    if accelerator is None or accelerator.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "key": key,
            "rows": len(sentences),
            "dim": int(x.shape[1]),
            "backbone": model.config.encoder_name_or_path,
            "revision": model.config.encoder_revision,
            "pooling": model.config.pooling,
            "extra": extra_key,
        }
        _save_cached(x, path, meta)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return x, info


__all__ = ["cache_key", "embed_sentences", "build_embedding_cache", "DEFAULT_CACHE_DIR"]
