"""Training corpora: the unlabeled sentences the head is trained on, and a record of where they came from.

    sentences, record = load_corpus(data_dir)   # unlabeled .txt + SST2/TREC/MRPC train splits

The default corpus never contains a dev or a test sentence.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from ..paths import find_data_dir, resolve_data_dir

logger = logging.getLogger(__name__)
KFOLD_TASKS = ("CR", "MPQA", "MR", "SUBJ")
TRAIN_SPLIT_TASKS = ("SST2", "TREC", "MRPC")
# shipped with the package for machines without a data folder: 2,000 sentences written for hf_simskip,
# Apache-2.0 (see DEFAULT_CORPUS.md beside it)
EMBEDDED_CORPUS = Path(__file__).resolve().parent / "default_corpus.txt"
EMBEDDED_SOURCE = "embedded:default_corpus.txt"


def corpus_fingerprint(sentences) -> str:
    """sha256 of the sorted unique sentences (one per line): the identity of a training corpus."""
    digest = hashlib.sha256()
    for s in sorted(set(sentences)):
        digest.update(s.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _read_text_file(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"text file {str(path)!r} (one sentence a line) does not exist")
    data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ValueError(
            f"text file {str(path)!r} holds a NUL byte at offset {nul}: expected UTF-8 text, one "
            "sentence a line, not a binary file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"text file {str(path)!r} is not UTF-8 (byte {data[err.start]:#04x} at offset {err.start}): "
            "convert it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _task_sentences(name: str, data_dir: Path, split: str | None) -> list[str]:
    """Sentences of one SentEval task split, read with the evaluation's SentEval-faithful loaders."""
    from ..evaluation import load_task  # the same strings the evaluation encodes

    task = load_task(name, data_dir)
    return task.all_sentences() if split is None else task.splits[split].all_sentences()


def _read_dataset(name_or_path: str, split: str, column: str, config_name: str | None = None) -> list[str]:
    import datasets

    if os.path.isdir(name_or_path):
        ds = datasets.load_from_disk(name_or_path)
    else:
        ds = datasets.load_dataset(name_or_path, config_name, split=split)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"dataset {name_or_path!r} has splits {list(ds)}, not the requested {split!r}")
        ds = ds[split]
    if column not in ds.column_names:
        raise ValueError(f"dataset {name_or_path!r} has columns {ds.column_names}, not the text column {column!r}")
    return [s.strip() for s in ds[column] if isinstance(s, str) and s.strip()]


def load_corpus(
    data_dir=None,
    train_file: str | None = None,
    dataset_name: str | None = None,
    dataset_split: str = "train",
    text_column: str = "text",
    transductive_kfold_tasks: bool = False,
    dataset_config_name: str | None = None,
) -> tuple[list[str], dict]:
    """The unique training sentences (sorted) and a record of where they came from.

    ``train_file`` (one sentence a line) or ``dataset_name`` (a load_from_disk folder or a Hub name, with its
    ``dataset_config_name``) replace the default corpus: the .txt files under <data_dir>/unlabeled/ plus the sentences of the
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
        config = f"{dataset_config_name}:" if dataset_config_name else ""
        add(
            f"dataset:{dataset_name}[{config}{dataset_split}].{text_column}",
            _read_dataset(dataset_name, dataset_split, text_column, dataset_config_name),
        )
    elif (found := find_data_dir(data_dir)) is not None:
        for txt in sorted((found / "unlabeled").glob("*.txt")):
            add(f"unlabeled/{txt.name}", _read_text_file(txt))
        for name in TRAIN_SPLIT_TASKS:
            add(f"{name}:train", _task_sentences(name, found, "train"))
    else:
        logger.warning(
            "no SentEval data folder (no data_dir, no $HF_SIMSKIP_DATA, none at the default places): "
            "training on the corpus shipped with hf_simskip, %s (2,000 sentences written for the project, "
            "Apache-2.0; see DEFAULT_CORPUS.md beside it)",
            EMBEDDED_CORPUS,
        )
        add(EMBEDDED_SOURCE, _read_text_file(EMBEDDED_CORPUS))
    if transductive_kfold_tasks:
        data_dir = resolve_data_dir(data_dir)
        for name in KFOLD_TASKS:
            add(f"{name}:all (transductive, unlabeled)", _task_sentences(name, data_dir, None))
    unique = sorted(set(sentences))
    if not unique:
        raise ValueError(f"the training corpus is empty (sources and their sentence counts: {sources})")
    record = {
        "sources": sources,
        "total": len(sentences),
        "unique": len(unique),
        "fingerprint_sha256": corpus_fingerprint(unique),
        "transductive_kfold_tasks": bool(transductive_kfold_tasks),
    }
    if EMBEDDED_SOURCE in sources:
        record["license"] = "Apache-2.0 (written for hf_simskip; hf_simskip/training/DEFAULT_CORPUS.md)"
    return unique, record


__all__ = ["load_corpus", "corpus_fingerprint", "KFOLD_TASKS", "TRAIN_SPLIT_TASKS", "EMBEDDED_CORPUS"]
