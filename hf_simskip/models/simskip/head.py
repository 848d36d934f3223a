"""SimSkipHead: the paper's skip-connection refiner and training-only projector on (batch, d) tensors.

Usable without any backbone, on embeddings of any modality. Self-contained (the Hub copies it beside
modeling_simskip.py): torch and the standard library only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .augmentations import ViewArguments, make_view
from .losses import distillation_loss, geometry_loss, nt_xent_loss


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


class LayerBranch(nn.Module):
    """u: what the frozen backbone's hidden layers add to x.

    The chosen pooled hidden states (batch, L, d) are each L2-normalised, concatenated and standardised
    with the per-dimension statistics of the training corpus (buffers), mapped by a linear map or a
    one-hidden-layer GELU MLP to ``out_dim`` (the features g), L2-normalised, and scaled by
    ``scale * gate``. ``gate`` is a switch, not a learned weight: 0 (zero-init) makes u = 0 and the head
    the identity, training opens it (1). ``scale`` bounds u's share of every cosine similarity of the
    output [f(z), u].
    """

    def __init__(self, dim: int, n_layers: int, out_dim: int, hidden_dim: int, scale: float):
        super().__init__()
        width = n_layers * dim
        self.n_layers, self.scale = n_layers, scale
        self.register_buffer("layer_mean", torch.zeros(width))
        self.register_buffer("layer_std", torch.ones(width))
        if hidden_dim:
            self.net = nn.Sequential(nn.Linear(width, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))
        else:
            self.net = nn.Sequential(nn.Linear(width, out_dim))
        self.gate = nn.Parameter(torch.zeros(()), requires_grad=False)

    @staticmethod
    def inputs_unstandardized(layer_states: torch.Tensor) -> torch.Tensor:
        """(batch, L, d) pooled hidden states -> (batch, L * d), each L2-normalised, concatenated."""
        return F.normalize(layer_states.float(), dim=-1).flatten(1)

    def inputs(self, layer_states: torch.Tensor) -> torch.Tensor:
        """The network's input: the normalised, concatenated layers, standardised with the corpus statistics."""
        return (self.inputs_unstandardized(layer_states) - self.layer_mean) / self.layer_std

    def features(self, layer_states: torch.Tensor) -> torch.Tensor:
        """g: the network's raw output (batch, out_dim), before normalisation and the gate."""
        return self.net(self.inputs(layer_states))

    def forward(self, layer_states: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.features(layer_states))

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        """u from the features g: normalised, scaled by ``scale * gate``."""
        return self.scale * self.gate * F.normalize(features, dim=-1)

    @property
    def is_open(self) -> bool:
        return bool(self.gate.item() != 0)

    @torch.no_grad()
    def open(self) -> None:
        """Switch u on (training does this after scoring the identity)."""
        self.gate.fill_(1.0)

    @torch.no_grad()
    def reset_to_identity(self, zeros_=nn.init.zeros_) -> None:
        zeros_(self.gate)


class SimSkipHead(nn.Module):
    """Refiner + optional layer branch + projector + the per-dimension statistics of the training data.

    The input ``h`` is the raw embedding x (batch, d), or for a layer-aware head (``n_layers`` > 0) the
    stack (batch, 1 + n_layers, d) of x and the pooled hidden layers. ``head(h)`` is the training pass:
    (output, projections). ``head.embed(h)`` is what users get: f(z), or [z, f(z)] with output="concat",
    or [f(z), u] with layers; optionally L2-normalised (z = x unless standardize_input).
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
        n_layers: int = 0,
        layer_dim: int | None = None,
        layer_hidden_dim: int = 0,
        layer_scale: float = 0.7,
    ):
        super().__init__()
        self.dim = dim
        self.n_layers = n_layers
        self.standardize_input = standardize_input
        self.output = output
        self.normalize_embeddings = normalize_embeddings
        self.refiner = SkipRefiner(dim, hidden_dims, dropout, batch_norm, use_skip, linear_position, residual_scale)
        self.layer_branch = (
            LayerBranch(dim, n_layers, layer_dim or dim, layer_hidden_dim, layer_scale) if n_layers else None
        )
        # the projector sees what the head learns: f(z) for the paper's head, the whole [f(z), u] otherwise
        projected = self.output_dim if n_layers else dim
        projector_dim = dim if projector_dim is None else projector_dim  # 0: NT-Xent on the output itself
        self.projector = Projector(projected, projector_dim) if with_projector and projector_dim else None
        # training-only, like the projector: reconstructs the branch's (standardised) input from its features g
        self.layer_decoder = (
            nn.Linear(self.layer_branch.net[-1].out_features, n_layers * dim) if with_projector and n_layers else None
        )
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_std", torch.ones(dim))
        if zero_init:
            self.reset_to_identity()

    @classmethod
    def from_config(cls, config, with_projector: bool = True) -> SimSkipHead:
        """The head a SimSkipConfig describes (``with_projector=False``: inference only, e.g. the
        sentence-transformers module)."""
        c = config
        layers = getattr(c, "layers", None)
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
            len(layers) if layers else 0,
            getattr(c, "layer_dim", None),
            getattr(c, "layer_hidden_dim", 0),
            getattr(c, "layer_scale", 0.7),
        )

    @torch.no_grad()
    def reset_to_identity(self, zeros_=nn.init.zeros_, eye_=nn.init.eye_) -> None:
        """The zero-init: f is the identity and u is 0 (``zeros_``/``eye_``: transformers' init functions,
        which leave loaded weights alone)."""
        self.refiner.reset_to_identity(zeros_=zeros_, eye_=eye_)
        if self.layer_branch is not None:
            self.layer_branch.reset_to_identity(zeros_=zeros_)

    @property
    def output_dim(self) -> int:
        if self.layer_branch is not None:
            return self.dim + self.layer_branch.net[-1].out_features
        return 2 * self.dim if self.output == "concat" else self.dim

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input row: (d,) or (1 + n_layers, d)."""
        return (1 + self.n_layers, self.dim) if self.n_layers else (self.dim,)

    def check_input(self, h) -> None:
        """ValueError unless ``h`` (a tensor, or anything with a ``shape``) holds rows of ``input_shape``."""
        want = self.input_shape
        if len(h.shape) != 1 + len(want) or tuple(h.shape[1:]) != want:
            shape = "(n, " + ", ".join(str(w) for w in want) + ")"
            hint = (
                f": row 0 the embedding x, then the {self.n_layers} pooled hidden layers this head reads"
                if self.n_layers
                else ""
            )
            raise ValueError(f"expected embeddings of shape {shape}{hint}, got {tuple(h.shape)}")

    def split(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(x (batch, d), pooled layers (batch, n_layers, d) or None)."""
        return (h[:, 0], h[:, 1:]) if self.n_layers else (h, None)

    @torch.no_grad()
    def fit_statistics(self, h, chunk: int = 8192) -> None:
        """Store the per-dimension mean and std of the training data (the scale of the views, and the
        layer branch's standardisation); ``h`` is a tensor or anything with ``len()`` and slicing (a
        memory-mapped table), read ``chunk`` rows at a time."""
        n = len(h)
        sums = None
        for start in range(0, n, chunk):
            block = torch.as_tensor(h[start : start + chunk]).float()
            self.check_input(block)
            x, layer_states = self.split(block)
            parts = [x] + ([self.layer_branch.inputs_unstandardized(layer_states)] if self.n_layers else [])
            cols = torch.cat(parts, dim=1)  # (rows, d [+ L * d])
            step = torch.stack([cols.sum(0), (cols.double() ** 2).sum(0).float()])
            sums = step if sums is None else sums + step
        if sums is None:
            raise ValueError("cannot fit statistics on no rows")
        mean = sums[0] / n
        std = (sums[1] / n - mean.double() ** 2).clamp_min(0).sqrt().float().clamp_min(1e-8)
        self.feature_mean.copy_(mean[: self.dim])
        self.feature_std.copy_(std[: self.dim])
        if self.layer_branch is not None:
            self.layer_branch.layer_mean.copy_(mean[self.dim :])
            self.layer_branch.layer_std.copy_(std[self.dim :].clamp_min(1e-6))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """The refiner's input: z = (x - mean) / std with the stored statistics, or x itself."""
        if not self.standardize_input:
            return x
        return (x - self.feature_mean.to(x.dtype)) / self.feature_std.to(x.dtype)

    def _output(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(unnormalised output, f(z), the layer branch's features g or None)."""
        x, layer_states = self.split(h)
        z = self.standardize(x)
        refined = self.refiner(z)
        if self.layer_branch is not None:
            features = self.layer_branch.features(layer_states)  # computed once, for the output and the losses
            # u is scaled by |x| per row, so that its share of every cosine is `scale` whatever x's norm
            u = self.layer_branch.from_features(features) * x.float().norm(dim=-1, keepdim=True)
            return torch.cat([refined, u.to(refined.dtype)], dim=-1), refined, features
        return (torch.cat([z, refined], dim=-1) if self.output == "concat" else refined), refined, None

    def forward(self, h: torch.Tensor, return_layer_features: bool = False) -> tuple:
        """(output, projections): the unnormalised output (batch, output_dim) and the projector's view of
        what the head learns (f(z) for the paper's head, the whole output with layers), or None.
        ``return_layer_features`` (layer-aware heads) adds the layer branch's features g (batch, layer_dim)
        and the decoder's reconstruction of the branch's input from them (or None without a decoder)."""
        if self.training and h.shape[0] < 2 and any(isinstance(m, nn.BatchNorm1d) for m in self.modules()):
            raise ValueError(
                f"BatchNorm needs a batch of at least 2 rows in training mode, got {h.shape[0]}; "
                "call .eval() for inference or use drop_last=True when training"
            )
        self.check_input(h)
        out, refined, features = self._output(h)
        projected = out if self.n_layers else refined
        projections = self.projector(projected) if self.projector is not None else None
        if not return_layer_features:
            return out, projections
        if self.layer_branch is None:
            raise ValueError("return_layer_features needs a layer-aware head (config.layers)")
        decoded = self.layer_decoder(features) if self.layer_decoder is not None else None
        return out, projections, features, decoded

    def embed(self, h: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        """The refined embedding of a raw input (see the class) -> (batch, output_dim), L2-normalised when
        ``normalize`` (default: normalize_embeddings)."""
        out = self._output(h)[0]
        normalize = self.normalize_embeddings if normalize is None else normalize
        return F.normalize(out, dim=-1) if normalize else out


def contrastive_loss(
    head,
    h: torch.Tensor,
    views: ViewArguments,
    generator: torch.Generator | None = None,
    partner: torch.Tensor | None = None,
    group=None,
    geometry_weight: float = 0.0,
    contrastive_weight: float = 1.0,
    distillation_weight: float = 0.0,
    reconstruction_weight: float = 0.0,
    distillation_temperature: float = 0.05,
) -> torch.Tensor:
    """The head's training loss on a batch ``h`` of raw inputs, a weighted sum of:

    - NT-Xent (``contrastive_weight``) between the projections (or, without a projector, the outputs) of
      two views of each row: two augmentations, or one of ``h`` and one of its ``partner`` row (a
      neighbour or a dropout embedding of the same sentence); the augmentations change the embedding x
      (row 0 of a layer stack). Negatives come from every process of ``group`` (gathered with gradients).
    - :func:`geometry_loss` (``geometry_weight``) of the outputs against x;
    - for a layer-aware head, :func:`distillation_loss` of the layer features g against x
      (``distillation_weight``, per process) and the mean squared error of the decoder's reconstruction
      of the branch's standardised input from g (``reconstruction_weight``): g learns the backbone's
      neighbourhoods and keeps the layers' information.

    ``head`` may be wrapped (DDP): the forward goes through it, so hooks and autocast apply."""
    module = getattr(head, "module", head)
    module.check_input(h)
    layer_terms = bool(module.n_layers) and bool(distillation_weight or reconstruction_weight)
    if not (contrastive_weight or geometry_weight or layer_terms):
        raise ValueError(
            "every loss weight is 0: set contrastive_weight or geometry_weight > 0 (or, for a layer-aware "
            "head, distillation_weight or reconstruction_weight)"
        )
    n = h.shape[0]
    if contrastive_weight:
        stats = (generator, module.feature_mean, module.feature_std)
        v1, v2 = _view(module, h, views, stats), _view(module, h if partner is None else partner, views, stats)
        batch = torch.cat([v1, v2], dim=0)  # one pass over the 2N views: BatchNorm sees all of them
    else:
        batch = h  # the other terms read the rows themselves
    if layer_terms:
        out, proj, features, decoded = head(batch, return_layer_features=True)
    else:
        out, proj = head(batch)
    x = module.split(h)[0]
    loss = out.new_zeros((), dtype=torch.float32)
    if contrastive_weight:
        if proj is None and module.n_layers == 0:
            raise ValueError("this head was built without its projector (inference only); it cannot be trained")
        pairs = out if proj is None else proj
        loss = loss + contrastive_weight * nt_xent_loss(pairs[:n], pairs[n:], views.temperature, group=group)
    if geometry_weight:
        loss = loss + geometry_weight * geometry_loss(out[:n], x)
    if layer_terms and distillation_weight:
        loss = loss + distillation_weight * distillation_loss(features[:n], x, distillation_temperature)
    if layer_terms and reconstruction_weight:
        if decoded is None:
            raise ValueError("this head was built without its decoder (inference only); it cannot be trained")
        target = module.layer_branch.inputs(module.split(h)[1])
        with torch.autocast(device_type=decoded.device.type, enabled=False):
            loss = loss + reconstruction_weight * F.mse_loss(decoded[:n].float(), target.float())
    return loss


def _view(module, h, views, stats):
    if views.augmentation == "none":
        return h
    if not module.n_layers:
        return make_view(h, views, *stats)
    return torch.cat([make_view(h[:, 0], views, *stats).unsqueeze(1), h[:, 1:]], dim=1)
