"""The head's training objective, in one place: its settings (:class:`ObjectiveArguments`), its terms and
:class:`SimSkipObjective`, the one callable that both ``train_head`` and ``SimSkipModel.forward(return_loss=True)``
use, so the model's loss and the trained loss are the same thing.

Terms: NT-Xent (paper eq. 1, SimCLR) between two views of every row; the geometry term (the output's in-batch
cosines stay at x's); for a layer-aware head, relational distillation (the layer features' in-batch
neighbourhoods match x's) and reconstruction (the features keep the layers' information). Every in-batch term
sees the global batch: with several processes the rows of every process are gathered with gradients, the
anchors stay local, so N processes x batch B give the loss and gradients (after DDP's averaging) of one process
x batch N*B. Self-contained (the Hub copies it beside modeling_simskip.py): torch and the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .augmentations import ViewArguments, make_view
from .head import split_inputs


def _world(group) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        return 1, 0
    return dist.get_world_size(group), dist.get_rank(group)


def gather_with_grad(t: torch.Tensor, group=None) -> torch.Tensor:
    """all_gather that keeps gradients (a no-grad gather silently scales them by 1/world_size)."""
    import torch.distributed.nn.functional as dist_nn  # explicit: torch.distributed.nn is not auto-imported

    return torch.cat(dist_nn.all_gather(t, group=group), dim=0)


def _global(t: torch.Tensor, group) -> tuple[torch.Tensor, int]:
    """(the rows of every process, with gradients; this process's offset in them)."""
    world, rank = _world(group)
    return (gather_with_grad(t, group), rank * t.shape[0]) if world > 1 else (t, 0)


def nt_xent_loss(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, group=None, decoupled: bool = False
) -> torch.Tensor:
    """Mean NT-Xent over the 2N anchors of this process.

    ``z1[i]`` and ``z2[i]`` are the positive pair; every other view is a negative. With a process group of
    world size W > 1 the candidates are the 2NW views of all processes (gathered with gradients), the anchors
    stay local and the labels are offset by rank. ``decoupled=True`` drops the positive from the denominator,
    as eq. 1 is printed in the paper (``k != i, j``); the default is SimCLR's NT-Xent, which keeps it.
    Similarities and the loss are computed in float32 whatever the autocast dtype.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"expected two views of equal shape (N, d), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    n = z1.shape[0]
    with torch.autocast(device_type=z1.device.type, enabled=False):
        local = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=-1)  # (2N, d)
        candidates, offset = _global(local, group)  # (2N*W, d)
        logits = local @ candidates.T / temperature  # (2N, 2N*W)
        idx = torch.arange(2 * n, device=local.device)
        positives = offset + torch.cat([idx[n:], idx[:n]])  # view 1 <-> view 2
        logits[idx, offset + idx] = float("-inf")  # never contrast a view with itself
        if decoupled:
            pos_logit = logits[idx, positives].clone()
            logits[idx, positives] = float("-inf")
            return (torch.logsumexp(logits, dim=1) - pos_logit).mean()
        return F.cross_entropy(logits, positives)


def _cosines(a: torch.Tensor, group) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosines of the local rows with the global batch (n, N), the mask of each row with itself)."""
    a = F.normalize(a.float(), dim=-1)
    everyone, offset = _global(a, group)
    idx = torch.arange(len(a), device=a.device)
    self_mask = torch.zeros(len(a), len(everyone), dtype=torch.bool, device=a.device)
    self_mask[idx, offset + idx] = True
    return a @ everyone.T, self_mask


def geometry_loss(out: torch.Tensor, x: torch.Tensor, group=None) -> torch.Tensor:
    """Mean squared difference between the in-batch cosine similarities of the output and of the raw
    embeddings x (off the diagonal, over the global batch): it keeps the similarity geometry that STS scores
    measure."""
    with torch.autocast(device_type=out.device.type, enabled=False):
        student, off_self = _cosines(out, group)
        teacher, _ = _cosines(x.detach(), group)
        return ((student - teacher)[~off_self] ** 2).mean()


def distillation_loss(features: torch.Tensor, x: torch.Tensor, temperature: float = 0.05, group=None) -> torch.Tensor:
    """Relational distillation: for every row i, KL(p_x(i) || p_g(i)), where p(i) is the softmax over the
    other rows j of the (global) batch of cos(i, j) / temperature, taken on the raw embeddings x (the teacher)
    and on the layer features g (the student). It teaches g the backbone's soft ranking of neighbours (what STS
    measures) without asking it to copy x."""
    if not temperature > 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature!r}")
    with torch.autocast(device_type=features.device.type, enabled=False):
        g, self_mask = _cosines(features, group)
        b, _ = _cosines(x.detach(), group)
        student = F.log_softmax((g / temperature).masked_fill(self_mask, float("-inf")), dim=1)
        teacher = F.softmax((b / temperature).masked_fill(self_mask, float("-inf")), dim=1)
        return F.kl_div(student.masked_fill(self_mask, 0.0), teacher, reduction="batchmean")


@dataclass
class ObjectiveArguments(ViewArguments):
    """The training objective's settings: the views and NT-Xent temperature (ViewArguments) and the weight of
    every term. ``hf_simskip.training.HeadTrainingArguments`` extends it with the optimisation settings."""

    contrastive_weight: float | None = field(
        default=None,
        metadata={
            "help": "weight of NT-Xent between the two views; None: 1 for a head that reads x alone, 0 for a "
            "layer-aware head (its branch learns from the distillation and reconstruction terms)"
        },
    )
    geometry_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of the term that keeps the output's in-batch cosine similarities at the backbone's "
            "(the geometry STS scores measure)"
        },
    )
    distillation_weight: float = field(
        default=1.0,
        metadata={
            "help": "layer-aware heads: weight of relational distillation (the in-batch softmax of the layer "
            "features' cosines matches the backbone's)"
        },
    )
    reconstruction_weight: float = field(
        default=0.0,
        metadata={
            "help": "layer-aware heads: weight of the term that rebuilds the branch's input layers from its "
            "features (so they keep the layers' information); off by default: it measured no gain "
            "(experiments/README.md)"
        },
    )
    distillation_temperature: float = field(default=0.05, metadata={"help": "temperature of the distillation term"})

    def validate(self) -> None:
        super().validate()
        for name in ("geometry_weight", "distillation_weight", "reconstruction_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < math.inf):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.contrastive_weight is not None and not (
            isinstance(self.contrastive_weight, (int, float)) and 0 <= self.contrastive_weight < math.inf
        ):
            raise ValueError(
                f"contrastive_weight must be None or a finite number >= 0, got {self.contrastive_weight!r}"
            )
        if not (
            isinstance(self.distillation_temperature, (int, float)) and 0 < self.distillation_temperature < math.inf
        ):
            raise ValueError(
                f"distillation_temperature must be a finite number > 0, got {self.distillation_temperature!r}"
            )


class SimSkipObjective:
    """The head's training loss on a batch of raw inputs: a weighted sum of the terms above.

        objective = SimSkipObjective(ObjectiveArguments(), model.config)
        loss = objective(model.head, batch, generator)      # batch: (n, d) or (n, 1 + L, d)

    NT-Xent contrasts the projections (or, without a projector, the outputs) of two views of each row: two
    augmentations of x, or one of the row and one of its ``partner`` row (a neighbour, or a dropout embedding of
    the same sentence); the layers of a stack are not augmented. ``head`` may be wrapped (DDP): the forward
    goes through the wrapper, so its hooks and autocast apply. ``terms`` holds the last call's terms (detached).
    """

    def __init__(self, args: ObjectiveArguments, config):
        args.validate()
        self.args = args
        layer_aware = config.layer_aware
        contrastive = args.contrastive_weight
        if contrastive is None:
            contrastive = 0.0 if layer_aware else 1.0
        self.weights = {
            "nt_xent": float(contrastive),
            "geometry": float(args.geometry_weight),
            "distillation": float(args.distillation_weight) if layer_aware else 0.0,
            "reconstruction": float(args.reconstruction_weight) if layer_aware else 0.0,
        }
        if not any(self.weights.values()):
            kind = "a layer-aware head" if layer_aware else "a head without layers (no distillation or reconstruction)"
            raise ValueError(f"every loss weight is 0 for {kind}: nothing would be trained")
        self.terms: dict[str, torch.Tensor] = {}

    def untrained_parts(self, head) -> list:
        """The parts of ``head`` that no term reaches (the projector without NT-Xent; the refiner of x without
        NT-Xent or the geometry term; the decoder without reconstruction): a training loop freezes them."""
        w = self.weights
        parts = []
        if not w["nt_xent"]:
            parts.append(head.projector)
            if not w["geometry"]:
                parts.append(head.refiner)
        if not w["reconstruction"]:
            parts.append(head.layer_decoder)
        return [p for p in parts if p is not None]

    def __call__(self, head, h: torch.Tensor, generator=None, partner=None, group=None) -> torch.Tensor:
        module = getattr(head, "module", head)
        module.check_input(h)
        w, n = self.weights, h.shape[0]
        layer_terms = bool(w["distillation"] or w["reconstruction"])
        if w["nt_xent"]:
            if module.projector is None and module.layer_branch is None and module.config.projector_dim:
                raise ValueError("this head was built without its projector (inference only); it cannot be trained")
            stats = (generator, module.feature_mean, module.feature_std)
            v1 = self._view(h, stats)
            v2 = self._view(h if partner is None else partner, stats)
            batch = torch.cat([v1, v2], dim=0)  # one pass over the 2N views: BatchNorm sees all of them
        else:
            batch = h  # the other terms read the rows themselves
        out = head(batch, return_projections=bool(w["nt_xent"]), return_layer_features=layer_terms)
        x = split_inputs(h)[0]
        terms = {}
        if w["nt_xent"]:
            pairs = out.output if out.projections is None else out.projections
            terms["nt_xent"] = nt_xent_loss(pairs[:n], pairs[n:], self.args.temperature, group=group)
        if w["geometry"]:
            terms["geometry"] = geometry_loss(out.output[:n], x, group)
        if w["distillation"]:
            terms["distillation"] = distillation_loss(
                out.layer_features[:n], x, self.args.distillation_temperature, group
            )
        if w["reconstruction"]:
            if out.reconstruction is None:
                raise ValueError("this head was built without its decoder (inference only); it cannot be trained")
            target = module.layer_branch.inputs(split_inputs(h)[1])
            with torch.autocast(device_type=h.device.type, enabled=False):
                terms["reconstruction"] = F.mse_loss(out.reconstruction[:n].float(), target.float())
        self.terms = {k: v.detach() for k, v in terms.items()}
        return sum(w[k] * v for k, v in terms.items())

    def _view(self, h, stats):
        if self.args.augmentation == "none":
            return h
        x, layer_states = split_inputs(h)
        view = make_view(x, self.args, *stats)
        return view if layer_states is None else torch.cat([view.unsqueeze(1), layer_states], dim=1)


__all__ = [
    "ObjectiveArguments",
    "SimSkipObjective",
    "nt_xent_loss",
    "geometry_loss",
    "distillation_loss",
    "gather_with_grad",
]
