"""SentEval's CPU path, re-stated: one sklearn LogisticRegression per fold and grid value.

This is what senteval/tools/validation.py does with usepytorch=False, and what
``evaluate(..., probe="sklearn")`` runs: ``LogisticRegression(C=C, random_state=seed)`` with
sklearn's defaults (lbfgs, tol=1e-4, max_iter=100), so lbfgs stops where the original stops, often
before the optimum. That early stop is part of the published SentEval numbers, which is why this path
exists next to the batched probe (protocol.py), which solves the same objective to the optimum.
The three classifiers have protocol.py's signatures and result schema, so the evaluator can run
either. It is slow by design (the yardstick of benchmarks/eval_speed.py).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from .protocol import GRID_INNER, GRID_KFOLD, inner_kfold_result, pick

# SentEval never sets these, so it runs sklearn's defaults (lbfgs, tol=1e-4, max_iter=100 in sklearn
# >= 0.22); read from the installed sklearn so the protocol records what actually ran
SOLVER = {key: LogisticRegression().get_params()[key] for key in ("solver", "tol", "max_iter")}


class SklearnRunner:
    """Fits SentEval's classifier and keeps, per fit group, how many fits lbfgs left unconverged.

    sklearn warns (ConvergenceWarning) on every fit lbfgs leaves unconverged (mostly at max_iter);
    SentEval runs thousands of fits, so the warnings are counted into ``records`` (the protocol's
    ``probe.fits``; ``lbfgs_iterations`` is the most any fit of the group took) instead of shown.
    """

    def __init__(self, seed: int, show_progress_bar=None):
        self.seed = seed
        self.show_progress_bar = show_progress_bar
        self._records: dict[str, dict] = {}
        self._bar = None

    @property
    def records(self) -> list[dict]:
        return list(self._records.values())

    @contextmanager
    def progress(self, total: int, desc: str):
        """A tqdm bar over the fits of one protocol call (disabled with show_progress_bar=False)."""
        with tqdm(
            total=total, desc=f"{desc} (sklearn fits)", leave=False, disable=self.show_progress_bar is False
        ) as bar:
            self._bar = bar
            try:
                yield
            finally:
                self._bar = None

    def fit(self, X, y, C: float, label: str) -> LogisticRegression:
        clf = LogisticRegression(C=C, random_state=self.seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(X, y)
        unconverged = 0
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                unconverged += 1
            else:  # only ConvergenceWarnings are ours to count; anything else goes on as sklearn raised it
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        rec = self._records.setdefault(
            label, {"fit": label, "problems": 0, "unconverged": 0, "convergence_warnings": 0, "lbfgs_iterations": 0}
        )
        rec["problems"] += 1
        rec["unconverged"] += int(unconverged > 0)
        rec["convergence_warnings"] += unconverged
        rec["lbfgs_iterations"] = max(rec["lbfgs_iterations"], int(np.max(clf.n_iter_)))
        if self._bar is not None:
            self._bar.update(1)
        return clf


def _score(clf, X, y) -> float:
    return float(clf.score(X, y))


def inner_kfold(runner: SklearnRunner, X, y, k: int, seed: int, label: str) -> dict:
    """SentEval's InnerKFoldClassifier: per outer fold, an inner k-fold picks C, then a refit on the fold."""
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    inner = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    tests, devs, chosen = [], [], []
    with runner.progress(k * (k * len(GRID_INNER) + 1), label):
        for train_idx, test_idx in skf.split(X, y):
            Xtr, ytr = X[train_idx], y[train_idx]
            scores = []
            for C in GRID_INNER:
                regscores = [
                    _score(runner.fit(Xtr[a], ytr[a], C, label + "/inner"), Xtr[b], ytr[b])
                    for a, b in inner.split(Xtr, ytr)
                ]
                scores.append(np.mean(regscores))
            c, dev = pick(scores, GRID_INNER)
            chosen.append(c)
            devs.append(dev)
            clf = runner.fit(Xtr, ytr, c, label + "/outer")
            tests.append(round(100 * _score(clf, X[test_idx], y[test_idx]), 2))
    return inner_kfold_result(tests, devs, chosen)


def kfold(runner: SklearnRunner, Xtr, ytr, Xte, yte, k: int, seed: int, nclasses: int, label: str):
    """SentEval's KFoldClassifier: a k-fold scan over C on train, then one fit on all of train."""
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    scores = []
    with runner.progress(k * len(GRID_KFOLD) + 1, label):
        for C in GRID_KFOLD:
            scan = [
                _score(runner.fit(Xtr[a], ytr[a], C, label + "/kfold"), Xtr[b], ytr[b]) for a, b in skf.split(Xtr, ytr)
            ]
            scores.append(np.mean(scan))
        c, dev = pick(scores, GRID_KFOLD)
        clf = runner.fit(Xtr, ytr, c, label + "/final")
    yhat = clf.predict(Xte)
    return {"acc": round(100 * _score(clf, Xte, yte), 2), "devacc": dev, "C": c}, yhat


def split_classifier(runner: SklearnRunner, Xtr, ytr, Xdev, ydev, Xte, yte, label: str) -> dict:
    """SentEval's SplitClassifier: C chosen on dev, then a refit on train with it, scored on test."""
    with runner.progress(len(GRID_INNER) + 1, label):
        scores = [_score(runner.fit(Xtr, ytr, C, label + "/split"), Xdev, ydev) for C in GRID_INNER]
        c, dev = pick(scores, GRID_INNER)
        # SentEval refits with the chosen C (lbfgs is deterministic, so this repeats one fit; kept to stay literal)
        clf = runner.fit(Xtr, ytr, c, label + "/final")
    return {"acc": round(100 * _score(clf, Xte, yte), 2), "devacc": dev, "C": c}
