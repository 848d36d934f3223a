"""Views of an embedding for contrastive training (paper sec. 3.3): pure tensor functions.

Every function takes an explicit ``torch.Generator`` so a run is reproducible and resumable.
Strengths are relative to the per-dimension statistics of the training embeddings (``mean``,
``std``, kept as buffers in the model): the paper's absolute noise of variance 0.13 drowns unit-norm
384-d MiniLM embeddings, whose coordinates have a standard deviation near 0.05.

``ViewArguments`` is the one definition of the view and loss settings; the training arguments
(``hf_simskip.training.HeadTrainingArguments``) extend it. Self-contained (the Hub copies it beside
modeling_simskip.py): torch and the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

AUGMENTATIONS = ("mask", "noise", "mask+noise", "none")
MASK_FILLS = ("mean", "zero")


@dataclass
class ViewArguments:
    """How the two views of an embedding are made, and the NT-Xent temperature that contrasts them."""

    augmentation: str = field(default="mask+noise", metadata={"help": "mask | noise | mask+noise | none"})
    mask_ratio: float = field(default=0.2, metadata={"help": "probability of masking a coordinate"})
    mask_fill: str = field(default="mean", metadata={"help": "masked coordinates become the per-dim mean or zero"})
    noise_variance: float = field(default=0.13, metadata={"help": "noise variance relative to the per-dim std"})
    temperature: float = field(default=0.1, metadata={"help": "NT-Xent temperature"})

    def validate(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {list(AUGMENTATIONS)}, got {self.augmentation!r}")
        if self.mask_fill not in MASK_FILLS:
            raise ValueError(f"mask_fill must be one of {list(MASK_FILLS)}, got {self.mask_fill!r}")
        if not (isinstance(self.mask_ratio, (int, float)) and 0.0 <= self.mask_ratio < 1.0):
            raise ValueError(f"mask_ratio must be a number in [0, 1), got {self.mask_ratio!r}")
        if not (isinstance(self.noise_variance, (int, float)) and 0.0 <= self.noise_variance < math.inf):
            raise ValueError(f"noise_variance must be a finite number >= 0, got {self.noise_variance!r}")
        if not (isinstance(self.temperature, (int, float)) and 0.0 < self.temperature < math.inf):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature!r}")


def _check(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected embeddings of shape (batch, d), got {got}")


def random_mask(
    x: torch.Tensor, ratio: float, generator: torch.Generator | None = None, fill: torch.Tensor | None = None
) -> torch.Tensor:
    """Replace each coordinate with probability ``ratio`` by ``fill`` ((d,) per-dimension value,
    e.g. the mean) or by 0 when ``fill`` is None (the paper's masking)."""
    _check(x)
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio!r}")
    drop = torch.rand(x.shape, generator=generator, device=x.device) < ratio  # (batch, d)
    replacement = torch.zeros_like(x) if fill is None else fill.to(x.dtype).expand_as(x)
    return torch.where(drop, replacement, x)


def gaussian_noise(
    x: torch.Tensor, variance: float, generator: torch.Generator | None = None, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """``x + sqrt(variance) * scale * eps``, eps ~ N(0, I). ``scale`` ((d,) per-dimension std) makes the
    variance relative to the data; ``scale=None`` is the paper's absolute noise."""
    _check(x)
    if not variance >= 0:
        raise ValueError(f"noise variance must be >= 0, got {variance!r}")
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)  # (batch, d)
    step = math.sqrt(variance) * (eps if scale is None else eps * scale.to(x.dtype))
    return x + step


def augment(
    x: torch.Tensor,
    kind: str,
    mask_ratio: float = 0.2,
    noise_variance: float = 0.13,
    generator: torch.Generator | None = None,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
) -> torch.Tensor:
    """One view of ``x``: ``mask``, ``noise``, ``mask+noise`` (mask, then noise) or ``none``."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {list(AUGMENTATIONS)}, got {kind!r}")
    if kind in ("mask", "mask+noise"):
        x = random_mask(x, mask_ratio, generator, fill=mean)
    if kind in ("noise", "mask+noise"):
        x = gaussian_noise(x, noise_variance, generator, scale=std)
    return x


def make_view(
    x: torch.Tensor,
    views: ViewArguments,
    generator: torch.Generator | None = None,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
) -> torch.Tensor:
    """One view of ``x`` as ``views`` says, scaled by the per-dimension ``mean``/``std`` of the data
    (masking fills with ``mean`` when ``views.mask_fill == "mean"``, else with 0)."""
    fill = mean if views.mask_fill == "mean" else None
    return augment(x, views.augmentation, views.mask_ratio, views.noise_variance, generator, fill, std)
