"""SimSkipConfig: the architecture of a SimSkip model (everything that changes an embedding).

Travels to the Hub beside the weights (``auto_map``), so it imports only the standard library and
public, long-standing transformers API: a config with its own ``__init__`` and a ``sub_configs``
class attribute, the form remote-code configs have used since transformers 4.x.
Training and view settings (augmentations, temperature, learning rate, ...) are not here: they belong
to ``hf_simskip.training.HeadTrainingArguments``.
"""

from __future__ import annotations

import inspect

from transformers import AutoConfig, PretrainedConfig

BACKBONE_FIELDS = ("encoder_config", "encoder_name_or_path", "encoder_revision")
POOLING_MODES = ("cls", "cls_before_pooler", "mean", "max", "mean_sqrt_len", "last")
LAYER_POOLING_MODES = ("mean", "max", "mean_sqrt_len", "cls_before_pooler", "last")  # no MLP pooler per layer
# the default head reads every hidden state below the last one, 0 (the embeddings) ... n - 1, of its backbone
# (chosen by the experiments, experiments/README.md); a head-only config (no backbone) reads x alone
_UNSET = object()
LINEAR_POSITIONS = ("residual_branch", "after_skip")
OUTPUT_MODES = ("refined", "concat")
CLOSED_FORMS = ("pca", "residual_pca", None)
# fields whose default differs between a new config and a saved one that predates the field (which loads with
# the behaviour it was saved with); None here: derived from the backbone (layers: hidden states 0 .. n - 1)
NEW_DEFAULTS = {"layers": None, "layer_closed_form": "pca"}


# The help text of every field, in one place: the class docstring, the recipe's --help and the model card
# read it from here (the defaults come from ``SimSkipConfig.__init__``'s signature).
FIELD_HELP = {
    "encoder_config": "the backbone's own config, kept as a sub-config so `from_pretrained` rebuilds the whole "
    "model offline; None builds a head-only model (refines embeddings of any modality)",
    "encoder_name_or_path": "where the backbone came from (Hub id or folder)",
    "encoder_revision": "the backbone's revision",
    "pooling": "cls (CLS through the backbone's MLP pooler, SimCSE sup), cls_before_pooler (SimCSE unsup), mean, max, "
    "mean_sqrt_len or last",
    "encoder_normalize": "L2-normalise the pooled backbone output (sentence-transformers' Normalize module); part of "
    "the raw embedding x = h(s)",
    "max_seq_length": "tokens per text; longer text is truncated (config.json files that say max_length load too)",
    "embedding_dim": "d, the width of x (read from the backbone's hidden_size when omitted)",
    "hidden_dims": "widths of the refiner's two Linear-BatchNorm-ReLU-Dropout layers (paper: [d // 2, d]); the last "
    "must equal d",
    "linear_position": "where the paper's extra Linear d->d sits: residual_branch keeps eq. 2 exact, "
    "f(x) = x + W3 g2(g1(x)); after_skip: f(x) = W3 (x + g2(g1(x)))",
    "projector_dim": "width of the training-only projector W2 relu(W1 z) (paper: d); 0: no projector, NT-Xent "
    "compares the outputs themselves",
    "dropout": "dropout of the refiner's two layers",
    "batch_norm": "BatchNorm in the refiner's two layers (paper: on)",
    "use_skip": "the skip connection; false is the paper's SimSkip-minus ablation",
    "zero_init": "the refiner's residual branch starts at zero (the refiner starts as the identity)",
    "residual_scale": "multiplies the refiner's residual branch, f(x) = x + s * g(x)",
    "standardize_input": "the refiner sees z = (x - mean) / std (per-dimension statistics of the training data, "
    "stored in the model) instead of x",
    "output": "refined returns f(z); concat returns [z, f(z)] (2d wide; the paper's head only)",
    "normalize_embeddings": "L2-normalise what encode/refine return",
    "freeze_encoder": "the backbone gets no gradients and stays in eval mode",
    "layers": "the hidden states the head reads besides x (0 = the embedding layer's output ... n = the last layer), "
    "each pooled with layer_pooling; default: every hidden state below the last (0 ... n - 1) when the config has a "
    "backbone; None: the paper's head on x alone (also what a head-only config, or output=concat, gets)",
    "layer_pooling": "how each chosen hidden state is pooled: mean (attention-masked), max, mean_sqrt_len, "
    "cls_before_pooler or last",
    "layer_dim": "width of the layer branch's output u (default d): the output is [f(z), u], embedding_dim + "
    "layer_dim wide",
    "layer_closed_form": "the layer branch's linear map, fitted in closed form on the training corpus before any "
    "gradient step: pca (the top principal directions of the standardised layers) or residual_pca (of the part of "
    "the layers that x does not predict linearly); None: no closed-form part",
    "layer_hidden_dim": "hidden width of the layer branch's MLP (a non-linear correction on top of the closed form, "
    "starting at zero; without a closed form, the whole branch); 0: no MLP (without a closed form: a trained linear "
    "map, hf_simskip 0.2's linear branch)",
    "layer_scale": "the weight of u (unit length, times |x|) in the output: its share of every cosine similarity",
}


class SimSkipConfig(PretrainedConfig):
    """Configuration of a [`SimSkipModel`]: a frozen backbone, its pooling, and the SimSkip head. The Args
    section below is generated from ``FIELD_HELP``; the defaults are this ``__init__``'s."""

    model_type = "simskip"
    sub_configs = {"encoder_config": AutoConfig}
    has_no_defaults_at_init = True  # a head-only config needs embedding_dim

    def __init__(
        self,
        encoder_config: PretrainedConfig | dict | None = None,
        encoder_name_or_path: str | None = None,
        encoder_revision: str | None = None,
        pooling: str = "mean",
        encoder_normalize: bool = False,
        max_seq_length: int = 256,
        embedding_dim: int | None = None,
        hidden_dims: list[int] | None = None,
        linear_position: str = "residual_branch",
        projector_dim: int | None = None,
        dropout: float = 0.1,
        batch_norm: bool = True,
        use_skip: bool = True,
        zero_init: bool = True,
        residual_scale: float = 1.0,
        standardize_input: bool = False,
        output: str = "refined",
        normalize_embeddings: bool = False,
        freeze_encoder: bool = True,
        layers: list[int] | None = _UNSET,
        layer_pooling: str = "mean",
        layer_dim: int | None = None,
        layer_closed_form: str | None = _UNSET,
        layer_hidden_dim: int | None = None,
        layer_scale: float = 0.7,
        **kwargs,
    ):
        if isinstance(encoder_config, dict):
            encoder_config = dict(encoder_config)
            if "model_type" not in encoder_config:
                raise ValueError(f"encoder_config needs a 'model_type', got keys {sorted(encoder_config)}")
            encoder_config = AutoConfig.for_model(encoder_config.pop("model_type"), **encoder_config)
        elif encoder_config is not None and not isinstance(encoder_config, PretrainedConfig):
            raise TypeError(
                f"encoder_config must be a PretrainedConfig, a dict or None, got {type(encoder_config).__name__}"
            )
        self.encoder_config = encoder_config
        self.encoder_name_or_path = encoder_name_or_path
        self.encoder_revision = encoder_revision
        self.pooling = pooling
        self.encoder_normalize = encoder_normalize
        # `max_length` is a generation parameter to transformers (popped from configs on load): folders saved
        # before the rename say max_length, so it is read here, before PretrainedConfig sees it
        self.max_seq_length = kwargs.pop("max_length", max_seq_length)
        if embedding_dim is None and encoder_config is not None:
            embedding_dim = getattr(encoder_config, "hidden_size", None)
        if embedding_dim is None:
            raise ValueError(
                "embedding_dim is required for a head-only model (no encoder_config to read hidden_size from); "
                "a folder saved by SimSkipModel always records it in config.json"
            )
        self.embedding_dim = embedding_dim
        self.hidden_dims = list(hidden_dims) if hidden_dims is not None else [max(embedding_dim // 2, 1), embedding_dim]
        self.linear_position = linear_position
        self.projector_dim = projector_dim if projector_dim is not None else embedding_dim
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.use_skip = use_skip
        self.zero_init = zero_init
        self.residual_scale = residual_scale
        self.standardize_input = standardize_input
        self.output = output
        self.normalize_embeddings = normalize_embeddings
        self.freeze_encoder = freeze_encoder
        # a saved config (it carries transformers_version) without a field predates it: the older behaviour
        saved = "transformers_version" in kwargs
        if layers is _UNSET:
            depth = getattr(self.encoder_config, "num_hidden_layers", None)
            # output="concat" is an option of the paper's head ([x, f(x)]): it reads x alone
            layers = None if saved or not depth or output == "concat" else list(range(depth))
        if layer_closed_form is _UNSET:  # hf_simskip <= 0.2 trained the whole branch from a random init
            layer_closed_form = None if saved else NEW_DEFAULTS["layer_closed_form"]
        self.layers = list(layers) if layers is not None else None
        self.layer_pooling = layer_pooling
        self.layer_dim = layer_dim if layer_dim is not None else embedding_dim
        self.layer_closed_form = layer_closed_form
        self.layer_hidden_dim = layer_hidden_dim if layer_hidden_dim is not None else 4 * embedding_dim
        self.layer_scale = layer_scale
        super().__init__(**kwargs)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the bad field, what was expected and what came."""
        _choice("pooling", self.pooling, POOLING_MODES)
        _choice("linear_position", self.linear_position, LINEAR_POSITIONS)
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
        if not isinstance(self.projector_dim, int) or isinstance(self.projector_dim, bool) or self.projector_dim < 0:
            raise ValueError(f"projector_dim must be an int >= 0 (0: no projector), got {self.projector_dim!r}")
        _in_range("dropout", self.dropout, 0.0, 1.0, right_open=True)
        if not isinstance(self.max_seq_length, int) or self.max_seq_length < 1:
            raise ValueError(f"max_seq_length must be a positive int, got {self.max_seq_length!r}")
        self._validate_layers()
        if self.zero_init and not self.use_skip and self.linear_position == "residual_branch":
            raise ValueError(
                "zero_init=True with use_skip=False would make the refiner output all zeros; "
                "set zero_init=False for the SimSkip-minus ablation"
            )

    def _validate_layers(self) -> None:
        if self.layers is None:
            return
        layers = self.layers
        if not layers or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in layers):
            raise ValueError(f"layers must be None or a non-empty list of hidden-state indices >= 0, got {layers!r}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers must not repeat a hidden state, got {layers!r}")
        depth = getattr(self.encoder_config, "num_hidden_layers", None)
        if depth is not None and max(layers) > depth:
            raise ValueError(f"layers {layers} reach past the backbone's {depth} layers (hidden states 0..{depth})")
        _choice("layer_pooling", self.layer_pooling, LAYER_POOLING_MODES)
        _choice("layer_closed_form", self.layer_closed_form, CLOSED_FORMS)
        if self.output == "concat":
            raise ValueError(
                "output='concat' repeats x beside f(x); a layer-aware head (layers set) outputs [f(x), u]: "
                "use output='refined'"
            )
        for name in ("layer_dim", "layer_hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "layer_dim" else 0):
                raise ValueError(f"{name} must be an int >= {1 if name == 'layer_dim' else 0}, got {value!r}")
        # finite: u is unit length times |x|, so an infinite weight turns the output into inf and NaN
        _in_range("layer_scale", self.layer_scale, 0.0, 1e3)

    @property
    def layer_aware(self) -> bool:
        """Whether the head reads hidden layers besides x (``layers`` is a non-empty list)."""
        return bool(self.layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one row of the head's input: (d,), or (1 + len(layers), d): x, then the pooled layers."""
        return (1 + len(self.layers), self.embedding_dim) if self.layer_aware else (self.embedding_dim,)

    @classmethod
    def field_defaults(cls) -> dict:
        """Every field's default, as ``__init__`` declares it (None: derived from d or the backbone)."""
        params = inspect.signature(cls.__init__).parameters
        default = lambda name: NEW_DEFAULTS[name] if params[name].default is _UNSET else params[name].default  # noqa: E731
        return {name: default(name) for name in cls.field_names()}

    @classmethod
    def field_names(cls) -> list[str]:
        """The fields of this config in order (its ``__init__`` arguments): the one list from which the
        recipe's arguments, the model card and the sentence-transformers module take theirs."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]

    def head_dict(self) -> dict:
        """Every field but the backbone's (its config, name and revision): what a head needs to be rebuilt."""
        return {name: getattr(self, name) for name in self.field_names() if name not in BACKBONE_FIELDS}

    @property
    def output_dim(self) -> int:
        """Width of what `encode`/`refine` return."""
        if self.layer_aware:
            return self.embedding_dim + self.layer_dim
        return 2 * self.embedding_dim if self.output == "concat" else self.embedding_dim


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _in_range(name, value, low, high, right_open=False):
    ok = isinstance(value, (int, float)) and low <= value and (value < high if right_open else value <= high)
    if not ok:
        bracket = ")" if right_open else "]"
        raise ValueError(f"{name} must be a number in [{low}, {high}{bracket}, got {value!r}")


def _docstring() -> str:
    args = "".join(f"        {name}: {text}\n" for name, text in FIELD_HELP.items())
    return f"{SimSkipConfig.__doc__.rstrip()}\n\n    Args:\n{args}"


SimSkipConfig.__doc__ = _docstring()

__all__ = ["SimSkipConfig", "FIELD_HELP"]
