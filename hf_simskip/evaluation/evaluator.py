"""``evaluate(encode, tasks=None, data_dir=None, mode="full", seed=1111, *, probe="batched") -> dict``.

Every unique sentence of the selected tasks is encoded once, in one ``encode`` call, in sorted order;
the tasks then look their rows up. The result carries a protocol record (mode, folds, seed, probe and
grids, package versions, a sha256 fingerprint of the data files) so numbers can be compared honestly.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..paths import resolve_data_dir
from . import protocol as P
from . import reference
from .tasks import TASK_FILES, TRANSFER_TASKS, check_folds, check_task_names, load_task, unique_sentences

logger = logging.getLogger(__name__)
MODES = {"full": 10, "fast": 5}
# probe name -> the module running SentEval's three classifiers with it (same signatures and results)
PROBES = {"batched": P, "sklearn": reference}


def check_embeddings(emb, n_expected: int) -> np.ndarray:
    """Turn encode's output into a finite float (n, d) array, or raise saying what came instead."""
    if isinstance(emb, torch.Tensor):
        emb = emb.detach().cpu().float().numpy()
    elif isinstance(emb, list) and emb and isinstance(emb[0], torch.Tensor):
        emb = torch.stack(emb).detach().cpu().float().numpy()
    try:
        emb = np.asarray(emb, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"encode must return an (n, d) numeric array, got {type(emb).__name__}") from err
    if emb.ndim != 2:
        raise ValueError(f"encode must return a 2-D array (n_sentences, dim), got shape {emb.shape}")
    if emb.shape[0] != n_expected:
        raise ValueError(f"encode returned {emb.shape[0]} rows for {n_expected} sentences")
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb)).any(1).sum())
        raise ValueError(f"encode returned NaN or inf in {bad} of {n_expected} rows")
    return emb


def check_scores(name: str, scores: dict) -> dict:
    """A task's result with every score finite, or a ValueError saying which score is undefined."""
    bad = {key: scores[key] for key in ("acc", "devacc", "f1", "spearman", "pearson") if key in scores}
    bad = {key: value for key, value in bad.items() if not np.isfinite(value)}
    if bad:
        raise ValueError(
            f"{name}: undefined score(s) {bad}; for STS this means every cosine similarity is the same "
            "(does encode return one vector for every sentence?)"
        )
    return scores


def data_fingerprint(data_dir: Path, tasks: list[str]) -> dict:
    """sha256 of every data file the tasks read, plus one digest over all of them."""
    files = {}
    for task in tasks:
        for rel in TASK_FILES[task]:
            files[rel] = hashlib.sha256((data_dir / "downstream" / rel).read_bytes()).hexdigest()
    total = hashlib.sha256("".join(f"{k}:{v}\n" for k, v in sorted(files.items())).encode()).hexdigest()
    return {"sha256": total, "files": files}


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ["hf_simskip", "torch", "numpy", "scikit-learn", "scipy", "transformers", "sentence-transformers"]:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _run_task(task, rows, probe, runner, k: int, seed: int) -> dict:
    s = task.splits
    single = lambda split: rows(split.sentences)  # noqa: E731
    if task.kind == "binary":
        y = s["all"].labels
        out = probe.inner_kfold(runner, single(s["all"]), y, k, seed, task.name)
        return {**out, "n": len(y), "ndev": len(y), "ntest": len(y)}
    if task.name == "TREC":
        out, _ = probe.kfold(
            runner,
            single(s["train"]),
            s["train"].labels,
            single(s["test"]),
            s["test"].labels,
            k,
            seed,
            task.nclasses,
            task.name,
        )
        return {**out, "n": len(s["train"]) + len(s["test"]), "ntrain": len(s["train"]), "ntest": len(s["test"])}
    if task.name == "MRPC":
        feats = {key: P.mrpc_features(rows(v.pairs[0]), rows(v.pairs[1])) for key, v in s.items()}
        out, yhat = probe.kfold(
            runner, feats["train"], s["train"].labels, feats["test"], s["test"].labels, k, seed, 2, task.name
        )
        return {
            **out,
            "f1": P.mrpc_f1(yhat, s["test"].labels),
            "n": len(s["train"]) + len(s["test"]),
            "ntrain": len(s["train"]),
            "ntest": len(s["test"]),
        }
    if task.name == "SST2":
        out = probe.split_classifier(
            runner,
            single(s["train"]),
            s["train"].labels,
            single(s["dev"]),
            s["dev"].labels,
            single(s["test"]),
            s["test"].labels,
            task.name,
        )
        return {
            **out,
            "n": sum(len(v) for v in s.values()),
            "ntrain": len(s["train"]),
            "ndev": len(s["dev"]),
            "ntest": len(s["test"]),
        }
    test = s["test"]  # STS: cosine similarity on the test split (SimCSE's unsupervised protocol)
    out = P.sts_scores(rows(test.pairs[0]), rows(test.pairs[1]), test.labels)
    return {**out, "n": len(test), "ntrain": len(s["train"]), "ndev": len(s["dev"]), "ntest": len(test)}


def _probe_record(probe: str, runner, device) -> dict:
    """What ran, with its convergence: every fit group of every task (``fits``) and the totals."""
    unconverged = sum(r["unconverged"] for r in runner.records)
    grids = {"grid_inner_kfold": P.GRID_INNER, "grid_kfold": P.GRID_KFOLD, "grid_split": P.GRID_INNER}
    if probe == "batched":
        head = {
            "name": "batched",
            "type": "logistic regression (sklearn LogisticRegression objective: C * sum log-loss "
            "+ 0.5 ||w||^2, intercept unpenalised; multinomial for TREC)",
            "solver": "batched preconditioned Newton-CG (torch)",
            "device": str(device),
            "dtype": str(runner.dtype),
            "tol": runner.tol,
            "max_iter": runner.max_iter,
        }
        extra = {}
    else:
        head = {
            "name": "sklearn",
            "type": "logistic regression (the original SentEval's sklearn backend: "
            "LogisticRegression(C=C, random_state=seed) per fold and C, sklearn defaults)",
            "solver": f"sklearn {reference.SOLVER['solver']} (one fit per fold and C)",
            "device": "cpu",
            "dtype": "float64",  # check_embeddings hands the probes float64, and lbfgs works in it
            "tol": reference.SOLVER["tol"],
            "max_iter": reference.SOLVER["max_iter"],
        }
        # lbfgs stopping at max_iter is SentEval's behaviour, not a failure of this run: counted, not warned
        extra = {"convergence_warnings": sum(r["convergence_warnings"] for r in runner.records)}
    return {
        **head,
        **grids,
        "converged": unconverged == 0,
        "unconverged_problems": unconverged,
        **extra,
        "fits": runner.records,
    }


def evaluate(
    encode,
    tasks=None,
    data_dir=None,
    mode="full",
    seed=1111,
    *,
    standardize=False,
    device="cpu",
    show_progress_bar=None,
    probe="batched",
) -> dict:
    """Score ``encode`` (a callable ``list[str] -> (n, d) array``) on SentEval tasks.

    tasks: names from TASKS (default all nine); data_dir: SentEval-layout folder (see
    hf_simskip.paths.resolve_data_dir); mode: the folds, "full" (10 folds, SentEval's setting) or
    "fast" (5 folds; not comparable with full-mode numbers); seed: StratifiedKFold's random_state and the probe seed (SentEval: 1111).
    standardize: False keeps SentEval's exact objective (raw features; answers depend on the
    feature scale, as SentEval's do). True divides each task's features by their mean row norm first,
    which makes the answers invariant to rescaling the embeddings and changes nothing for unit-norm
    embeddings; it is recorded in the protocol; it applies to both probes.
    probe: the solver, in either mode. "batched" (default, the batched probe) fits every fold and C of
    a task at once with a torch solver of sklearn's LogisticRegression objective, solved to the
    optimum (on ``device``). "sklearn" (the sklearn probe) runs the
    original SentEval's CPU path (reference.py): one ``LogisticRegression(C=C, random_state=seed)``
    per fold and C with sklearn's defaults (lbfgs, tol=1e-4, max_iter=100), early stops included, to
    reproduce published SentEval numbers; much slower. STS tasks (cosine) are the same for both.
    Damaged task files are refused before anything is encoded (one-line ValueError naming the file
    and line; see tasks.py), and so is a score that comes out undefined (e.g. every cosine equal).
    Returns {"tasks": {name: {...}}, "protocol": {...}, "avg": mean acc over the transfer tasks}.
    """
    if not callable(encode):
        raise TypeError(f"encode must be a callable list[str] -> (n, d) array, got {type(encode).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if not isinstance(probe, str) or probe not in PROBES:
        raise ValueError(f"probe must be one of {list(PROBES)}, got {probe!r}")
    names = check_task_names(tasks)
    data_dir = resolve_data_dir(data_dir)
    k = MODES[mode]
    start = time.perf_counter()
    loaded = [load_task(name, data_dir) for name in names]
    for task in loaded:  # before encoding: a damaged or truncated file fails in seconds, not after the encode
        check_folds(task, k)
    sentences = unique_sentences(loaded)
    logger.info("encoding %d unique sentences for %s", len(sentences), names)
    emb = check_embeddings(encode(sentences), len(sentences))
    index = {s: i for i, s in enumerate(sentences)}
    encode_s = time.perf_counter() - start

    runner = P.ProbeRunner(device=device) if probe == "batched" else reference.SklearnRunner(seed, show_progress_bar)
    results = {}
    bar = tqdm(loaded, desc="SentEval tasks", disable=show_progress_bar is False)
    for task in bar:
        bar.set_postfix_str(task.name)
        task_rows = np.array(sorted({index[s] for s in task.all_sentences()}))
        scale = float(np.linalg.norm(emb[task_rows], axis=1).mean()) if standardize else 1.0
        if scale <= 0:
            raise ValueError(f"{task.name}: embeddings are all zero, cannot standardize")
        rows = lambda sents, scale=scale: emb[[index[x] for x in sents]] / scale  # noqa: E731
        t0 = time.perf_counter()
        results[task.name] = {
            **check_scores(task.name, _run_task(task, rows, PROBES[probe], runner, k, seed)),
            "seconds": round(time.perf_counter() - t0, 2),
        }
    transfer = [results[t]["acc"] for t in TRANSFER_TASKS if t in results]
    protocol = {
        "mode": mode,
        "kfold": k,
        "seed": seed,
        "standardize": bool(standardize),
        "probe": _probe_record(probe, runner, device),
        "sts": "Spearman/Pearson x100 of cosine similarity on the test split",
        "encoded_sentences": len(sentences),
        "embedding_dim": int(emb.shape[1]),
        "encode_seconds": round(encode_s, 2),
        "seconds": round(time.perf_counter() - start, 2),
        "data_dir": str(data_dir),
        "data_fingerprint": data_fingerprint(data_dir, names),
        "versions": _versions(),
    }
    avg = round(float(np.mean(transfer)), 2) if transfer else None
    return {"tasks": results, "protocol": protocol, "avg": avg}
