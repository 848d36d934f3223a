"""The dev signals of model selection. Never a test split; a task's labels only when the user hands them over.

Two STS dev splits are constraints: STS-B dev and SICK-R's trial split (its dev split), Spearman of the cosine of
the refined embeddings, read with the evaluation's SentEval-faithful loaders (the strings the evaluation encodes)
and scored by the evaluation's own STS scorer. They guard the similarity geometry: a candidate keeps it when both
stay within ``tolerance`` of the backbone's own embedding (the identity, scored first).

What they cannot measure is transfer. For a layer-aware head the transfer lever is the weight of the layer part u
(its share of the output, ``layer_scale``): a linear probe's gain grows with it (all-MiniLM-L6-v2, fast mode, the
closed-form PCA head: 84.87 / 85.04 / 85.26 at weights 0.5 / 0.7 / 1.0, identity 83.08) while the STS geometry
falls. So :class:`DevSignal` tries every weight of ``layer_scales`` on a candidate, keeps the largest that holds
both constraints, and scores the candidate by it: the head that carries the most of what the layers add without
spoiling the geometry wins; ties go to the better geometry. The identity (u off) scores 0; a candidate that breaks
the constraints at every weight scores below it. A head that reads x alone is scored by its geometry (the sum of
the two Spearmans), the identity among the candidates.

A user who has labeled sentences of their own task can hand them over (:class:`LabeledDev`, the recipe's
``--dev_file``): then transfer is measured, not inferred. Among the candidates and weights that keep the geometry,
the one with the best k-fold accuracy of the evaluation's logistic probe on those sentences wins (ties: the larger
weight, then the better geometry), and the identity is scored the same way, so "never worse than the backbone"
holds on the user's own task. The default reads no such labels: only labels the user hands over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

DEV_SPLITS = {"stsb": ("STSB", "dev"), "sickr": ("SICKR", "dev")}  # SICK-R's "dev" split is SICK_trial.txt


def dev_pairs(data_dir=None, max_pairs: int | None = None) -> dict[str, tuple[list[str], list[str], list[float]]]:
    """{signal: (sentences a, sentences b, gold scores)} of STS-B dev and SICK-R trial; ``max_pairs`` keeps the
    first N of each (tests)."""
    from ..evaluation import load_task
    from ..paths import resolve_data_dir

    folder = resolve_data_dir(data_dir)
    out = {}
    for name, (task, split) in DEV_SPLITS.items():
        dev = load_task(task, folder).splits[split]
        a, b, gold = dev.pairs[0], dev.pairs[1], [float(y) for y in dev.labels]
        out[name] = (a[:max_pairs], b[:max_pairs], gold[:max_pairs])
    return out


def stsb_dev_pairs(data_dir=None, max_pairs: int | None = None) -> tuple[list[str], list[str], list[float]]:
    """(sentences a, sentences b, gold scores) of STS-B dev; ``max_pairs`` keeps the first N (tests)."""
    return dev_pairs(data_dir, max_pairs)["stsb"]


@dataclass(frozen=True)
class DevScore:
    """A candidate's dev result: ``key`` is what the selection compares (larger is better), ``value`` the number
    reported (the mean dev Spearman at the chosen weight), ``details`` the weight and every split's Spearman."""

    key: tuple
    value: float
    details: dict = field(default_factory=dict)


class LabeledDev:
    """A labeled dev set of the user's own task as a transfer signal: ``accuracy(head)`` is the k-fold (stratified,
    ``folds``) accuracy x100 of the evaluation's L2 logistic probe on the head's refined embeddings of ``inputs``
    (the raw head inputs of the sentences, (n, d) or (n, 1 + L, d)), the probe's C chosen from the evaluation's
    k-fold grid by the same folds: SentEval's KFold ``devacc`` (``evaluation.protocol.kfold_dev``), rounded to 2
    decimals as SentEval does. ``labels``: one class per row, any hashable values."""

    FOLDS = 5  # the probe's k-fold (SentEval's for TREC and MRPC is 10; a user's dev set is small)

    def __init__(self, inputs, labels, folds: int = FOLDS, seed: int = 1111):
        inputs = torch.as_tensor(inputs[:]).float()
        labels = list(labels)
        if inputs.shape[0] != len(labels):
            raise ValueError(
                f"labeled dev set: expected one label per row, got {inputs.shape[0]} rows and {len(labels)} labels"
            )
        classes = self.check_labels(labels, folds)
        index = {c: i for i, c in enumerate(classes)}
        self.inputs, self.y = inputs, np.array([index[c] for c in labels])
        self.classes, self.nclasses, self.k, self.seed = [str(c) for c in classes], len(classes), folds, seed

    @staticmethod
    def check_labels(labels, folds: int = FOLDS) -> list:
        """The classes of ``labels`` (sorted), or ValueError when the k-fold probe cannot run on them."""
        classes = sorted(set(labels), key=str)
        counts = {c: labels.count(c) for c in classes}
        if len(classes) < 2 or min(counts.values()) < folds:
            raise ValueError(
                f"labeled dev set: expected at least 2 classes with at least {folds} sentences each (its {folds}-fold "
                f"probe), got {dict((str(c), n) for c, n in counts.items())}"
            )
        return classes

    def accuracy(self, head, device=None) -> float:
        from ..evaluation.protocol import ProbeRunner, kfold_dev

        target = device if device is not None else next(head.buffers()).device
        X = head.embed(self.inputs.to(target)).float()
        _, accuracy = kfold_dev(ProbeRunner(device=X.device), X, self.y, self.k, self.seed, self.nclasses, "labeled")
        return accuracy


class DevSignal:
    """``dev_signal(head) -> DevScore`` for ``train_head``, as the module docstring says; the first call scores the
    identity and fixes the reference. ``pairs``: {signal: (raw inputs a, raw inputs b, gold)} with the head's raw
    inputs of the pairs ((n, d), or (n, 1 + L, d)): tensors, arrays or memory-mapped tables. ``tolerance`` and
    ``layer_scales`` are the training arguments ``dev_tolerance`` and ``layer_scales``. A layer-aware head is left
    at the weight its score was found with (the loop keeps it with the weights, then restores its own)."""

    def __init__(self, pairs: dict, tolerance: float, layer_scales, device=None, labeled: LabeledDev | None = None):
        if not pairs and labeled is None:
            raise ValueError(
                "a dev signal needs at least one split of pairs (STS-B dev, SICK-R trial) or a labeled dev set"
            )
        if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < np.inf):
            raise ValueError(f"dev tolerance must be a finite number >= 0, got {tolerance!r}")
        self.pairs = {}
        for name, (a, b, gold) in pairs.items():
            a, b = (torch.as_tensor(t[:]).float() for t in (a, b))
            if a.shape != b.shape or a.shape[0] != len(gold):
                raise ValueError(
                    f"dev split {name}: expected the raw inputs of its {len(gold)} pairs, twice the same shape, got "
                    f"{tuple(a.shape)} and {tuple(b.shape)}"
                )
            self.pairs[name] = (a, b, np.asarray(gold, dtype=float))
        self.tolerance, self.layer_scales, self.device = float(tolerance), tuple(layer_scales), device
        self.labeled = labeled
        self.reference: dict | None = None

    def spearmans(self, head) -> dict[str, float]:
        """{signal: Spearman x100 of the cosine of the head's refined embeddings against the gold scores}."""
        from ..evaluation.protocol import cosine_spearman

        target = self.device if self.device is not None else next(head.buffers()).device
        out = {}
        for name, (a, b, gold) in self.pairs.items():
            ea, eb = head.embed(a.to(target)), head.embed(b.to(target))
            out[name] = cosine_spearman(ea.float().cpu().numpy(), eb.float().cpu().numpy(), gold)
        return out

    def _score(self, key_head: float, scores: dict, weight) -> DevScore:
        value = float(np.mean(list(scores.values())))
        return DevScore((key_head, value), value, {"layer_scale": weight, **scores})

    def restore(self, identity_details: dict) -> None:
        """Set the reference from the identity's recorded details (a resumed run does not score it again)."""
        self.reference = {
            k: float(v) for k, v in identity_details.items() if k not in ("layer_scale", "labeled_dev_accuracy")
        }

    def __call__(self, head) -> DevScore:
        branch = head.layer_branch
        if self.labeled is not None:
            return self._labeled(head, branch)
        if self.reference is None or branch is None or not branch.is_open:
            scores = self.spearmans(head)
            if self.reference is None:
                self.reference = scores
            # a head that reads x alone is ranked by its geometry; a layer-aware head with u off by weight 0
            return self._score(0.0 if branch is not None else float(np.mean(list(scores.values()))), scores, None)
        tried = []
        for w in self.layer_scales:
            head.set_layer_scale(w)
            scores = self.spearmans(head)
            feasible = all(scores[k] >= self.reference[k] - self.tolerance for k in scores)
            tried.append((feasible, w, float(np.mean(list(scores.values()))), scores))
        feasible = [t for t in tried if t[0]]
        if feasible:  # the largest weight that keeps the geometry (then the better geometry)
            _, w, _, scores = max(feasible, key=lambda t: (t[1], t[2]))
            head.set_layer_scale(w)
            return self._score(w, scores, w)
        # below the backbone's geometry at every weight: never kept over the identity
        _, w, _, scores = max(tried, key=lambda t: t[2])
        head.set_layer_scale(w)
        return self._score(-1.0, scores, w)

    def _labeled(self, head, branch) -> DevScore:
        """With a labeled dev set: the best accuracy among the weights that keep the geometry (the identity, a
        closed branch or a head on x alone at its own weight); -1 when none keeps it, so never over the identity."""
        open_branch = self.reference is not None and branch is not None and branch.is_open
        tried = []
        for w in self.layer_scales if open_branch else (None,):
            if w is not None:
                head.set_layer_scale(w)
            scores = self.spearmans(head) if self.pairs else {}
            if self.reference is None:
                self.reference = scores
            feasible = all(scores[k] >= self.reference[k] - self.tolerance for k in scores)
            accuracy = self.labeled.accuracy(head, self.device) if feasible else None
            geometry = float(np.mean(list(scores.values()))) if scores else 0.0
            tried.append((feasible, accuracy, w, geometry, scores))
        feasible = [t for t in tried if t[0]]
        if feasible:  # the best accuracy, then the larger weight, then the better geometry
            _, accuracy, w, geometry, scores = max(feasible, key=lambda t: (t[1], t[2] or 0.0, t[3]))
            key = (accuracy, geometry)
        else:
            _, accuracy, w, geometry, scores = max(tried, key=lambda t: t[3])
            key = (-1.0, geometry)
        if w is not None:
            head.set_layer_scale(w)
        details = {"layer_scale": w, **scores, "labeled_dev_accuracy": accuracy}
        return DevScore(key, accuracy if accuracy is not None else -1.0, details)


def read_labeled_dev(path) -> tuple[list[str], list[str]]:
    """(sentences, labels) of a labeled dev file: ``.csv`` / ``.tsv`` with a header naming a ``sentence`` (or
    ``text``) column and a ``label`` column; ``.jsonl`` with one object a line holding the same keys; any other
    suffix: one ``label<TAB>sentence`` a line. Labels are read as strings (classes, not numbers)."""
    import csv
    import json
    from pathlib import Path

    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"dev_file {str(path)!r}: expected an existing file of labeled sentences")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"dev_file {str(path)!r}: expected UTF-8 text, byte {err.start} is not") from None
    rows: list[tuple[str, str]] = []
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        fields = reader.fieldnames or []
        column = "sentence" if "sentence" in fields else "text"
        if column not in fields or "label" not in fields:
            raise ValueError(
                f"dev_file {str(path)!r}: expected a header with a 'sentence' (or 'text') and a 'label' column, "
                f"got {fields}"
            )
        for i, row in enumerate(reader, start=2):
            rows.append((str(row.get(column) or "").strip(), str(row.get("label") or "").strip()))
            if not rows[-1][0] or not rows[-1][1]:
                raise ValueError(f"dev_file {str(path)!r}, line {i}: expected a sentence and a label, got {row}")
    else:
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            if suffix == ".jsonl":
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    obj = None
                sentence = obj.get("sentence", obj.get("text")) if isinstance(obj, dict) else None
                label = obj.get("label") if isinstance(obj, dict) else None
                if (
                    not isinstance(sentence, str)
                    or not sentence.strip()
                    or label is None
                    or isinstance(label, (dict, list))
                ):
                    raise ValueError(
                        f'dev_file {str(path)!r}, line {i}: expected an object with "sentence" (or "text") and '
                        f'"label", got {line[:80]!r}'
                    )
                rows.append((sentence.strip(), str(label)))
            else:
                label, tab, sentence = line.partition("\t")
                if not tab or not label.strip() or not sentence.strip():
                    raise ValueError(
                        f"dev_file {str(path)!r}, line {i}: expected 'label<TAB>sentence', got {line[:80]!r}"
                    )
                rows.append((sentence.strip(), label.strip()))
    if not rows:
        raise ValueError(f"dev_file {str(path)!r}: expected labeled sentences, the file holds none")
    return [r[0] for r in rows], [r[1] for r in rows]


def stsb_dev_fn(x_a: torch.Tensor, x_b: torch.Tensor, gold, device=None):
    """``dev_fn(head) -> float``: Spearman x100 of cos(head.embed(x_a), head.embed(x_b)) against ``gold``,
    with ``x_a``, ``x_b`` the head's raw inputs for the dev pairs ((n, d), or (n, 1 + L, d) with layers): the
    STS-B dev score alone, without the constraint and weight search of :class:`DevSignal`."""
    signal = DevSignal({"stsb": (x_a, x_b, gold)}, tolerance=0.0, layer_scales=(), device=device)
    return lambda head: signal.spearmans(head)["stsb"]


__all__ = [
    "DevSignal",
    "DevScore",
    "LabeledDev",
    "read_labeled_dev",
    "dev_pairs",
    "stsb_dev_pairs",
    "stsb_dev_fn",
    "DEV_SPLITS",
]
