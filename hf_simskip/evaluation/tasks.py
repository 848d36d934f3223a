"""Loaders for the SentEval tasks, mimicking facebookresearch/SentEval's own loaders.

Every loader reads the files exactly as SentEval does (encoding, how a line is split into columns and
tokens, header lines skipped), sorts each split the way SentEval's ``run`` does before batching
(that order decides the stratified folds), and turns each token list into the string a SentEval
batcher would pass to a model: ``' '.join(tokens)``, or ``'.'`` for an empty sentence.

Where SentEval crashes or silently scores garbage (a line without its columns, a label it cannot
parse, a file of random bytes, an empty file, a ``nan`` gold score), these loaders stop with a
one-line ValueError naming the file, the line and what to do. ``check_task`` (run by ``load_task``)
then checks what every score needs: each class present in each split, finite gold scores in their
range, and enough pairs to correlate; ``check_folds`` (run by ``evaluate``) checks that each class
has enough rows for the k folds of the chosen mode.
"""

from __future__ import annotations

import io
import math
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
STS_RANGE = {"STSB": (0.0, 5.0), "SICKR": (1.0, 5.0)}  # the gold-score scales of the two data sets
# bytes no text file of these data sets holds (tab, newlines, \v and \f excepted); the real files
# have one such byte (\x12) in a million, a file of random bytes one in nine
_CONTROL_BYTES = bytes(sorted(set(range(32)) - {9, 10, 11, 12, 13}))


@dataclass
class Split:
    """One split. ``sentences`` (single-sentence tasks) or ``pairs`` (a, b) with ``labels``.
    ``source``: the data file it was read from, relative to <data_dir>/downstream."""

    labels: np.ndarray
    sentences: list[str] = field(default_factory=list)
    pairs: tuple[list[str], list[str]] | None = None
    source: str = ""

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
    data_dir: Path | None = None

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


def redownload_hint(data_dir, task: str) -> str:
    return (
        f"fix or re-download it: `python -m hf_simskip.evaluation.download --data-dir {data_dir} "
        f"--tasks {task} --force`"
    )


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


class _File:
    """One task file: its decoded text, and one-line errors that name the file and the line."""

    def __init__(self, task: str, data_dir: Path, relative: str, encoding: str):
        self.task, self.data_dir, self.relative = task, data_dir, relative
        self.path = task_path(data_dir, relative)
        data = self.path.read_bytes()
        controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
        if b"\x00" in data or controls > 0.01 * len(data):
            self.fail(
                None,
                f"expected a text file of SentEval's {task} data, got binary content "
                f"({controls} control bytes such as NUL in {len(data)} bytes)",
            )
        try:
            self.text = data.decode(encoding)
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            self.fail(line, f"expected {encoding} text, got the byte {data[err.start]:#04x} (invalid {encoding})")

    def fail(self, lineno: int | None, what: str):
        where = f"{self.path}:{lineno}" if lineno else str(self.path)
        raise ValueError(f"{where}: {what}; {redownload_hint(self.data_dir, self.task)}")

    def splitlines(self) -> list[str]:
        """SentEval's binary tasks: ``f.read().splitlines()`` (which also breaks on \\x85 and friends)."""
        return self.text.splitlines()

    def lines(self) -> list[str]:
        """What ``for line in io.open(path, encoding=...)`` yields (universal newlines), in SentEval."""
        return list(io.StringIO(self.text, newline=None))

    def columns(self, lineno: int, line: str, needed: int, layout: str) -> list[str]:
        """``line.strip().split('\\t')`` as SentEval splits it, with at least ``needed`` columns."""
        text = line.strip().split("\t")
        if len(text) < needed:
            self.fail(lineno, f"expected {needed} tab-separated columns ({layout}), got {len(text)}: {_show(line)}")
        return text

    def label(self, lineno: int, value: str, valid) -> int:
        try:
            label = int(value)
        except ValueError:
            label = None
        if label not in valid:
            self.fail(lineno, f"expected a label in {sorted(valid)}, got {value!r}")
        return label

    def score(self, lineno: int, value: str, low: float, high: float) -> float:
        try:
            score = float(value)
        except ValueError:
            self.fail(lineno, f"expected a numeric gold score in [{low:g}, {high:g}], got {value!r}")
        if not (math.isfinite(score) and low <= score <= high):
            self.fail(lineno, f"expected a finite gold score in [{low:g}, {high:g}], got {value!r}")
        return score


def _show(line: str, width: int = 60) -> str:
    line = line.rstrip("\r\n")
    return repr(line if len(line) <= width else line[:width] + "...")


def _sorted_split(tokens: list[list[str]], labels: list, source: str) -> Split:
    # SentEval: sorted(zip(samples, labels), key=lambda z: (len(z[0]), z[1])), a stable sort
    order = sorted(zip(tokens, labels), key=lambda z: (len(z[0]), z[1]))
    return Split(
        labels=np.array([y for _, y in order], dtype=np.int64),
        sentences=[as_sentence(x) for x, _ in order],
        source=source,
    )


def _sorted_pairs(a: list, b: list, labels: list, source: str, dtype) -> Split:
    # SentEval (MRPC, SICK, STS-B): key=lambda z: (len(z[0]), len(z[1]), z[2])
    order = sorted(zip(a, b, labels), key=lambda z: (len(z[0]), len(z[1]), z[2]))
    return Split(
        labels=np.array([z[2] for z in order], dtype=dtype),
        pairs=([as_sentence(z[0]) for z in order], [as_sentence(z[1]) for z in order]),
        source=source,
    )


def load_binary(name: str, data_dir: Path) -> TaskData:
    # senteval/binary.py: latin-1, line.split(); positives (label 1) are the first file
    # (SUBJEval passes (obj, subj): objective sentences get label 1, hence that file order)
    pos_file, neg_file = TASK_FILES[name]
    pos = [line.split() for line in _File(name, data_dir, pos_file, "latin-1").splitlines()]
    neg = [line.split() for line in _File(name, data_dir, neg_file, "latin-1").splitlines()]
    split = _sorted_split(pos + neg, [1] * len(pos) + [0] * len(neg), f"{pos_file} + {neg_file}")
    return TaskData(name, "binary", {"all": split}, data_dir=data_dir)


def _load_trec_file(data_dir: Path, relative: str) -> Split:
    # senteval/trec.py: latin-1; target, sample = line.strip().split(':', 1);
    # tokens = sample.split(' ', 1)[1].split()
    f = _File("TREC", data_dir, relative, "latin-1")
    tokens, labels = [], []
    for lineno, line in enumerate(f.lines(), 1):
        parts = line.strip().split(":", 1)
        if len(parts) != 2:
            f.fail(lineno, f"expected 'COARSE:fine question', got no ':' in {_show(line)}")
        target, sample = parts
        if target not in TREC_CLASSES:
            f.fail(lineno, f"expected a coarse label in {list(TREC_CLASSES)}, got {target!r}")
        question = sample.split(" ", 1)
        if len(question) != 2:
            f.fail(lineno, f"expected 'COARSE:fine question', got no question after the label in {_show(line)}")
        tokens.append(question[1].split())
        labels.append(TREC_CLASSES[target])
    return _sorted_split(tokens, labels, relative)


def load_trec(data_dir: Path) -> TaskData:
    train, test = (_load_trec_file(data_dir, rel) for rel in TASK_FILES["TREC"])
    return TaskData("TREC", "kfold", {"train": train, "test": test}, nclasses=6, data_dir=data_dir)


def load_sst2(data_dir: Path) -> TaskData:
    # senteval/sst.py: utf-8; sample = line.strip().split('\t'); label int(sample[1]), tokens sample[0].split()
    splits = {}
    for key, rel in zip(["train", "dev", "test"], TASK_FILES["SST2"]):
        f = _File("SST2", data_dir, rel, "utf-8")
        tokens, labels = [], []
        for lineno, line in enumerate(f.lines(), 1):
            sample = f.columns(lineno, line, 2, "sentence<TAB>label")
            labels.append(f.label(lineno, sample[1], {0, 1}))
            tokens.append(sample[0].split())
        splits[key] = _sorted_split(tokens, labels, rel)
    return TaskData("SST2", "split", splits, data_dir=data_dir)


def _load_columns(f: _File, cols: tuple[int, int, int], skip_header: bool, layout: str) -> tuple[list, list, list]:
    a, b, y = [], [], []
    needed = max(cols) + 1
    for lineno, line in enumerate(f.lines(), 1):
        if skip_header and lineno == 1:
            continue
        text = f.columns(lineno, line, needed, layout)
        a.append(text[cols[0]].split())
        b.append(text[cols[1]].split())
        y.append((lineno, text[cols[2]]))
    return a, b, y


def load_mrpc(data_dir: Path) -> TaskData:
    # senteval/mrpc.py: utf-8, header skipped; columns 3 and 4 are the sentences, 0 the label
    splits = {}
    layout = "Quality, #1 ID, #2 ID, #1 String, #2 String"
    for key, rel in zip(["train", "test"], TASK_FILES["MRPC"]):
        f = _File("MRPC", data_dir, rel, "utf-8")
        a, b, y = _load_columns(f, (3, 4, 0), skip_header=True, layout=layout)
        splits[key] = _sorted_pairs(a, b, [f.label(n, s, {0, 1}) for n, s in y], rel, np.int64)
    return TaskData("MRPC", "kfold", splits, data_dir=data_dir)


def load_sts(name: str, data_dir: Path) -> TaskData:
    # STSBenchmark: no header, score in column 4, sentences in 5 and 6; SICK: header, 1, 2, score 3
    if name == "STSB":
        cols, header, layout = (5, 6, 4), False, "genre, file, year, id, score, sentence 1, sentence 2"
    else:
        cols, header, layout = (1, 2, 3), True, "pair_ID, sentence_A, sentence_B, relatedness_score"
    splits = {}
    for key, rel in zip(["train", "dev", "test"], TASK_FILES[name]):
        f = _File(name, data_dir, rel, "utf-8")
        a, b, y = _load_columns(f, cols, skip_header=header, layout=layout)
        scores = [f.score(n, s, *STS_RANGE[name]) for n, s in y]
        splits[key] = _sorted_pairs(a, b, scores, rel, np.float64)
    return TaskData(name, "sts", splits, nclasses=0, data_dir=data_dir)


def _class_source(task: TaskData, split: Split, label: int) -> str:
    """The file the rows of ``label`` come from (binary tasks keep each class in its own file)."""
    if task.kind == "binary":
        return TASK_FILES[task.name][0 if label == 1 else 1]
    return split.source


def _fail(task: TaskData, relative: str, what: str):
    path = Path(task.data_dir or ".") / "downstream" / relative
    raise ValueError(f"{task.name} {path}: {what}; {redownload_hint(task.data_dir, task.name)}")


def check_task(task: TaskData) -> TaskData:
    """What every score of the task needs, whatever the folds: each class present in each split (an
    empty custrev.neg would score CR 100), and for STS at least 3 pairs with differing gold scores in
    the test split (else the correlation is undefined)."""
    for key, split in task.splits.items():
        if task.kind == "sts":
            if len(split) == 0:
                _fail(task, split.source, f"the {key} split has no pairs")
            if key == "test" and (len(split) < 3 or np.ptp(split.labels) == 0):
                _fail(
                    task,
                    split.source,
                    f"expected at least 3 test pairs with differing gold scores, got {len(split)} pairs "
                    f"and {len(np.unique(split.labels))} distinct scores",
                )
            continue
        counts = np.bincount(split.labels, minlength=task.nclasses)
        for label, count in enumerate(counts.tolist()):
            if count == 0:
                _fail(
                    task,
                    _class_source(task, split, label),
                    f"class {label} has no rows in the {key} split (counts per class: {counts.tolist()}); "
                    "every class must be present",
                )
    return task


def min_rows_per_class(kind: str, k: int) -> int:
    """Rows each class needs for SentEval's k-fold protocols: ``k`` for a k-fold scan (TREC, MRPC
    train), and for the binary tasks' nested folds enough that every outer training part still holds
    ``k`` (c - ceil(c / k) >= k); the split tasks and STS need no folds."""
    if kind == "kfold":
        return k
    if kind == "binary":
        c = k
        while c - math.ceil(c / k) < k:
            c += 1
        return c
    return 1


def check_folds(task: TaskData, k: int) -> None:
    """Raise a one-line ValueError when a class has fewer rows than the k folds need (see min_rows_per_class)."""
    if task.kind not in ("binary", "kfold"):
        return
    key = "all" if task.kind == "binary" else "train"
    split = task.splits[key]
    need = min_rows_per_class(task.kind, k)
    counts = np.bincount(split.labels, minlength=task.nclasses).tolist()
    for label, count in enumerate(counts):
        if count < need:
            folds = f"nested {k}-fold" if task.kind == "binary" else f"{k}-fold"
            _fail(
                task,
                _class_source(task, split, label),
                f"class {label} has {count} rows in the {key} split, SentEval's {folds} cross-validation "
                f"needs at least {need} per class (counts per class: {counts}); a truncated file? "
                "(mode='fast' uses 5 folds)",
            )


def load_task(name: str, data_dir: str | os.PathLike) -> TaskData:
    """Load one task (a name in TASKS) from a SentEval-layout folder; a damaged file is a ValueError
    naming the file and the line (see the module docstring)."""
    check_task_names([name])
    data_dir = Path(data_dir)
    if name in ("CR", "MPQA", "MR", "SUBJ"):
        task = load_binary(name, data_dir)
    elif name == "TREC":
        task = load_trec(data_dir)
    elif name == "SST2":
        task = load_sst2(data_dir)
    elif name == "MRPC":
        task = load_mrpc(data_dir)
    else:
        task = load_sts(name, data_dir)
    return check_task(task)


def unique_sentences(tasks: list[TaskData]) -> list[str]:
    """Every distinct sentence of the given tasks, sorted (the order they are encoded in)."""
    return sorted({s for task in tasks for s in task.all_sentences()})
