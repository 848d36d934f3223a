"""SimSkipHead: the paper's skip-connection refiner, the layer branch and the training-only parts, built from a
SimSkipConfig (as transformers modules take ``config``) and run on the head's raw inputs, no backbone needed.

The raw input of a head is ``x`` (batch, d), or for a layer-aware head the stack (batch, 1 + L, d) of ``x`` and
the L pooled hidden layers: :func:`split_inputs` names the two parts, once. Self-contained (the Hub copies it
beside modeling_simskip.py): torch and the standard library only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# the closed-form fit reads at most this many corpus rows (evenly spaced): second moments of a few hundred
# thousand rows are as good as of a million, and the fit stays in seconds
CLOSED_FORM_MAX_ROWS = 262_144


def split_inputs(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The head's raw input -> (x (batch, d), the pooled layers (batch, L, d), or None for a (batch, d) input)."""
    return (h[:, 0], h[:, 1:]) if h.dim() == 3 else (h, None)


def unit(v: torch.Tensor) -> torch.Tensor:
    """L2-normalise the last dimension in float32 without overflow (rows of 1e20 stay finite)."""
    v = v.float()
    peak = v.abs().amax(dim=-1, keepdim=True).clamp_min(1e-30)
    return F.normalize(v / peak, dim=-1)


def row_norm(v: torch.Tensor) -> torch.Tensor:
    """|v| per row (batch, 1) in float32 without overflow: the largest entry is factored out first."""
    v = v.float()
    peak = v.abs().amax(dim=-1, keepdim=True)
    return peak * (v / peak.clamp_min(1e-30)).norm(dim=-1, keepdim=True)


class HeadOutput(NamedTuple):
    """What a training pass of the head returns.

    output: (batch, output_dim), unnormalised (``embed`` normalises when the config says so).
    projections: (batch, projector_dim), the projector's view of what the head learns, or None.
    layer_features: (batch, layer_dim), the layer branch's features g before normalisation and the gate, or None.
    reconstruction: (batch, L * d), the decoder's rebuild of the branch's standardised input from g, or None.
    """

    output: torch.Tensor
    projections: torch.Tensor | None = None
    layer_features: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None


class SimSkipLayer(nn.Sequential):
    """Linear -> BatchNorm -> ReLU -> Dropout (paper Fig. 3, Layers 1 and 2)."""

    def __init__(self, d_in: int, d_out: int, dropout: float, batch_norm: bool):
        norm = nn.BatchNorm1d(d_out) if batch_norm else nn.Identity()
        super().__init__(nn.Linear(d_in, d_out), norm, nn.ReLU(), nn.Dropout(dropout))


class SkipRefiner(nn.Module):
    """The refiner f: f(x) = x + s * W3 g2(g1(x)) (linear_position="residual_branch", eq. 2 exact) or
    f(x) = W3 (x + s * g2(g1(x))) ("after_skip"); without the skip (SimSkip-minus) the `x +` is gone."""

    def __init__(self, config):
        super().__init__()
        d = config.embedding_dim
        h1, h2 = config.hidden_dims
        self.layer1 = SimSkipLayer(d, h1, config.dropout, config.batch_norm)
        self.layer2 = SimSkipLayer(h1, h2, config.dropout, config.batch_norm)
        self.linear = nn.Linear(d, d)
        self.use_skip = config.use_skip
        self.linear_position = config.linear_position
        self.residual_scale = config.residual_scale

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

    def __init__(self, in_dim: int, config):
        width = config.projector_dim
        super().__init__(nn.Linear(in_dim, width), nn.ReLU(), nn.Linear(width, width))


class LayerBranch(nn.Module):
    """u: what the frozen backbone's hidden layers add to x.

    The pooled hidden states (batch, L, d) are each L2-normalised, concatenated and standardised with the
    training corpus's per-dimension statistics (buffers): ``h`` (batch, L * d). The features are
    ``g = C [h, z_x] + MLP(h)``: ``C`` (``closed_form``, config.layer_closed_form) is fitted in closed form on the
    corpus (:meth:`fit_closed_form`: a PCA of h, or of the part of h that the standardised x, z_x, does not
    predict linearly), the MLP (config.layer_hidden_dim) is a non-linear correction whose last layer starts at
    zero, so an untrained head's g is exactly the closed form. Without a closed form (folders of hf_simskip
    <= 0.2) the MLP, or a Linear when layer_hidden_dim is 0, is the whole branch.
    u = scale * gate * |x| * g / |g|. ``gate`` is a switch, not a learned weight: 0 (zero-init) makes u = 0 and
    the head the identity; training opens it after the identity has been scored. ``scale`` bounds u's share of
    every cosine similarity of the output [f(z), u].
    """

    def __init__(self, config):
        super().__init__()
        d, n_layers, out = config.embedding_dim, len(config.layers), config.layer_dim
        width = n_layers * d
        self.scale = config.layer_scale
        self.closed_form_kind = config.layer_closed_form
        self.register_buffer("layer_mean", torch.zeros(width))
        self.register_buffer("layer_std", torch.ones(width))
        self.closed_form = nn.Linear(width + d, out) if config.layer_closed_form else None
        hidden = config.layer_hidden_dim
        if hidden:
            self.net = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, out))
        elif self.closed_form is None:  # hf_simskip 0.2's linear branch
            self.net = nn.Sequential(nn.Linear(width, out))
        else:
            self.net = None
        self.gate = nn.Parameter(torch.zeros(()), requires_grad=False)

    @staticmethod
    def inputs_unstandardized(layer_states: torch.Tensor) -> torch.Tensor:
        """(batch, L, d) pooled hidden states -> (batch, L * d), each L2-normalised, concatenated."""
        return unit(layer_states).flatten(1)

    def inputs(self, layer_states: torch.Tensor) -> torch.Tensor:
        """h: the normalised, concatenated layers, standardised with the corpus statistics (batch, L * d)."""
        return (self.inputs_unstandardized(layer_states) - self.layer_mean) / self.layer_std

    def features(self, layer_states: torch.Tensor, z_x: torch.Tensor) -> torch.Tensor:
        """g (batch, layer_dim): the branch's raw output, before normalisation and the gate; ``z_x`` is x
        standardised with the head's statistics (the residual closed form subtracts what it predicts)."""
        h = self.inputs(layer_states)
        g = self.closed_form(torch.cat([h, z_x.to(h.dtype)], dim=-1)) if self.closed_form is not None else 0.0
        return g + self.net(h) if self.net is not None else g

    def from_features(self, features: torch.Tensor, x_norm: torch.Tensor) -> torch.Tensor:
        """u from the features g and |x| (batch, 1): unit length, scaled by ``scale * gate * |x|``."""
        return self.scale * self.gate * unit(features) * x_norm

    @property
    def is_open(self) -> bool:
        return bool(self.gate.item() != 0)

    @torch.no_grad()
    def open(self) -> None:
        """Switch u on (training does this after scoring the identity)."""
        self.gate.fill_(1.0)

    @torch.no_grad()
    def close(self) -> None:
        """Switch u off: the head returns [f(z), 0]."""
        self.gate.zero_()

    @torch.no_grad()
    def reset_to_identity(self, zeros_=nn.init.zeros_) -> None:
        """Close the gate, and start the MLP at zero when a closed form carries the initial features."""
        zeros_(self.gate)
        if self.closed_form is not None and self.net is not None:
            zeros_(self.net[-1].weight)
            zeros_(self.net[-1].bias)

    @torch.no_grad()
    def fit_closed_form(self, mean: torch.Tensor, second: torch.Tensor, x_std: torch.Tensor) -> None:
        """Set ``closed_form`` from the corpus's moments of v = [x, h_raw] (h_raw: the normalised, concatenated
        layers, before standardisation): ``mean`` (D,) and ``second`` (D, D), E[v v^T], in float64, and the std of
        x. pca: the top ``layer_dim`` principal directions of the standardised layers h; residual_pca: the same
        of r = h - A z_x, A the least-squares map from the standardised x (ridge 1e-3 of the mean variance)."""
        d = x_std.numel()
        cov = second - torch.outer(mean, mean)  # (D, D)
        std = torch.cat([x_std.double(), self.layer_std.double()])
        corr = cov / torch.outer(std, std)  # the covariance of [z_x, h]
        c_hh, c_hx, c_xx = corr[d:, d:], corr[d:, :d], corr[:d, :d]
        if self.closed_form_kind == "residual_pca":
            ridge = 1e-3 * c_xx.diagonal().mean() * torch.eye(d, dtype=c_xx.dtype)
            predict = torch.linalg.solve(c_xx + ridge, c_hx.T).T  # A (L*d, d): E[h | z_x] = A z_x
            c_hh = c_hh - predict @ c_hx.T  # the covariance of the residual r = h - A z_x
        else:
            predict = torch.zeros_like(c_hx)
        evals, evecs = torch.linalg.eigh((c_hh + c_hh.T) / 2)
        basis = evecs[:, torch.argsort(evals, descending=True)[: self.closed_form.out_features]]  # (L*d, k)
        if basis.shape[1] < self.closed_form.out_features:
            raise ValueError(
                f"layer_dim={self.closed_form.out_features} exceeds the {basis.shape[1]} dimensions of the layers"
            )
        weight = torch.cat([basis.T, -basis.T @ predict], dim=1)  # g = P^T (h - A z_x): (k, L*d + d)
        self.closed_form.weight.copy_(weight.to(self.closed_form.weight.dtype))
        self.closed_form.bias.zero_()  # h and z_x are centred by the standardisation


class SimSkipHead(nn.Module):
    """The refiner, the optional layer branch and the per-dimension statistics of the training data, plus the
    training-only parts (``with_training_parts``): the projector and, for a layer-aware head, the decoder that
    rebuilds the layer branch's input from its features.

    ``head(h)`` is the training pass (a :class:`HeadOutput`); ``head.embed(h)`` is what users get: f(z),
    [z, f(z)] with output="concat", or [f(z), u] with layers; L2-normalised when the config says so
    (z = x unless standardize_input).
    """

    def __init__(self, config, with_training_parts: bool = True):
        super().__init__()
        self.config = config
        d = config.embedding_dim
        self.refiner = SkipRefiner(config)
        self.layer_branch = LayerBranch(config) if config.layer_aware else None
        # the projector sees what the head learns: f(z) for the paper's head, the whole [f(z), u] otherwise
        projected = config.output_dim if config.layer_aware else d
        with_projector = with_training_parts and config.projector_dim
        self.projector = Projector(projected, config) if with_projector else None
        with_decoder = with_training_parts and config.layer_aware
        self.layer_decoder = nn.Linear(config.layer_dim, len(config.layers or ()) * d) if with_decoder else None
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        if config.zero_init:
            self.reset_to_identity()

    @torch.no_grad()
    def reset_to_identity(self, zeros_=nn.init.zeros_, eye_=nn.init.eye_) -> None:
        """The zero-init: f is the identity and u is 0 (``zeros_``/``eye_``: transformers' init functions,
        which leave loaded weights alone)."""
        self.refiner.reset_to_identity(zeros_=zeros_, eye_=eye_)
        if self.layer_branch is not None:
            self.layer_branch.reset_to_identity(zeros_=zeros_)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input row: (d,) or (1 + L, d)."""
        return self.config.input_shape

    def set_layer_scale(self, scale: float) -> None:
        """The weight of u in the output, in the branch and in the config (saved with the model): the dev
        selection chooses it per backbone."""
        if self.layer_branch is None:
            raise ValueError("set_layer_scale needs a layer-aware head (config.layers)")
        self.config.layer_scale = float(scale)
        self.config.validate()
        self.layer_branch.scale = float(scale)

    def check_input(self, h) -> None:
        """ValueError unless ``h`` (a tensor, or anything with a ``shape``) holds rows of ``input_shape``."""
        want = self.input_shape
        if len(h.shape) != 1 + len(want) or tuple(h.shape[1:]) != want:
            shape = "(n, " + ", ".join(str(w) for w in want) + ")"
            hint = (
                f": row 0 the embedding x, then the {want[0] - 1} pooled hidden layers this head reads"
                if len(want) == 2
                else ""
            )
            raise ValueError(f"expected embeddings of shape {shape}{hint}, got {tuple(h.shape)}")

    @torch.no_grad()
    def fit_statistics(self, h, chunk: int = 8192) -> None:
        """Fit what the head learns from the training data without gradients, in one streamed pass over ``h``
        (a tensor, or anything with ``len()`` and slicing: a memory-mapped table), ``chunk`` rows at a time:
        the per-dimension mean and std (the scale of the views, and the layer branch's standardisation) and,
        with ``layer_closed_form``, the branch's closed-form map (from the second moments of at most
        ``CLOSED_FORM_MAX_ROWS`` evenly spaced rows)."""
        n = len(h)
        if n == 0:
            raise ValueError("cannot fit statistics on no rows")
        closed_form = self.layer_branch is not None and self.layer_branch.closed_form is not None
        stride = max(1, -(-n // CLOSED_FORM_MAX_ROWS)) if closed_form else 1
        sums, second, rows = None, None, 0
        for start in range(0, n, chunk):
            block = torch.as_tensor(h[start : start + chunk]).float()
            self.check_input(block)
            x, layer_states = split_inputs(block)
            parts = [x] + ([self.layer_branch.inputs_unstandardized(layer_states)] if layer_states is not None else [])
            cols = torch.cat(parts, dim=1)  # v = [x, h_raw]: (rows, d [+ L * d])
            step = torch.stack([cols.sum(0), (cols.double() ** 2).sum(0).float()])
            sums = step if sums is None else sums + step
            if closed_form:
                picked = cols[(start + torch.arange(len(cols))) % stride == 0]  # evenly spaced rows
                outer = (picked.T @ picked).double()  # float32 products of one chunk, summed in float64
                second = outer if second is None else second + outer
                rows += len(picked)
        mean = sums[0] / n
        std = (sums[1] / n - mean.double() ** 2).clamp_min(0).sqrt().float().clamp_min(1e-8)
        d = self.config.embedding_dim
        self.feature_mean.copy_(mean[:d])
        self.feature_std.copy_(std[:d])
        if self.layer_branch is not None:
            self.layer_branch.layer_mean.copy_(mean[d:])
            self.layer_branch.layer_std.copy_(std[d:].clamp_min(1e-6))
        if closed_form:
            self.layer_branch.fit_closed_form(mean.double(), second / rows, self.feature_std)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std with the stored statistics of the training data."""
        return (x - self.feature_mean.to(x.dtype)) / self.feature_std.to(x.dtype)

    def _output(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(unnormalised output, f(z), the layer branch's features g or None)."""
        x, layer_states = split_inputs(h)
        z = self.standardize(x) if self.config.standardize_input else x
        refined = self.refiner(z)
        if self.layer_branch is not None:
            features = self.layer_branch.features(layer_states, self.standardize(x.float()))  # once per pass
            # u is scaled by |x| per row, so that its share of every cosine is `scale` whatever x's norm
            u = self.layer_branch.from_features(features, row_norm(x))
            return torch.cat([refined, u.to(refined.dtype)], dim=-1), refined, features
        return (torch.cat([z, refined], dim=-1) if self.config.output == "concat" else refined), refined, None

    def forward(self, h: torch.Tensor, return_projections: bool = True, return_layer_features: bool = False):
        """The training pass on raw inputs ``h`` -> :class:`HeadOutput`. The projector sees f(z) for the paper's
        head and the whole output with layers; ``return_layer_features`` (layer-aware heads) adds g and the
        decoder's reconstruction (None without a decoder)."""
        if self.training and h.shape[0] < 2 and any(isinstance(m, nn.BatchNorm1d) for m in self.modules()):
            raise ValueError(
                f"BatchNorm needs a batch of at least 2 rows in training mode, got {h.shape[0]}; "
                "call .eval() for inference or use drop_last=True when training"
            )
        self.check_input(h)
        out, refined, features = self._output(h)
        projected = out if self.layer_branch is not None else refined
        projections = self.projector(projected) if return_projections and self.projector is not None else None
        if not return_layer_features:
            return HeadOutput(out, projections)
        if self.layer_branch is None:
            raise ValueError("return_layer_features needs a layer-aware head (config.layers)")
        decoded = self.layer_decoder(features) if self.layer_decoder is not None else None
        return HeadOutput(out, projections, features, decoded)

    def embed(self, h: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        """The refined embedding of a raw input -> (batch, output_dim), L2-normalised when ``normalize``
        (default: the config's normalize_embeddings)."""
        out = self._output(h)[0]
        normalize = self.config.normalize_embeddings if normalize is None else normalize
        return unit(out).to(out.dtype) if normalize else out


__all__ = ["SimSkipHead", "HeadOutput", "LayerBranch", "SkipRefiner", "Projector", "split_inputs", "unit", "row_norm"]
