"""SentEval's protocols (senteval/tools/validation.py) on top of the batched probe.

- CR, MPQA, MR, SUBJ: InnerKFoldClassifier: outer stratified k-fold; in each training part an inner
  stratified k-fold picks C from [2**t for t in range(-2, 4)]; test accuracy averaged over folds.
- TREC, MRPC: KFoldClassifier: k-fold on train picks C from [2**t for t in range(-1, 6)], then one
  fit on all of train scored on test (MRPC also F1; features [|u-v|, u*v]).
- SST2: SplitClassifier: C from [2**t for t in range(-2, 4)] chosen on dev, scored on test.
Like SentEval: StratifiedKFold(k, shuffle=True, random_state=seed), scores rounded to two decimals
before the argmax (ties go to the smaller C), per-fold test accuracies rounded before averaging.
reference.py runs the same three protocols with SentEval's own solver (one sklearn fit per fold and
C); both keep these signatures and result dicts, so the evaluator can run either probe.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from .probe import fit_logistic

GRID_INNER = [2.0**t for t in range(-2, 4, 1)]
GRID_KFOLD = [2.0**t for t in range(-1, 6, 1)]


class ProbeRunner:
    """Holds the probe settings and collects convergence records of every fit."""

    def __init__(self, device="cpu", dtype=torch.float32, tol=1e-9, max_iter=100):
        self.device, self.dtype, self.tol, self.max_iter = device, dtype, tol, max_iter
        self.records: list[dict] = []

    def fit(self, X, y, masks, Cs, nclasses, label):
        fit = fit_logistic(
            torch.as_tensor(X, dtype=self.dtype, device=self.device),
            torch.as_tensor(y, dtype=torch.long, device=self.device),
            torch.as_tensor(masks, device=self.device),
            torch.as_tensor(Cs, dtype=self.dtype, device=self.device),
            nclasses,
            tol=self.tol,
            max_iter=self.max_iter,
        )
        self.records.append(
            {
                "fit": label,
                "problems": int(fit.converged.numel()),
                "unconverged": int((~fit.converged).sum()),
                "newton_iterations": fit.iterations,
            }
        )
        return fit

    def predict(self, fit, X):
        return fit.predict(torch.as_tensor(X, dtype=self.dtype, device=self.device)).cpu().numpy()


def _acc(pred, y):
    return float(np.mean(pred == y))


def pick(scores, grid):
    """SentEval's choice of C (shared by both probes): scores -> (C, its score x100)."""
    # SentEval: scores.append(round(100*mean, 2)); optreg = regs[np.argmax(scores)]
    scores = [round(100 * s, 2) for s in scores]
    best = int(np.argmax(scores))
    return grid[best], scores[best]


def inner_kfold(runner: ProbeRunner, X, y, k: int, seed: int, label: str) -> dict:
    n = len(y)
    outer = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(X, y))
    inner_masks, inner_tests = [], []
    for train_idx, _ in outer:
        for in_train, in_test in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(
            X[train_idx], y[train_idx]
        ):
            mask = np.zeros(n, bool)
            mask[train_idx[in_train]] = True
            inner_masks.append(mask)
            inner_tests.append(train_idx[in_test])
    grid = np.array(GRID_INNER)
    fit = runner.fit(X, y, np.stack(inner_masks), np.tile(grid, (len(inner_masks), 1)), 2, label + "/inner")
    pred = runner.predict(fit, X)  # (k*k, G, n)
    chosen, devs = [], []
    for o in range(k):
        scores = [
            np.mean([_acc(pred[o * k + i, g, inner_tests[o * k + i]], y[inner_tests[o * k + i]]) for i in range(k)])
            for g in range(len(grid))
        ]
        c, dev = pick(scores, GRID_INNER)
        chosen.append(c)
        devs.append(dev)
    outer_masks = np.zeros((k, n), bool)
    for o, (train_idx, _) in enumerate(outer):
        outer_masks[o, train_idx] = True
    fit = runner.fit(X, y, outer_masks, np.array(chosen)[:, None], 2, label + "/outer")
    pred = runner.predict(fit, X)[:, 0]  # (k, n)
    tests = [round(100 * _acc(pred[o, test_idx], y[test_idx]), 2) for o, (_, test_idx) in enumerate(outer)]
    return inner_kfold_result(tests, devs, chosen)


def inner_kfold_result(tests, devs, chosen) -> dict:
    """SentEval's InnerKFold record: test accuracy averaged over the outer folds (each rounded first)."""
    return {
        "acc": round(float(np.mean(tests)), 2),
        "devacc": round(float(np.mean(devs)), 2),
        "C": chosen,
        "fold_acc": tests,
    }


def kfold_dev(runner: ProbeRunner, X, y, k: int, seed: int, nclasses: int, label: str) -> tuple[float, float]:
    """SentEval's KFold model selection: (C, its mean accuracy x100 over ``k`` stratified folds of (X, y)), every
    fold and C of GRID_KFOLD in one batched fit."""
    n = len(y)
    folds = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(X, y))
    masks = np.zeros((k, n), bool)
    for f, (train_idx, _) in enumerate(folds):
        masks[f, train_idx] = True
    grid = np.array(GRID_KFOLD)
    fit = runner.fit(X, y, masks, np.tile(grid, (k, 1)), nclasses, label + "/kfold")
    pred = runner.predict(fit, X)  # (k, G, n)
    scores = [np.mean([_acc(pred[f, g, te], y[te]) for f, (_, te) in enumerate(folds)]) for g in range(len(grid))]
    return pick(scores, GRID_KFOLD)


def kfold(runner: ProbeRunner, Xtr, ytr, Xte, yte, k: int, seed: int, nclasses: int, label: str):
    n = len(ytr)
    c, dev = kfold_dev(runner, Xtr, ytr, k, seed, nclasses, label)
    fit = runner.fit(Xtr, ytr, np.ones((1, n), bool), np.array([[c]]), nclasses, label + "/final")
    yhat = runner.predict(fit, Xte)[0, 0]
    return {"acc": round(100 * _acc(yhat, yte), 2), "devacc": dev, "C": c}, yhat


def split_classifier(runner: ProbeRunner, Xtr, ytr, Xdev, ydev, Xte, yte, label: str) -> dict:
    grid = np.array(GRID_INNER)
    fit = runner.fit(Xtr, ytr, np.ones((1, len(ytr)), bool), grid[None, :], 2, label + "/split")
    scores = [_acc(p, ydev) for p in runner.predict(fit, Xdev)[0]]
    c, dev = pick(scores, GRID_INNER)
    # SentEval refits with the chosen C on the same data: the same problem, so reuse that fit
    test_pred = runner.predict(fit, Xte)[0, GRID_INNER.index(c)]
    return {"acc": round(100 * _acc(test_pred, yte), 2), "devacc": dev, "C": c}


def mrpc_features(a, b):
    return np.concatenate([np.abs(a - b), a * b], axis=1)


def mrpc_f1(yhat, y) -> float:
    return round(100 * float(f1_score(y, yhat)), 2)


def _cosines(a, b) -> np.ndarray:
    an = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    return (an * bn).sum(1)


def cosine_spearman(a, b, gold) -> float:
    """Spearman x100 of the pairs' cosine similarities against the gold scores, unrounded (the training's dev
    signal uses it); NaN when the cosines do not rank the pairs (all equal)."""
    from scipy.stats import spearmanr

    cos = _cosines(a, b)
    return float("nan") if np.ptp(cos) == 0 else 100 * float(spearmanr(cos, gold)[0])


def sts_scores(a, b, gold) -> dict:
    from scipy.stats import pearsonr

    cos = _cosines(a, b)
    if np.ptp(cos) == 0:  # no ranking to correlate: undefined (the evaluator refuses it, naming the task)
        return {"spearman": float("nan"), "pearson": float("nan")}
    return {"spearman": round(cosine_spearman(a, b, gold), 2), "pearson": round(100 * float(pearsonr(cos, gold)[0]), 2)}
