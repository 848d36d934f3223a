"""Post-hoc refiners used as controls for SimSkip: fitted on the same unlabeled corpus
embeddings, applied to any (n, d) array. A refinement from SimSkip counts only where it beats these.

- identity: the backbone as is.
- standardize: per-dimension z-score (mean/std of the corpus).
- whiten: BERT-whitening (Su et al. 2021): (x - mu) U S^-1/2, optionally keeping the top k directions.
- abtt: all-but-the-top (Mu & Viswanath 2018): remove the mean and the top D principal directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("identity", "standardize", "whiten", "abtt")


@dataclass
class PostHocRefiner:
    kind: str
    k: int | None = None  # whiten: directions kept (None = all); abtt: directions removed
    mean: np.ndarray | None = field(default=None, repr=False)
    matrix: np.ndarray | None = field(default=None, repr=False)  # (d, d_out) for whiten
    std: np.ndarray | None = field(default=None, repr=False)
    top: np.ndarray | None = field(default=None, repr=False)  # (k, d) for abtt

    def fit(self, x: np.ndarray) -> PostHocRefiner:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {self.kind!r}")
        x = _check(x).astype(np.float64)
        self.mean = x.mean(0)
        centred = x - self.mean
        if self.kind == "standardize":
            self.std = np.maximum(x.std(0), 1e-12)
        elif self.kind in ("whiten", "abtt"):
            cov = centred.T @ centred / len(x)
            u, s, _ = np.linalg.svd(cov)
            if self.kind == "whiten":
                keep = self.k or x.shape[1]
                self.matrix = u[:, :keep] / np.sqrt(np.maximum(s[:keep], 1e-12))
            else:
                self.top = u[:, : (self.k if self.k is not None else 3)].T
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = _check(x).astype(np.float64)
        if self.kind == "identity":
            out = x
        elif self.kind == "standardize":
            out = (x - self.mean) / self.std
        elif self.kind == "whiten":
            out = (x - self.mean) @ self.matrix
        else:
            centred = x - self.mean
            out = centred - (centred @ self.top.T) @ self.top
        return out.astype(np.float32)

    @property
    def name(self) -> str:
        return self.kind if self.k is None else f"{self.kind}-{self.k}"


def _check(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a (n, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or Inf")
    return x
