"""Experiment machinery for issue 6: train SimSkip heads on cached backbone embeddings, refine the
cached SentEval sentences, score them with the SentEval-protocol evaluator, and compare against the
post-hoc controls in the same probe. The CLI is recipes/experiments.py; the report is report.py.

Everything here works on precomputed embeddings (design.md: encoding dominates the cost), so a
grid of configurations x seeds costs minutes, not hours.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .baselines import PostHocRefiner
from .configuration_simskip import SimSkipConfig
from .modeling_simskip import SimSkipModel

logger = logging.getLogger(__name__)
TRAIN_KEYS = {"lr", "epochs", "batch_size", "weight_decay", "warmup_ratio", "select", "evals_per_epoch"}


@dataclass
class TrainSettings:
    lr: float = 1e-3
    epochs: int = 3
    batch_size: int = 256
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    select: str = "last"  # "last" or "stsb_dev": keep the state (the start included) best on STS-B dev
    evals_per_epoch: int = 2


@dataclass
class RunSpec:
    """One row of the grid: a SimSkip head configuration or a post-hoc control."""
    name: str
    control: str | None = None  # identity, standardize, whiten, whiten-256, abtt-3, ...
    head: dict = field(default_factory=dict)  # SimSkipConfig keyword arguments
    train: dict = field(default_factory=dict)  # TrainSettings keyword arguments
    corpus: str = "default"  # "default" or "transductive" (adds CR/MPQA/MR/SUBJ sentences, unlabeled)
    default: bool = False

    def __post_init__(self):
        unknown = set(self.train) - TRAIN_KEYS
        if unknown:
            raise ValueError(f"run {self.name!r}: unknown train keys {sorted(unknown)}; expected {sorted(TRAIN_KEYS)}")
        if self.corpus not in ("default", "transductive"):
            raise ValueError(f"run {self.name!r}: corpus must be 'default' or 'transductive', got {self.corpus!r}")
        TrainSettings(**self.train)
        if self.control is None:
            SimSkipConfig(embedding_dim=8, **{k: v for k, v in self.head.items() if k not in ("hidden_dims",)})


def make_control(spec: str) -> PostHocRefiner:
    kind, _, k = spec.partition("-")
    return PostHocRefiner(kind, int(k) if k else None)


def _lr_lambda(total: int, warmup: int):
    def f(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    return f


def train_on_embeddings(x: torch.Tensor, head_kwargs: dict, settings: TrainSettings, seed: int,
                        dev_fn=None) -> tuple[SimSkipModel, dict]:
    """Train a head-only SimSkipModel on (n, d) cached embeddings; returns it (eval mode) and a log."""
    torch.manual_seed(seed)
    model = SimSkipModel(SimSkipConfig(embedding_dim=x.shape[1], **head_kwargs))
    model.fit_statistics(x)
    head, cfg = model.head, model.config
    n_batches = len(x) // settings.batch_size
    if n_batches < 1:
        raise ValueError(f"corpus of {len(x)} rows is smaller than one batch of {settings.batch_size}")
    total = n_batches * settings.epochs
    opt = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, max(1, int(settings.warmup_ratio * total))))
    gen = torch.Generator().manual_seed(seed)
    every = max(1, n_batches // max(1, settings.evals_per_epoch))
    best = {"score": dev_fn(model) if dev_fn else None, "step": 0, "state": _copy(head)}
    history = [{"step": 0, "dev": best["score"]}]
    step = 0
    for _ in range(settings.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for b in range(n_batches):
            batch = x[order[b * settings.batch_size:(b + 1) * settings.batch_size]]
            loss = head.contrastive_loss(batch, cfg.augmentation, cfg.mask_ratio, cfg.noise_variance,
                                         cfg.temperature, gen, cfg.mask_fill)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if dev_fn and settings.select == "stsb_dev" and (step % every == 0 or step == total):
                score = dev_fn(model.eval())
                model.train()
                history.append({"step": step, "loss": round(loss.item(), 4), "dev": score})
                if score > best["score"]:
                    best = {"score": score, "step": step, "state": _copy(head)}
        history.append({"step": step, "loss": round(loss.item(), 4)})
    if settings.select == "stsb_dev" and dev_fn:
        head.load_state_dict(best["state"])
    model.eval()
    return model, {"history": history, "selected_step": best["step"] if settings.select != "last" else step,
                   "total_steps": total}


def _copy(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def stsb_dev_fn(pairs_a: np.ndarray, pairs_b: np.ndarray, gold: np.ndarray):
    """Spearman of cosine similarity of refined embeddings on STS-B dev (a dev signal, never test)."""
    from scipy.stats import spearmanr

    a, b = torch.from_numpy(pairs_a), torch.from_numpy(pairs_b)

    def score(model: SimSkipModel) -> float:
        ra, rb = model.refine(a), model.refine(b)
        cos = torch.nn.functional.cosine_similarity(ra, rb).numpy()
        return float(spearmanr(cos, gold).statistic * 100)
    return score


def write_json_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_record(spec: RunSpec, seed: int, results: dict, extra: dict, seconds: float) -> dict:
    return {**results, "run": {"name": spec.name, "seed": seed, "spec": asdict(spec),
                               "train_settings": asdict(TrainSettings(**spec.train)) if spec.control is None else None,
                               "seconds": round(seconds, 1), **extra}}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
