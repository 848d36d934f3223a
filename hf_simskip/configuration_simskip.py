"""SimSkipConfig: everything that changes an embedding, saved to config.json.

Self-contained on purpose: the Hub copies this file next to the weights (``auto_map``), so it may
import only the standard library, torch and transformers.
"""
from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

POOLING_MODES = ("cls", "cls_before_pooler", "mean", "max", "mean_sqrt_len", "last")
AUGMENTATIONS = ("mask", "noise", "mask+noise", "none")
LINEAR_POSITIONS = ("residual_branch", "after_skip")
MASK_FILLS = ("zero", "mean")
OUTPUT_MODES = ("refined", "concat")


class SimSkipConfig(PreTrainedConfig):
    r"""Configuration of a [`SimSkipModel`]: a frozen backbone, its pooling, and the SimSkip head.

    Args:
        encoder_config (`PreTrainedConfig` or `dict`, *optional*):
            The backbone's own config, kept as a sub-config so `from_pretrained` rebuilds the whole
            model offline. `None` builds a head-only model (refines embeddings of any modality).
        encoder_name_or_path / encoder_revision (`str`, *optional*): where the backbone came from.
        pooling (`str`): one of `cls` (CLS through the backbone's MLP pooler, SimCSE sup),
            `cls_before_pooler` (SimCSE unsup), `mean`, `max`, `mean_sqrt_len`, `last`.
        encoder_normalize (`bool`): L2-normalise the pooled backbone output (sentence-transformers'
            `Normalize` module); part of the raw embedding `x = h(s)`.
        max_length (`int`): tokens per text; longer text is truncated.
        embedding_dim (`int`): d, the width of `x`.
        hidden_dims (`list[int]`): widths of the two Linear-BatchNorm-ReLU-Dropout layers
            (paper: `[d // 2, d]`); the last must equal d.
        linear_position (`str`): where the paper's extra Linear d->d sits. `residual_branch` (default)
            keeps eq. 2 exact: `f(x) = x + W3 g2(g1(x))`. `after_skip`: `f(x) = W3 (x + g2(g1(x)))`.
        projector_dim (`int`): width of the training-only projector `W2 relu(W1 z)` (paper: d).
        dropout (`float`), batch_norm (`bool`): the two layers' regularisers (paper: both on).
        use_skip (`bool`): `False` is the paper's SimSkip-minus ablation.
        zero_init (`bool`): the residual branch starts at zero, so the refiner starts as the identity.
        residual_scale (`float`): multiplies the residual branch, `f(x) = x + s * g(x)`.
        standardize_input (`bool`): the encoder sees `z = (x - mean) / std` (the stored per-dimension
            statistics) instead of `x`, and `refine`/`encode` return `f(z)`; zero-init then starts at `z`.
        output (`str`): `refined` returns `f(x)`; `concat` returns `[x, f(x)]` (2d wide).
        normalize_embeddings (`bool`): L2-normalise what `encode`/`refine` return.
        augmentation, mask_ratio, mask_fill, noise_variance: views for contrastive training. The
            noise is `x + sqrt(noise_variance) * std * eps` and masking fills with 0 or the mean,
            with `std`/`mean` the per-dimension statistics stored in the model (scale aware).
        temperature (`float`): NT-Xent temperature.
        freeze_encoder (`bool`): the backbone gets no gradients and stays in eval mode.
    """

    model_type = "simskip"
    sub_configs_defaults = {
        "encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True)
    }

    encoder_config: PreTrainedConfig | dict | None = None
    encoder_name_or_path: str | None = None
    encoder_revision: str | None = None
    pooling: str = "mean"
    encoder_normalize: bool = False
    max_length: int = 256
    embedding_dim: int | None = None
    hidden_dims: list | None = None
    linear_position: str = "residual_branch"
    projector_dim: int | None = None
    dropout: float = 0.1
    batch_norm: bool = True
    use_skip: bool = True
    zero_init: bool = True
    residual_scale: float = 1.0
    standardize_input: bool = False
    output: str = "refined"
    normalize_embeddings: bool = False
    augmentation: str = "mask+noise"
    mask_ratio: float = 0.2
    mask_fill: str = "mean"
    noise_variance: float = 0.13
    temperature: float = 0.1
    freeze_encoder: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.embedding_dim is None and self.encoder_config is not None:
            self.embedding_dim = getattr(self.encoder_config, "hidden_size", None)
        if self.embedding_dim is None:
            raise ValueError("embedding_dim is required when there is no encoder_config to read hidden_size from")
        d = self.embedding_dim
        if self.hidden_dims is None:
            self.hidden_dims = [max(d // 2, 1), d]
        if self.projector_dim is None:
            self.projector_dim = d
        self.validate()

    def validate(self):
        """Raise ValueError naming the bad field, what was expected and what came."""
        _choice("pooling", self.pooling, POOLING_MODES)
        _choice("augmentation", self.augmentation, AUGMENTATIONS)
        _choice("linear_position", self.linear_position, LINEAR_POSITIONS)
        _choice("mask_fill", self.mask_fill, MASK_FILLS)
        _choice("output", self.output, OUTPUT_MODES)
        d = self.embedding_dim
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ValueError(f"embedding_dim must be a positive int, got {d!r}")
        hidden = list(self.hidden_dims)
        if len(hidden) != 2 or not all(isinstance(h, int) and h > 0 for h in hidden):
            raise ValueError(f"hidden_dims must be two positive ints (paper: [d // 2, d]), got {self.hidden_dims!r}")
        if hidden[-1] != d:
            raise ValueError(
                f"hidden_dims must end with embedding_dim={d} so the residual branch fits x + g(x), got {hidden}"
            )
        if self.encoder_config is not None:
            width = getattr(self.encoder_config, "hidden_size", d)
            if width != d:
                raise ValueError(f"embedding_dim={d} does not fit the backbone, whose hidden_size is {width}")
        if not isinstance(self.projector_dim, int) or self.projector_dim < 1:
            raise ValueError(f"projector_dim must be a positive int, got {self.projector_dim!r}")
        _in_range("dropout", self.dropout, 0.0, 1.0, right_open=True)
        _in_range("mask_ratio", self.mask_ratio, 0.0, 1.0, right_open=True)
        _in_range("noise_variance", self.noise_variance, 0.0, float("inf"))
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if not isinstance(self.max_length, int) or self.max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {self.max_length!r}")
        if self.zero_init and not self.use_skip and self.linear_position == "residual_branch":
            raise ValueError(
                "zero_init=True with use_skip=False would make the refiner output all zeros; "
                "set zero_init=False for the SimSkip-minus ablation"
            )

    @property
    def output_dim(self) -> int:
        """Width of what `encode`/`refine` return."""
        return 2 * self.embedding_dim if self.output == "concat" else self.embedding_dim


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _in_range(name, value, low, high, right_open=False):
    ok = isinstance(value, (int, float)) and low <= value and (value < high if right_open else value <= high)
    if not ok:
        bracket = ")" if right_open else "]"
        raise ValueError(f"{name} must be a number in [{low}, {high}{bracket}, got {value!r}")


__all__ = ["SimSkipConfig"]
