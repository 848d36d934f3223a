"""SimSkipHead: the paper's skip-connection encoder and training-only projector on (batch, d) tensors.

Usable without any backbone, on embeddings of any modality. Self-contained (the Hub copies it
beside modeling_simskip.py): torch and the standard library only.
"""
from __future__ import annotations

import torch
from torch import nn

from .augmentations import two_views
from .losses import nt_xent_loss


class SimSkipLayer(nn.Sequential):
    """Linear -> BatchNorm -> ReLU -> Dropout (paper Fig. 3, Layers 1 and 2)."""

    def __init__(self, d_in: int, d_out: int, dropout: float, batch_norm: bool):
        norm = nn.BatchNorm1d(d_out) if batch_norm else nn.Identity()
        super().__init__(nn.Linear(d_in, d_out), norm, nn.ReLU(), nn.Dropout(dropout))


class SkipEncoder(nn.Module):
    """f(x) = x + s * W3 g2(g1(x)) (linear_position="residual_branch", eq. 2 exact) or
    f(x) = W3 (x + s * g2(g1(x))) ("after_skip"); without the skip (SimSkip-minus) the `x +` is gone."""

    def __init__(self, dim: int, hidden_dims=None, dropout: float = 0.1, batch_norm: bool = True,
                 use_skip: bool = True, linear_position: str = "residual_branch", residual_scale: float = 1.0):
        super().__init__()
        h1, h2 = hidden_dims or (max(dim // 2, 1), dim)
        if h2 != dim:
            raise ValueError(f"the second hidden width must equal dim={dim} for x + g(x), got {h2}")
        self.layer1 = SimSkipLayer(dim, h1, dropout, batch_norm)
        self.layer2 = SimSkipLayer(h1, h2, dropout, batch_norm)
        self.linear = nn.Linear(dim, dim)
        self.use_skip = use_skip
        self.linear_position = linear_position
        self.residual_scale = residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.layer2(self.layer1(x))  # (batch, d)
        if self.linear_position == "residual_branch":
            branch = self.residual_scale * self.linear(branch)
            return x + branch if self.use_skip else branch
        out = x + self.residual_scale * branch if self.use_skip else branch
        return self.linear(out)

    @torch.no_grad()
    def reset_to_identity(self, zeros_=nn.init.zeros_, eye_=nn.init.eye_) -> None:
        """Make f the identity: zero the residual branch's output (and W3 = I when it sits after the skip).
        ``zeros_``/``eye_`` let transformers pass its init functions, which skip loaded weights."""
        if self.linear_position == "residual_branch":
            zeros_(self.linear.weight)
            zeros_(self.linear.bias)
        else:
            last = self.layer2[0]
            zeros_(last.weight)
            zeros_(last.bias)
            eye_(self.linear.weight)
            zeros_(self.linear.bias)


class Projector(nn.Sequential):
    """W2 relu(W1 z): the training-only projector; the refined embedding is never its output."""

    def __init__(self, dim: int, projector_dim: int):
        super().__init__(nn.Linear(dim, projector_dim), nn.ReLU(), nn.Linear(projector_dim, projector_dim))


class SimSkipHead(nn.Module):
    """Encoder + projector + the per-dimension statistics of the training embeddings (buffers)."""

    def __init__(self, dim: int, hidden_dims=None, projector_dim: int | None = None, dropout: float = 0.1,
                 batch_norm: bool = True, use_skip: bool = True, linear_position: str = "residual_branch",
                 residual_scale: float = 1.0, zero_init: bool = True, standardize_input: bool = False):
        super().__init__()
        self.dim = dim
        self.standardize_input = standardize_input
        self.encoder = SkipEncoder(dim, hidden_dims, dropout, batch_norm, use_skip, linear_position, residual_scale)
        self.projector = Projector(dim, projector_dim or dim)
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_std", torch.ones(dim))
        if zero_init:
            self.encoder.reset_to_identity()

    @classmethod
    def from_config(cls, config) -> "SimSkipHead":
        return cls(config.embedding_dim, list(config.hidden_dims), config.projector_dim, config.dropout,
                   config.batch_norm, config.use_skip, config.linear_position, config.residual_scale,
                   config.zero_init, getattr(config, "standardize_input", False))

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"expected embeddings of shape (n, {self.dim}), got {tuple(x.shape)}")

    @torch.no_grad()
    def fit_statistics(self, x: torch.Tensor) -> None:
        """Store the per-dimension mean and std of the training embeddings (scale-aware views)."""
        self.check_input(x)
        x = x.float()
        self.feature_mean.copy_(x.mean(0))
        self.feature_std.copy_(x.std(0, unbiased=False).clamp_min(1e-8))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's input: z = (x - mean) / std with the stored statistics, or x itself."""
        if not self.standardize_input:
            return x
        return (x - self.feature_mean.to(x.dtype)) / self.feature_std.to(x.dtype)

    def refine(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, f(z)): the encoder's input and output, both (batch, d); no projector."""
        z = self.standardize(x)
        return z, self.encoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(refined f(z), projections p(f(z))), both (batch, d); z = x unless standardize_input."""
        if self.training and x.shape[0] < 2 and any(isinstance(m, nn.BatchNorm1d) for m in self.modules()):
            raise ValueError(f"BatchNorm needs a batch of at least 2 rows in training mode, got {x.shape[0]}; "
                             "call .eval() for inference or use drop_last=True when training")
        _, refined = self.refine(x)
        return refined, self.projector(refined)

    def contrastive_loss(self, x: torch.Tensor, augmentation: str, mask_ratio: float, noise_variance: float,
                         temperature: float, generator: torch.Generator | None = None, mask_fill: str = "mean",
                         group=None) -> torch.Tensor:
        """NT-Xent between the projections of two augmented views of each row of ``x`` (batch, d)."""
        self.check_input(x)
        fill = self.feature_mean if mask_fill == "mean" else None
        v1, v2 = two_views(x, augmentation, mask_ratio, noise_variance, generator, fill, self.feature_std)
        n = x.shape[0]
        _, proj = self(torch.cat([v1, v2], dim=0))  # one pass: BatchNorm sees all 2N views
        return nt_xent_loss(proj[:n], proj[n:], temperature, group=group)
