"""Experiment machinery for issue 6: train SimSkip heads on cached backbone embeddings, refine the
cached SentEval sentences, score them with the SentEval-protocol evaluator, and compare against the
post-hoc controls in the same probe. The CLI is recipes/experiments.py; the report is report.py.

Everything here works on precomputed embeddings (design.md: encoding dominates the cost), so a
grid of configurations x seeds costs minutes, not hours.
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from .baselines import PostHocRefiner
from .configuration_simskip import SimSkipConfig
from .modeling_simskip import SimSkipModel
from .training import HeadTrainingArguments, train_head

logger = logging.getLogger(__name__)
VIEW_KEYS = ("augmentation", "mask_ratio", "mask_fill", "noise_variance", "temperature")


@dataclass
class RunSpec:
    """One row of the grid: a SimSkip head configuration or a post-hoc control.

    head: SimSkipConfig keyword arguments (the architecture and what refine() returns);
    train: hf_simskip.training.HeadTrainingArguments keyword arguments (the recipe's own training).
    """
    name: str
    control: str | None = None  # identity, standardize, whiten, whiten-256, abtt-3, ...
    head: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    corpus: str = "default"  # "default" or "transductive" (adds CR/MPQA/MR/SUBJ sentences, unlabeled)
    default: bool = False
    seeds: list | None = None  # overrides the grid's seeds for this row (controls are deterministic: one run)

    def __post_init__(self):
        if self.corpus not in ("default", "transductive"):
            raise ValueError(f"run {self.name!r}: corpus must be 'default' or 'transductive', got {self.corpus!r}")
        if self.control is None:
            self.training_args(seed=0, output_dir=".").validate()
            SimSkipConfig(embedding_dim=8, **{k: v for k, v in self.head.items() if k != "hidden_dims"})

    def training_args(self, seed: int, output_dir: str) -> HeadTrainingArguments:
        """The recipe's training arguments; the views (augmentation, strengths, temperature) come from
        ``head`` so that the saved config.json records what the head was trained with."""
        unknown = set(self.train) - {f.name for f in fields(HeadTrainingArguments)}
        if unknown or set(self.train) & set(VIEW_KEYS):
            raise ValueError(f"run {self.name!r}: train keys must be HeadTrainingArguments fields other than "
                             f"{list(VIEW_KEYS)} (those go under head:), got {sorted(self.train)}")
        views = {k: v for k, v in self.head.items() if k in VIEW_KEYS}
        return HeadTrainingArguments(**{"logging_steps": 0, **self.train, **views, "seed": seed,
                                        "output_dir": output_dir})


def make_control(spec: str) -> PostHocRefiner:
    kind, _, k = spec.partition("-")
    return PostHocRefiner(kind, int(k) if k else None)


def train_on_embeddings(x: torch.Tensor, spec: RunSpec, seed: int, dev_pairs=None,
                        partners: torch.Tensor | None = None) -> tuple[SimSkipModel, dict]:
    """Train a head-only SimSkipModel on (n, d) cached embeddings with the recipe's train_head
    (``partners``: the dropout views of the same rows, for positives="dropout")."""
    from accelerate import Accelerator

    torch.manual_seed(seed)
    model = SimSkipModel(SimSkipConfig(embedding_dim=x.shape[1], **spec.head))
    dev_fn = stsb_dev_fn(model, *dev_pairs) if dev_pairs is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train_head(model.head, x, spec.training_args(seed, tmp), Accelerator(cpu=True), dev_fn,
                             partners=partners)
    metrics.pop("args", None)
    return model.eval(), metrics


def stsb_dev_fn(model: SimSkipModel, pairs_a: np.ndarray, pairs_b: np.ndarray, gold: np.ndarray):
    """``dev_fn(head)``: Spearman x100 of the cosine of refined embeddings on STS-B dev (never test)."""
    from scipy.stats import spearmanr

    a, b = torch.from_numpy(pairs_a), torch.from_numpy(pairs_b)

    def score(head) -> float:
        ra, rb = (model.postprocess(fz, z) for z, fz in (head.refine(a), head.refine(b)))
        cos = torch.nn.functional.cosine_similarity(ra, rb).numpy()
        return float(spearmanr(cos, gold).statistic * 100)
    return score


def run_record(spec: RunSpec, seed: int, results: dict, extra: dict, seconds: float) -> dict:
    args = asdict(spec.training_args(seed, "")) if spec.control is None else None
    return {**results, "run": {"name": spec.name, "seed": seed, "spec": asdict(spec), "training_args": args,
                               "seconds": round(seconds, 1), **extra}}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
