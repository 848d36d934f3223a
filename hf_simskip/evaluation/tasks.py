"""Loaders for the SentEval tasks, mimicking facebookresearch/SentEval's own loaders.

Every loader reads the files exactly as SentEval does (encoding, how a line is split into columns and
tokens, header lines skipped), sorts each split the way SentEval's ``run`` does before batching
(that order decides the stratified folds), and turns each token list into the string a SentEval
batcher would pass to a model: ``' '.join(tokens)``, or ``'.'`` for an empty sentence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TRANSFER_TASKS = ["CR", "MPQA", "MR", "MRPC", "SST2", "SUBJ", "TREC"]
STS_TASKS = ["STSB", "SICKR"]
TASKS = TRANSFER_TASKS + STS_TASKS

# task -> files under <data_dir>/downstream, used for checks, fingerprints and the download manifest
TASK_FILES = {
    "CR": ["CR/custrev.pos", "CR/custrev.neg"],
    "MPQA": ["MPQA/mpqa.pos", "MPQA/mpqa.neg"],
    "MR": ["MR/rt-polarity.pos", "MR/rt-polarity.neg"],
    "SUBJ": ["SUBJ/subj.objective", "SUBJ/subj.subjective"],
    "TREC": ["TREC/train_5500.label", "TREC/TREC_10.label"],
    "SST2": ["SST/binary/sentiment-train", "SST/binary/sentiment-dev", "SST/binary/sentiment-test"],
    "MRPC": ["MRPC/msr_paraphrase_train.txt", "MRPC/msr_paraphrase_test.txt"],
    "STSB": ["STS/STSBenchmark/sts-train.csv", "STS/STSBenchmark/sts-dev.csv", "STS/STSBenchmark/sts-test.csv"],
    "SICKR": ["SICK/SICK_train.txt", "SICK/SICK_trial.txt", "SICK/SICK_test_annotated.txt"],
}
TREC_CLASSES = {"ABBR": 0, "DESC": 1, "ENTY": 2, "HUM": 3, "LOC": 4, "NUM": 5}


@dataclass
class Split:
    """One split. ``sentences`` (single-sentence tasks) or ``pairs`` (a, b) with ``labels``."""

    labels: np.ndarray
    sentences: list[str] = field(default_factory=list)
    pairs: tuple[list[str], list[str]] | None = None

    def all_sentences(self) -> list[str]:
        return self.sentences + (self.pairs[0] + self.pairs[1] if self.pairs else [])

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TaskData:
    name: str
    kind: str  # "binary" (inner k-fold), "kfold" (TREC, MRPC), "split" (SST2), "sts"
    splits: dict[str, Split]
    nclasses: int = 2

    def all_sentences(self) -> list[str]:
        return [s for split in self.splits.values() for s in split.all_sentences()]


def as_sentence(tokens: list[str]) -> str:
    """What SentEval users' batchers pass on: tokens joined by one space; an empty sentence -> '.'."""
    return " ".join(tokens) if tokens else "."


def check_task_names(tasks) -> list[str]:
    if tasks is None:
        return list(TASKS)
    if isinstance(tasks, str):
        tasks = [tasks]
    if not isinstance(tasks, (list, tuple)):
        raise TypeError(f"tasks must be a list of task names or None, got {type(tasks).__name__}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task name(s) {unknown}; valid names are {TASKS}")
    if not tasks:
        raise ValueError(f"tasks is empty; give at least one of {TASKS}")
    return list(dict.fromkeys(tasks))


def task_path(data_dir: Path, relative: str) -> Path:
    path = Path(data_dir) / "downstream" / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"missing SentEval data file {str(path)!r} (expected the SentEval layout "
            f"<data_dir>/downstream/{relative}). Get the files with "
            f"`python -m hf_simskip.evaluation.download --data-dir {data_dir}` or point --data-dir / "
            "$HF_SIMSKIP_DATA at an existing SentEval data folder."
        )
    return path


def _read_lines(path: Path, encoding: str) -> list[str]:
    with open(path, encoding=encoding) as f:
        return f.read().splitlines()


def _sorted_split(tokens: list[list[str]], labels: list) -> Split:
    # SentEval: sorted(zip(samples, labels), key=lambda z: (len(z[0]), z[1])), a stable sort
    order = sorted(zip(tokens, labels), key=lambda z: (len(z[0]), z[1]))
    return Split(labels=np.array([y for _, y in order]), sentences=[as_sentence(x) for x, _ in order])


def _sorted_pairs(a: list, b: list, labels: list) -> Split:
    # SentEval (MRPC, SICK, STS-B): key=lambda z: (len(z[0]), len(z[1]), z[2])
    order = sorted(zip(a, b, labels), key=lambda z: (len(z[0]), len(z[1]), z[2]))
    return Split(
        labels=np.array([z[2] for z in order]),
        pairs=([as_sentence(z[0]) for z in order], [as_sentence(z[1]) for z in order]),
    )


def load_binary(name: str, data_dir: Path) -> TaskData:
    # senteval/binary.py: latin-1, line.split(); positives (label 1) are the first file
    # (SUBJEval passes (obj, subj): objective sentences get label 1, hence that file order)
    pos_file, neg_file = TASK_FILES[name]
    pos = [line.split() for line in _read_lines(task_path(data_dir, pos_file), "latin-1")]
    neg = [line.split() for line in _read_lines(task_path(data_dir, neg_file), "latin-1")]
    return TaskData(name, "binary", {"all": _sorted_split(pos + neg, [1] * len(pos) + [0] * len(neg))})


def _load_trec_file(path: Path) -> tuple[list, list]:
    tokens, labels = [], []
    with open(path, encoding="latin-1") as f:
        for lineno, line in enumerate(f, 1):
            target, sample = line.strip().split(":", 1)
            if target not in TREC_CLASSES:
                raise ValueError(f"{path}:{lineno}: expected a coarse label in {list(TREC_CLASSES)}, got {target!r}")
            tokens.append(sample.split(" ", 1)[1].split())
            labels.append(TREC_CLASSES[target])
    return tokens, labels


def load_trec(data_dir: Path) -> TaskData:
    train = _sorted_split(*_load_trec_file(task_path(data_dir, TASK_FILES["TREC"][0])))
    test = _sorted_split(*_load_trec_file(task_path(data_dir, TASK_FILES["TREC"][1])))
    return TaskData("TREC", "kfold", {"train": train, "test": test}, nclasses=6)


def load_sst2(data_dir: Path) -> TaskData:
    splits = {}
    for key, rel in zip(["train", "dev", "test"], TASK_FILES["SST2"]):
        tokens, labels = [], []
        with open(task_path(data_dir, rel), encoding="utf-8") as f:
            for line in f:
                sample = line.strip().split("\t")
                labels.append(int(sample[1]))
                tokens.append(sample[0].split())
        splits[key] = _sorted_split(tokens, labels)
    return TaskData("SST2", "split", splits)


def _load_columns(path: Path, cols: tuple[int, int, int], skip_header: bool) -> tuple[list, list, list]:
    a, b, y = [], [], []
    with open(path, encoding="utf-8") as f:
        lines = list(f)
    for line in lines[1:] if skip_header else lines:
        text = line.strip().split("\t")
        a.append(text[cols[0]].split())
        b.append(text[cols[1]].split())
        y.append(text[cols[2]])
    return a, b, y


def load_mrpc(data_dir: Path) -> TaskData:
    splits = {}
    for key, rel in zip(["train", "test"], TASK_FILES["MRPC"]):
        a, b, y = _load_columns(task_path(data_dir, rel), (3, 4, 0), skip_header=True)
        splits[key] = _sorted_pairs(a, b, [int(s) for s in y])
    return TaskData("MRPC", "kfold", splits)


def load_sts(name: str, data_dir: Path) -> TaskData:
    # STSBenchmark: no header, score in column 4, sentences in 5 and 6; SICK: header, 1, 2, score 3
    cols, header = ((5, 6, 4), False) if name == "STSB" else ((1, 2, 3), True)
    splits = {}
    for key, rel in zip(["train", "dev", "test"], TASK_FILES[name]):
        a, b, y = _load_columns(task_path(data_dir, rel), cols, skip_header=header)
        splits[key] = _sorted_pairs(a, b, [float(s) for s in y])
    return TaskData(name, "sts", splits, nclasses=0)


def load_task(name: str, data_dir: str | os.PathLike) -> TaskData:
    """Load one task (a name in TASKS) from a SentEval-layout folder."""
    check_task_names([name])
    data_dir = Path(data_dir)
    if name in ("CR", "MPQA", "MR", "SUBJ"):
        return load_binary(name, data_dir)
    if name == "TREC":
        return load_trec(data_dir)
    if name == "SST2":
        return load_sst2(data_dir)
    if name == "MRPC":
        return load_mrpc(data_dir)
    return load_sts(name, data_dir)


def unique_sentences(tasks: list[TaskData]) -> list[str]:
    """Every distinct sentence of the given tasks, sorted (the order they are encoded in)."""
    return sorted({s for task in tasks for s in task.all_sentences()})
