"""SentEval's CPU path, re-stated: one sklearn LogisticRegression per fold and grid value.

This is what senteval/tools/validation.py does with usepytorch=False, kept here as the yardstick
for hf_simskip's batched probe (benchmarks/eval_speed.py, tests). It is slow by design.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from .protocol import GRID_INNER, GRID_KFOLD, mrpc_f1, mrpc_features


def _lr(C, seed):
    return LogisticRegression(C=C, random_state=seed)


def inner_kfold(X, y, k: int, seed: int) -> float:
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    inner = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    tests = []
    for train_idx, test_idx in skf.split(X, y):
        Xtr, ytr = X[train_idx], y[train_idx]
        scores = []
        for C in GRID_INNER:
            regscores = [_lr(C, seed).fit(Xtr[a], ytr[a]).score(Xtr[b], ytr[b]) for a, b in inner.split(Xtr, ytr)]
            scores.append(round(100 * np.mean(regscores), 2))
        best = GRID_INNER[int(np.argmax(scores))]
        tests.append(round(100 * _lr(best, seed).fit(Xtr, ytr).score(X[test_idx], y[test_idx]), 2))
    return round(float(np.mean(tests)), 2)


def kfold(Xtr, ytr, Xte, yte, k: int, seed: int):
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    scores = []
    for C in GRID_KFOLD:
        scan = [_lr(C, seed).fit(Xtr[a], ytr[a]).score(Xtr[b], ytr[b]) for a, b in skf.split(Xtr, ytr)]
        scores.append(round(100 * np.mean(scan), 2))
    clf = _lr(GRID_KFOLD[int(np.argmax(scores))], seed).fit(Xtr, ytr)
    yhat = clf.predict(Xte)
    return round(100 * clf.score(Xte, yte), 2), yhat


def split_classifier(Xtr, ytr, Xdev, ydev, Xte, yte, seed: int) -> float:
    scores = [round(100 * _lr(C, seed).fit(Xtr, ytr).score(Xdev, ydev), 2) for C in GRID_INNER]
    clf = _lr(GRID_INNER[int(np.argmax(scores))], seed).fit(Xtr, ytr)
    return round(100 * clf.score(Xte, yte), 2)


def run_task(task, rows, k: int = 10, seed: int = 1111) -> dict:
    """Score one loaded task (tasks.TaskData) with ``rows(list[str]) -> (n, d)`` the SentEval way."""
    s = task.splits
    if task.kind == "binary":
        return {"acc": inner_kfold(rows(s["all"].sentences), s["all"].labels, k, seed)}
    if task.name == "TREC":
        acc, _ = kfold(
            rows(s["train"].sentences), s["train"].labels, rows(s["test"].sentences), s["test"].labels, k, seed
        )
        return {"acc": acc}
    if task.name == "MRPC":
        f = {key: mrpc_features(rows(v.pairs[0]), rows(v.pairs[1])) for key, v in s.items()}
        acc, yhat = kfold(f["train"], s["train"].labels, f["test"], s["test"].labels, k, seed)
        return {"acc": acc, "f1": mrpc_f1(yhat, s["test"].labels)}
    if task.name == "SST2":
        return {
            "acc": split_classifier(
                rows(s["train"].sentences),
                s["train"].labels,
                rows(s["dev"].sentences),
                s["dev"].labels,
                rows(s["test"].sentences),
                s["test"].labels,
                seed,
            )
        }
    raise ValueError(f"the sklearn reference covers the transfer tasks only, got {task.name!r}")
