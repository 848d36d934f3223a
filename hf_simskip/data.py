"""Training corpora and the fingerprinted embedding cache (stage 1 of the recipe).

    sentences, record = load_corpus(data_dir)           # unlabeled .txt + SST2/TREC/MRPC train splits
    x = build_embedding_cache(model, sentences, "~/.cache/hf_simskip")   # (n, d) raw backbone x, cached

The default corpus never contains a dev or a test sentence. The cache key is a sha256 of everything
that changes a raw embedding (backbone id, revision, pooling, max_length, encoder_normalize, any
stage-0 fine-tuning) and of the corpus fingerprint, so a second run with the same key only reads.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .paths import resolve_data_dir

logger = logging.getLogger(__name__)  # plain logging: usable without an Accelerator
KFOLD_TASKS = ("CR", "MPQA", "MR", "SUBJ")
TRAIN_SPLIT_TASKS = ("SST2", "TREC", "MRPC")
DEFAULT_CACHE_DIR = "~/.cache/hf_simskip"
STSB_DEV = "downstream/STS/STSBenchmark/sts-dev.csv"


def corpus_fingerprint(sentences) -> str:
    """sha256 of the sorted unique sentences (one per line): the identity of a training corpus."""
    digest = hashlib.sha256()
    for s in sorted(set(sentences)):
        digest.update(s.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _read_text_file(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"text file {str(path)!r} (one sentence a line) does not exist")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _task_sentences(name: str, data_dir: Path, split: str | None) -> list[str]:
    """Sentences of one SentEval task split, read with the evaluation's SentEval-faithful loaders."""
    from .evaluation import load_task  # the same strings the evaluation encodes

    task = load_task(name, data_dir)
    return task.all_sentences() if split is None else task.splits[split].all_sentences()


def _read_dataset(name_or_path: str, split: str, column: str) -> list[str]:
    import datasets

    if os.path.isdir(name_or_path):
        ds = datasets.load_from_disk(name_or_path)
    else:
        ds = datasets.load_dataset(name_or_path, split=split)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"dataset {name_or_path!r} has splits {list(ds)}, not the requested {split!r}")
        ds = ds[split]
    if column not in ds.column_names:
        raise ValueError(f"dataset {name_or_path!r} has columns {ds.column_names}, not the text column {column!r}")
    return [s.strip() for s in ds[column] if isinstance(s, str) and s.strip()]


def load_corpus(data_dir=None, train_file: str | None = None, dataset_name: str | None = None,
                dataset_split: str = "train", text_column: str = "text",
                transductive_kfold_tasks: bool = False) -> tuple[list[str], dict]:
    """The unique training sentences (sorted) and a record of where they came from.

    ``train_file`` (one sentence a line) or ``dataset_name`` (a load_from_disk folder or a Hub name)
    replace the default corpus: the .txt files under <data_dir>/unlabeled/ plus the sentences of the
    training splits of SST2, TREC and MRPC. ``transductive_kfold_tasks`` adds CR, MPQA, MR and SUBJ
    (k-fold tasks: their sentences are also evaluation sentences, hence opt-in and recorded).
    """
    sources: dict[str, int] = {}
    sentences: list[str] = []

    def add(name, items):
        sources[name] = len(items)
        sentences.extend(items)

    if train_file is not None and dataset_name is not None:
        raise ValueError(f"give train_file or dataset_name, not both (got {train_file!r} and {dataset_name!r})")
    if train_file is not None:
        add(f"file:{train_file}", _read_text_file(Path(train_file).expanduser()))
    elif dataset_name is not None:
        add(f"dataset:{dataset_name}[{dataset_split}].{text_column}",
            _read_dataset(dataset_name, dataset_split, text_column))
    else:
        data_dir = resolve_data_dir(data_dir)
        for txt in sorted((data_dir / "unlabeled").glob("*.txt")):
            add(f"unlabeled/{txt.name}", _read_text_file(txt))
        for name in TRAIN_SPLIT_TASKS:
            add(f"{name}:train", _task_sentences(name, data_dir, "train"))
    if transductive_kfold_tasks:
        data_dir = resolve_data_dir(data_dir)
        for name in KFOLD_TASKS:
            add(f"{name}:all (transductive, unlabeled)", _task_sentences(name, data_dir, None))
    unique = sorted(set(sentences))
    if not unique:
        raise ValueError(f"the training corpus is empty (sources and their sentence counts: {sources})")
    record = {"sources": sources, "total": len(sentences), "unique": len(unique),
              "fingerprint_sha256": corpus_fingerprint(unique),
              "transductive_kfold_tasks": bool(transductive_kfold_tasks)}
    return unique, record


def load_stsb_dev(data_dir=None) -> tuple[list[str], list[str], list[float]]:
    """STS-B dev pairs (tab separated: score in column 5, sentences in 6 and 7): the dev signal."""
    path = resolve_data_dir(data_dir) / STSB_DEV
    if not path.is_file():
        raise FileNotFoundError(f"STS-B dev file {str(path)!r} does not exist (SentEval layout expected)")
    a, b, scores = [], [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cols = line.strip().split("\t")
        if len(cols) < 7:
            raise ValueError(f"{path}:{lineno}: expected at least 7 tab-separated columns, got {len(cols)}")
        scores.append(float(cols[4]))
        a.append(" ".join(cols[5].split()))  # the evaluation's tokenisation: split, then join by one space
        b.append(" ".join(cols[6].split()))
    return a, b, scores


# --- stage 1: the embedding cache --------------------------------------------------------------
def cache_key(model, fingerprint: str, extra: dict | None = None) -> str:
    """sha256 of what changes a raw embedding x and of the corpus (``extra``: e.g. stage-0 settings)."""
    c = model.config
    parts = {"backbone": c.encoder_name_or_path, "revision": c.encoder_revision, "pooling": c.pooling,
             "max_length": c.max_length, "encoder_normalize": c.encoder_normalize,
             "embedding_dim": c.embedding_dim, "corpus": fingerprint, "extra": extra or {}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@torch.no_grad()
def embed_sentences(model, sentences: list[str], batch_size: int = 64, device=None,
                    show_progress_bar: bool = False, dropout: bool = False, seed: int | None = None) -> torch.Tensor:
    """Raw backbone embeddings x (n, d) in float32, batched longest first like ``model.encode``.

    dropout=True keeps the backbone's dropout active (SimCSE's augmentation): each call gives a
    different "dropout view" of every sentence (reproducible with ``seed``); no gradients either way.
    """
    if model.tokenizer is None:
        raise ValueError("the model has no tokenizer: build it with SimSkipModel.from_encoder_pretrained")
    device = torch.device(device) if device is not None else model.device
    order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
    was_training = model.training
    model.eval()
    if dropout:
        if model.encoder is None:
            raise ValueError("dropout views need a backbone; this SimSkipModel is head-only")
        model.encoder.train()  # dropout on, even for a frozen backbone
        if seed is not None:
            torch.manual_seed(seed)
    chunks = []
    try:
        for start in tqdm(range(0, len(order), batch_size), desc="Encoding", disable=not show_progress_bar):
            batch = [sentences[i] for i in order[start:start + batch_size]]
            feats = model.tokenizer(batch, padding=True, truncation=True, max_length=model.config.max_length,
                                    return_tensors="pt").to(device)
            chunks.append(model.embed(feats["input_ids"], feats["attention_mask"],
                                      feats.get("token_type_ids")).float().cpu())
    finally:
        model.train(was_training)
    out = torch.cat(chunks) if chunks else torch.zeros(0, model.config.embedding_dim)
    restored = torch.empty_like(out)
    restored[torch.tensor(order, dtype=torch.long)] = out  # undo the length sort
    return restored


def _load_cached(path: Path) -> torch.Tensor:
    import datasets

    ds = datasets.load_from_disk(str(path)).with_format("torch")
    return ds["embedding"][:].float() if len(ds) else torch.zeros(0)


def _save_cached(x: torch.Tensor, path: Path, meta: dict) -> None:
    """save_to_disk into a tmp folder, then os.replace: a crash never leaves a half-written cache."""
    import datasets

    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    ds = datasets.Dataset.from_dict({"embedding": x.numpy()})
    ds.save_to_disk(str(tmp))
    (tmp / "simskip_cache.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    try:
        os.replace(tmp, path)
    except OSError:  # another process finished the same key first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def _info(accelerator, msg, *args):
    if accelerator is None or accelerator.is_main_process:
        logger.info(msg, *args)


def build_embedding_cache(model, sentences: list[str], cache_dir=DEFAULT_CACHE_DIR, accelerator=None,
                          batch_size: int = 64, extra_key: dict | None = None, name: str = "corpus",
                          dropout_seed: int | None = None):
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
    views = {} if dropout_seed is None else {"dropout": True, "seed": dropout_seed + (
        accelerator.process_index if accelerator is not None else 0)}
    if accelerator is None or accelerator.num_processes == 1:
        x = embed_sentences(model, sentences, batch_size, show_progress_bar=bar, **views)
    else:
        with accelerator.split_between_processes(list(sentences), apply_padding=True) as shard:
            local = embed_sentences(model, shard, batch_size, accelerator.device, show_progress_bar=bar, **views)
        x = accelerator.gather_for_metrics(local.to(accelerator.device)).cpu()[: len(sentences)]  # pad rows dropped
    if accelerator is None or accelerator.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"key": key, "rows": len(sentences), "dim": int(x.shape[1]), "backbone": model.config.encoder_name_or_path,
                "revision": model.config.encoder_revision, "pooling": model.config.pooling, "extra": extra_key}
        _save_cached(x, path, meta)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return x, info


__all__ = ["load_corpus", "corpus_fingerprint", "load_stsb_dev", "cache_key", "embed_sentences",
           "build_embedding_cache", "KFOLD_TASKS", "DEFAULT_CACHE_DIR"]


@torch.no_grad()
def nearest_other_rows(x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """For each row of ``x`` (n, d), the row of its nearest other row by cosine similarity (n, d)."""
    unit = torch.nn.functional.normalize(x, dim=-1)
    best = torch.empty(len(x), dtype=torch.long)
    for start in range(0, len(x), chunk):
        sims = unit[start:start + chunk] @ unit.T  # (chunk, n)
        sims[torch.arange(sims.shape[0]), torch.arange(start, start + sims.shape[0])] = -2.0  # not itself
        best[start:start + chunk] = sims.argmax(1)
    return x[best]
