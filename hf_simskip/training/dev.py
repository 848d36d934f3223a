"""The dev signals of model selection. Never a test split, never a transfer task's labels.

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


class DevSignal:
    """``dev_signal(head) -> DevScore`` for ``train_head``, as the module docstring says; the first call scores the
    identity and fixes the reference. ``pairs``: {signal: (raw inputs a, raw inputs b, gold)} with the head's raw
    inputs of the pairs ((n, d), or (n, 1 + L, d)): tensors, arrays or memory-mapped tables. ``tolerance`` and
    ``layer_scales`` are the training arguments ``dev_tolerance`` and ``layer_scales``. A layer-aware head is left
    at the weight its score was found with (the loop keeps it with the weights, then restores its own)."""

    def __init__(self, pairs: dict, tolerance: float, layer_scales, device=None):
        if not pairs:
            raise ValueError("a dev signal needs at least one split of pairs (STS-B dev, SICK-R trial)")
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
        self.reference = {k: float(v) for k, v in identity_details.items() if k != "layer_scale"}

    def __call__(self, head) -> DevScore:
        branch = head.layer_branch
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


def stsb_dev_fn(x_a: torch.Tensor, x_b: torch.Tensor, gold, device=None):
    """``dev_fn(head) -> float``: Spearman x100 of cos(head.embed(x_a), head.embed(x_b)) against ``gold``,
    with ``x_a``, ``x_b`` the head's raw inputs for the dev pairs ((n, d), or (n, 1 + L, d) with layers): the
    STS-B dev score alone, without the constraint and weight search of :class:`DevSignal`."""
    signal = DevSignal({"stsb": (x_a, x_b, gold)}, tolerance=0.0, layer_scales=(), device=device)
    return lambda head: signal.spearmans(head)["stsb"]


__all__ = ["DevSignal", "DevScore", "dev_pairs", "stsb_dev_pairs", "stsb_dev_fn", "DEV_SPLITS"]
