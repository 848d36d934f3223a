"""Post-hoc refiners used as controls for SimSkip: fitted on the same unlabeled corpus
embeddings, applied to any (n, d) array. A refinement from SimSkip counts only where it beats these.

- identity: the backbone as is.
- standardize: per-dimension z-score (mean/std of the corpus).
- whiten: BERT-whitening (Su et al. 2021): (x - mu) U S^-1/2, optionally keeping the top k directions.
- abtt: all-but-the-top (Mu & Viswanath 2018): remove the mean and the top D principal directions.
- LayerControl: what the frozen backbone's hidden layers give without training: concatenations of the
  embedding with pooled layers (optionally down-weighted), their mean, and a PCA of them.
"""

from __future__ import annotations

import re
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


PART = re.compile(r"^(?:(?P<weight>\d*\.?\d+)\*)?(?P<name>x|L(?P<layer>\d+))$")


@dataclass
class LayerControl:
    """Untrained (or only fitted) controls on the backbone's hidden layers, from the stacks
    S (n, 1 + H, d) of the experiment cache: S[:, 0] is the embedding x, S[:, 1 + k] the pooled hidden
    state k (L_k below is it L2-normalised).

    kind "concat": [w1 * part1, w2 * part2, ...] with parts like "x", "L4", "0.5*L4";
    kind "mean":   the L2-normalised mean of the L2-normalised parts (one d-wide vector);
    kind "pca":    [x, weight * normalise(P z)], z the standardised concatenation of the parts and P its
                   top ``dim`` principal directions on the corpus (fitted, not trained).
    """

    kind: str
    parts: list = field(default_factory=list)
    dim: int = 384
    weight: float = 0.5
    mean: np.ndarray | None = field(default=None, repr=False)
    std: np.ndarray | None = field(default=None, repr=False)
    basis: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.kind not in ("concat", "mean", "pca"):
            raise ValueError(f"layer control kind must be 'concat', 'mean' or 'pca', got {self.kind!r}")
        bad = [p for p in self.parts if not PART.match(str(p))]
        if bad or not self.parts:
            raise ValueError(f"layer control parts must be like 'x', 'L4' or '0.5*L4', got {self.parts!r}")

    def _parts(self, S: np.ndarray) -> list[np.ndarray]:
        out = []
        for part in self.parts:
            m = PART.match(str(part))
            v = S[:, 0] if m["name"] == "x" else _l2n(S[:, 1 + int(m["layer"])])
            out.append(v * float(m["weight"] or 1.0))
        return out

    def fit(self, S: np.ndarray) -> LayerControl:
        if self.kind == "pca":
            z = np.concatenate(self._parts(S), axis=1).astype(np.float64)
            self.mean, self.std = z.mean(0), np.maximum(z.std(0), 1e-6)
            z = (z - self.mean) / self.std
            evals, evecs = np.linalg.eigh(z.T @ z / len(z))
            self.basis = evecs[:, ::-1][:, : self.dim]  # top principal directions first
        return self

    def transform(self, S: np.ndarray) -> np.ndarray:
        parts = self._parts(S)
        if self.kind == "concat":
            return np.concatenate(parts, axis=1).astype(np.float32)
        if self.kind == "mean":
            return _l2n(sum(parts)).astype(np.float32)
        z = (np.concatenate(parts, axis=1) - self.mean) / self.std
        return np.concatenate([S[:, 0], self.weight * _l2n(z @ self.basis)], axis=1).astype(np.float32)

    @property
    def name(self) -> str:
        return f"{self.kind}[{', '.join(map(str, self.parts))}]"


def _l2n(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
