"""A batched L2-regularised logistic-regression probe: many folds x many C values in one optimisation.

Each problem b (a training mask ``m_f`` over the shared rows and a strength ``C``) minimises exactly
scikit-learn's LogisticRegression objective (lbfgs, default penalty):

    C * sum_i m_fi * loss_i(W, b) + 0.5 * ||W||^2        (the intercept is not penalised)

with the sigmoid loss for two classes (one weight vector, like sklearn) and the multinomial
(softmax, symmetric parametrisation) loss otherwise. All problems share one feature matrix, so a
forward pass for every fold is one matrix product. The grid values are solved as a regularisation
path: one column at a time in increasing C (all folds at once), each warm-started from the previous
column's optimum, which cuts Newton and CG steps ~4x (and keeps standardised, larger-scale
features from stalling). The solver is an inexact
Newton method: conjugate gradients on exact Hessian-vector products, preconditioned by
``(c * C * n_f * Gram/n + I)^-1``, where Gram/n is eigendecomposed once per call and c is the mean
loss curvature of each problem at the current iterate (1/4 or 1/2, the Boehning bound, at the
start). The preconditioner follows the feature scale (Gram grows with it), which keeps 10-100x
larger embeddings from stalling the solver; then a backtracking (Armijo) line search per problem.
Convergence is judged per problem by the Newton decrement and the largest gradient entry, both
relative to ``C * n_f`` (the loss sum); problems that stop unconverged are logged as a warning
and flagged (ProbeFit.converged), never hidden. The same code runs on CPU and GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)


@dataclass
class ProbeFit:
    weights: torch.Tensor  # (F, G, p, K): p = d + 1 (last row: intercept), K = 1 (binary) or classes
    converged: torch.Tensor  # (F, G) bool
    iterations: int

    def decision(self, X: torch.Tensor) -> torch.Tensor:
        """Scores (F, G, n, K) for rows X (n, d)."""
        xa = _augment(X.to(self.weights.dtype))
        return torch.einsum("np,fgpk->fgnk", xa, self.weights)

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """Predicted class ids (F, G, n), the way sklearn's predict decides."""
        z = self.decision(X)
        return (z[..., 0] > 0).long() if z.shape[-1] == 1 else z.argmax(-1)


def _augment(X: torch.Tensor) -> torch.Tensor:
    return torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], dim=1)


class _Problems:
    """The batched objective: features (n, p), masks (F, n), strengths (F, G), K outputs.

    Weights and per-row quantities keep the problems in their trailing dimensions (W: (p, F, G, K),
    logits: (n, F, G, K)) so every pass over the data is one plain matrix product.
    """

    def __init__(self, X, y, masks, Cs, nclasses):
        self.xa = _augment(X)  # (n, p)
        self.n, self.p = self.xa.shape
        self.masks = masks.to(X.dtype)  # (F, n)
        self.Cs = Cs.to(X.dtype)  # (F, G)
        self.F, self.G = self.Cs.shape
        self.K = 1 if nclasses == 2 else nclasses
        if self.K == 1:
            self.Y = y.to(X.dtype)[:, None, None, None]  # (n, 1, 1, 1)
        else:
            self.Y = torch.nn.functional.one_hot(y, nclasses).to(X.dtype)[:, None, None, :]  # (n, 1, 1, K)
        self.reg = torch.ones(self.p, 1, 1, 1, dtype=X.dtype, device=X.device)
        self.reg[-1] = 0.0  # intercept not penalised
        self.weight = (self.masks.T[:, :, None] * self.Cs[None]).unsqueeze(-1)  # (n, F, G, 1): C * m
        self.scale = self.Cs * self.masks.sum(1, keepdim=True)  # (F, G): C * n_f, the loss scale
        self._preconditioner()

    def _preconditioner(self) -> None:
        # one eigendecomposition of the (row-averaged) Gram matrix serves every fold and C
        xa = self.xa.double()
        evals, evecs = torch.linalg.eigh(xa.T @ xa / self.n)  # (p,), (p, p)
        self.evals = evals.clamp_min(0).to(self.xa.dtype)
        self.evecs = evecs.to(self.xa.dtype)
        self.set_curvature(
            torch.full(
                (self.F, self.G, self.K), 0.25 if self.K == 1 else 0.5, dtype=self.xa.dtype, device=self.xa.device
            )
        )

    def set_curvature(self, curv) -> None:
        """Block-diagonal preconditioner (curv_k * C * n_f * Gram/n + I)^-1 per class k, with curv
        (F, G, K) the mean curvature of the loss per class at the current iterate (1/4 or 1/2 at the
        start: the Boehning bound)."""
        lam = (curv * self.scale[..., None])[None] * self.evals[:, None, None, None]  # (p, F, G, K)
        self.pre_scale = 1.0 / (lam + 1.0)

    def curvature(self, prob):  # mean Hessian diagonal weight per class over training rows, (F, G, K)
        d = (self.weight * (prob * (1 - prob))).sum(0)  # (F, G, K)
        if self.K > 1:  # softmax: one curvature for all classes (per-class blocks stalled CG on TREC)
            d = d.mean(-1, keepdim=True).expand_as(d)
        return (d / self.scale[..., None].to(d.dtype)).clamp_min(1e-6)

    def logits(self, W):  # W (p, F, G, K) -> (n, F, G, K)
        return (self.xa @ W.reshape(self.p, -1)).view(self.n, self.F, self.G, self.K)

    def back(self, R, W):  # Xa^T R + reg * W, R (n, F, G, K) -> (p, F, G, K)
        return (self.xa.T @ R.reshape(self.n, -1)).view(W.shape) + self.reg * W

    def _loss_prob(self, z):
        if self.K == 1:
            return torch.nn.functional.softplus(z) - self.Y * z, torch.sigmoid(z)
        lse = torch.logsumexp(z, dim=-1, keepdim=True)
        return lse - (self.Y * z).sum(-1, keepdim=True), torch.exp(z - lse)

    def value_and_grad(self, W):
        loss, prob = self._loss_prob(self.logits(W))
        value = self.value_from(loss, W)
        return value, self.back(self.weight * (prob - self.Y), W), prob

    def value_from(self, loss, W):
        data = (self.weight * loss).sum((0, 3), dtype=torch.float64)
        return data + 0.5 * (self.reg * W * W).sum((0, 3), dtype=torch.float64)  # (F, G)

    def value(self, W):
        return self.value_from(self._loss_prob(self.logits(W))[0], W)

    def hvp(self, prob, V):
        zv = self.logits(V)
        if self.K == 1:
            r = prob * (1 - prob) * zv
        else:
            pz = prob * zv
            r = pz - prob * pz.sum(-1, keepdim=True)
        return self.back(self.weight * r, V)

    def precondition(self, R):  # apply the preconditioner to R (p, F, G, K)
        t = (self.evecs.T @ R.reshape(self.p, -1)).view(R.shape) * self.pre_scale
        return (self.evecs @ t.reshape(self.p, -1)).view(R.shape)


def _dot(a, b):
    return (a * b).sum((0, 3), dtype=torch.float64)


def _pcg(prob_obj: _Problems, prob, grad, active, max_iter: int):
    """Approximately solve H s = -grad per problem; inactive problems keep s = 0."""
    x = torch.zeros_like(grad)
    r = -grad * active[None, :, :, None]
    z = prob_obj.precondition(r)
    d = z.clone()
    rz = _dot(r, z)
    gnorm = _dot(grad, grad).sqrt()
    # forcing term: stop when ||r|| <= eta * ||g|| (superlinear once ||g|| is small)
    eta = torch.clamp((gnorm / prob_obj.scale).sqrt(), min=1e-3, max=0.5)
    todo = active.clone()
    for _ in range(max_iter):
        hd = prob_obj.hvp(prob, d)
        dhd = _dot(d, hd)
        alpha = torch.where(todo & (dhd > 0), rz / dhd.clamp_min(1e-300), torch.zeros_like(rz))
        x = x + _b(alpha, d) * d
        r = r - _b(alpha, hd) * hd
        todo = todo & (_dot(r, r).sqrt() > eta * gnorm)
        if not bool(todo.any()):
            break
        z = prob_obj.precondition(r)
        rz_new = _dot(r, z)
        beta = torch.where(todo, rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))
        d = z + _b(beta, d) * d
        rz = rz_new
    return x


def fit_logistic(
    X: torch.Tensor,
    y: torch.Tensor,
    masks: torch.Tensor,
    Cs: torch.Tensor,
    nclasses: int,
    tol: float = 1e-9,
    gtol: float = 1e-6,
    max_iter: int = 100,
    cg_iter: int = 100,
) -> ProbeFit:
    """Fit F x G logistic regressions at once.

    X (n, d) float features; y (n,) int labels in [0, nclasses); masks (F, n) bool, the training rows
    of each fold; Cs (F, G) inverse regularisation strengths (sklearn's ``C``). ``tol`` bounds the
    Newton decrement per unit of loss scale (C * n_f): the predicted remaining decrease of the mean
    log-loss; ``gtol`` bounds the largest gradient entry per unit of loss scale. Returns a ProbeFit; unconverged problems are logged as a warning and flagged.
    """
    if X.ndim != 2 or masks.ndim != 2 or Cs.ndim != 2 or masks.shape[1] != X.shape[0]:
        raise ValueError(
            f"expected X (n, d), masks (F, n), Cs (F, G); got X {tuple(X.shape)}, "
            f"masks {tuple(masks.shape)}, Cs {tuple(Cs.shape)}"
        )
    if masks.shape[0] != Cs.shape[0]:
        raise ValueError(f"masks and Cs need the same number of folds, got {masks.shape[0]} and {Cs.shape[0]}")
    # regularisation path: solve one grid column at a time in increasing C, each warm-started
    # from the previous column's optimum (the same objective; far fewer Newton/CG steps)
    order = torch.argsort(Cs.mean(0)).tolist()
    W = None
    weights, conv, iters = [None] * Cs.shape[1], [None] * Cs.shape[1], 0
    for g in order:
        obj = _Problems(X, y, masks, Cs[:, g : g + 1], nclasses)
        W, conv[g], it = _newton(obj, W, tol, gtol, max_iter, cg_iter)
        weights[g], iters = W, max(iters, it)
    W, converged = torch.cat(weights, dim=2), torch.cat(conv, dim=1)
    if not bool(converged.all()):
        logger.warning(
            "logistic probe: %d of %d problems did not converge in %d Newton iterations",
            int((~converged).sum()),
            converged.numel(),
            max_iter,
        )
    return ProbeFit(W.permute(1, 2, 0, 3).contiguous(), converged, iters)


def _newton(obj: _Problems, W, tol, gtol, max_iter, cg_iter):
    if W is None:
        W = torch.zeros(obj.p, obj.F, obj.G, obj.K, dtype=obj.xa.dtype, device=obj.xa.device)
    converged = torch.zeros(obj.F, obj.G, dtype=torch.bool, device=W.device)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        value, grad, prob = obj.value_and_grad(W)
        gmax = grad.abs().amax((0, 3)) / obj.scale
        converged |= gmax < gtol
        active = ~converged
        if not bool(active.any()):
            break
        obj.set_curvature(obj.curvature(prob))
        step = _pcg(obj, prob, grad, active, cg_iter)
        decrement = -_dot(grad, step)  # Newton decrement^2 (>= 0)
        converged |= active & (decrement / obj.scale < tol)
        W = _line_search(obj, W, step, value, decrement, active)
        if obj.K > 1:  # softmax intercepts are defined up to a constant: keep them centred
            W[-1] -= W[-1].mean(-1, keepdim=True)
    return W, converged, it


def _b(v, like=None):  # (F, G) -> broadcastable against (p, F, G, K)
    return (v if like is None else v.to(like.dtype))[None, :, :, None]


def _line_search(obj: _Problems, W, step, value, decrement, active, max_halvings: int = 30):
    t = torch.ones_like(value)
    slack = 8 * torch.finfo(W.dtype).eps * value.abs()
    pending = active.clone()
    new_W = W
    for _ in range(max_halvings):
        cand = W + _b(t * pending, W) * step
        # slack: in float32 the objective itself is only known to a few ulps
        ok = obj.value(cand) <= value - 1e-4 * t * decrement + slack
        accept = pending & ok
        new_W = torch.where(_b(accept), cand, new_W)
        pending = pending & ~ok
        if not bool(pending.any()):
            break
        t = torch.where(pending, t * 0.5, t)
    return new_W
