"""SimSkipHead: the paper's skip-connection refiner and training-only projector on (batch, d) tensors.

Usable without any backbone, on embeddings of any modality. Self-contained (the Hub copies it beside
modeling_simskip.py): torch and the standard library only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .augmentations import ViewArguments, make_view
from .losses import nt_xent_loss


class SimSkipLayer(nn.Sequential):
    """Linear -> BatchNorm -> ReLU -> Dropout (paper Fig. 3, Layers 1 and 2)."""

    def __init__(self, d_in: int, d_out: int, dropout: float, batch_norm: bool):
        norm = nn.BatchNorm1d(d_out) if batch_norm else nn.Identity()
        super().__init__(nn.Linear(d_in, d_out), norm, nn.ReLU(), nn.Dropout(dropout))


class SkipRefiner(nn.Module):
    """The refiner f: f(x) = x + s * W3 g2(g1(x)) (linear_position="residual_branch", eq. 2 exact) or
    f(x) = W3 (x + s * g2(g1(x))) ("after_skip"); without the skip (SimSkip-minus) the `x +` is gone."""

    def __init__(
        self,
        dim: int,
        hidden_dims=None,
        dropout: float = 0.1,
        batch_norm: bool = True,
        use_skip: bool = True,
        linear_position: str = "residual_branch",
        residual_scale: float = 1.0,
    ):
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
    """Refiner + projector + the per-dimension statistics of the training embeddings (buffers).

    ``head(x)`` is the training pass: (f(z), p(f(z))). ``head.embed(x)`` is what users get: f(z), or
    [z, f(z)] with output="concat", optionally L2-normalised (z = x unless standardize_input).
    """

    def __init__(
        self,
        dim: int,
        hidden_dims=None,
        projector_dim: int | None = None,
        dropout: float = 0.1,
        batch_norm: bool = True,
        use_skip: bool = True,
        linear_position: str = "residual_branch",
        residual_scale: float = 1.0,
        zero_init: bool = True,
        standardize_input: bool = False,
        output: str = "refined",
        normalize_embeddings: bool = False,
        with_projector: bool = True,
    ):
        super().__init__()
        self.dim = dim
        self.standardize_input = standardize_input
        self.output = output
        self.normalize_embeddings = normalize_embeddings
        self.refiner = SkipRefiner(dim, hidden_dims, dropout, batch_norm, use_skip, linear_position, residual_scale)
        self.projector = Projector(dim, projector_dim or dim) if with_projector else None
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_std", torch.ones(dim))
        if zero_init:
            self.refiner.reset_to_identity()

    @classmethod
    def from_config(cls, config, with_projector: bool = True) -> SimSkipHead:
        """The head a SimSkipConfig describes (``with_projector=False``: inference only, e.g. the
        sentence-transformers module)."""
        c = config
        return cls(
            c.embedding_dim,
            list(c.hidden_dims),
            c.projector_dim,
            c.dropout,
            c.batch_norm,
            c.use_skip,
            c.linear_position,
            c.residual_scale,
            c.zero_init,
            c.standardize_input,
            c.output,
            c.normalize_embeddings,
            with_projector,
        )

    @property
    def output_dim(self) -> int:
        return 2 * self.dim if self.output == "concat" else self.dim

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
        """The refiner's input: z = (x - mean) / std with the stored statistics, or x itself."""
        if not self.standardize_input:
            return x
        return (x - self.feature_mean.to(x.dtype)) / self.feature_std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(refined f(z), projections p(f(z))), both (batch, d); z = x unless standardize_input."""
        if self.training and x.shape[0] < 2 and any(isinstance(m, nn.BatchNorm1d) for m in self.modules()):
            raise ValueError(
                f"BatchNorm needs a batch of at least 2 rows in training mode, got {x.shape[0]}; "
                "call .eval() for inference or use drop_last=True when training"
            )
        refined = self.refiner(self.standardize(x))
        return refined, (self.projector(refined) if self.projector is not None else None)

    def embed(self, x: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        """The refined embedding of raw ``x`` (batch, d) -> (batch, output_dim): f(z), or [z, f(z)] with
        output="concat"; L2-normalised when ``normalize`` (default: normalize_embeddings)."""
        z = self.standardize(x)
        refined = self.refiner(z)
        out = torch.cat([z, refined], dim=-1) if self.output == "concat" else refined
        normalize = self.normalize_embeddings if normalize is None else normalize
        return F.normalize(out, dim=-1) if normalize else out


def contrastive_loss(
    head,
    x: torch.Tensor,
    views: ViewArguments,
    generator: torch.Generator | None = None,
    partner: torch.Tensor | None = None,
    group=None,
) -> torch.Tensor:
    """NT-Xent between the projections of two views of each row of ``x`` (N, d): two augmentations of
    ``x``, or one of ``x`` and one of its ``partner`` row (a neighbour or a dropout embedding of the same
    sentence). ``head`` may be wrapped (DDP): the forward goes through it, so hooks and autocast apply.
    Negatives come from every process of ``group`` (gathered with gradients)."""
    module = getattr(head, "module", head)
    module.check_input(x)
    stats = (generator, module.feature_mean, module.feature_std)
    v1 = make_view(x, views, *stats)
    v2 = make_view(x if partner is None else partner, views, *stats)
    n = x.shape[0]
    _, proj = head(torch.cat([v1, v2], dim=0))  # (2N, projector_dim): one pass, BatchNorm sees all 2N views
    if proj is None:
        raise ValueError("this head was built without its projector (inference only); it cannot be trained")
    return nt_xent_loss(proj[:n], proj[n:], views.temperature, group=group)
