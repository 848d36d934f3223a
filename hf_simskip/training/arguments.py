"""HeadTrainingArguments: the one owner of the head's training and view settings.

The view and loss settings (augmentation, mask ratio and fill, noise variance, temperature) are
``ViewArguments``, defined with the model (``models/simskip/augmentations.py``) because
``SimSkipModel.forward(return_loss=True)`` needs them too; this class extends it with the optimisation,
schedule, dev-selection and checkpointing settings. The recipe parses it as it is (HfArgumentParser).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..models.simskip.augmentations import ViewArguments

POSITIVES = ("views", "neighbor", "dropout")


@dataclass
class HeadTrainingArguments(ViewArguments):
    """Hyper-parameters of the head's contrastive training; their defaults are the recipe's defaults."""

    output_dir: str = field(default="outputs/simskip", metadata={"help": "where checkpoints, final/ and metrics go"})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "replace a finished run in output_dir (else such a folder is refused)"}
    )
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    num_train_epochs: float = 1.0
    max_steps: int = field(default=-1, metadata={"help": "> 0 overrides num_train_epochs (optimisation steps)"})
    per_device_train_batch_size: int = 512
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.05
    seed: int = 42
    logging_steps: int = 50
    eval_steps: int = field(default=200, metadata={"help": "dev evaluation every N steps (and at the end); 0: never"})
    checkpointing_steps: int = field(default=0, metadata={"help": "save_state every N steps; 0: never"})
    save_total_limit: int = field(default=2, metadata={"help": "keep only the last K checkpoints (0: all)"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint folder"})
    load_best_at_end: bool = field(default=True, metadata={"help": "end with the head of the best dev score"})
    geometry_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of the term that keeps the output's in-batch cosine similarities close to the backbone's "
            "(the geometry STS scores measure); 0: NT-Xent alone"
        },
    )
    contrastive_weight: float | None = field(
        default=None,
        metadata={
            "help": "weight of NT-Xent between the two views; None: 1 for a head that reads x alone, 0 for a "
            "layer-aware head (its branch learns from the distillation and reconstruction terms)"
        },
    )
    distillation_weight: float = field(
        default=1.0,
        metadata={
            "help": "layer-aware heads: weight of the relational distillation term (the in-batch softmax of the "
            "layer features' cosines matches the backbone's)"
        },
    )
    reconstruction_weight: float = field(
        default=1.0,
        metadata={
            "help": "layer-aware heads: weight of the term that reconstructs the branch's input layers from "
            "its features (so they keep the layers' information)"
        },
    )
    distillation_temperature: float = field(default=0.05, metadata={"help": "temperature of the distillation term"})
    positives: str = field(
        default="views",
        metadata={
            "help": "views: two views of the same row (the paper); neighbor: a view of the row and a view of its "
            "nearest other row in the corpus (cosine); dropout: a view of the row and a view of its dropout "
            "embedding (SimCSE's positive; train_head's `partners`)"
        },
    )

    def validate(self) -> None:
        """Raise ValueError naming the bad field, what was expected and what came."""
        super().validate()
        positive = {
            "learning_rate": self.learning_rate,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }
        for name, value in positive.items():
            if not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.max_steps <= 0 and not (
            isinstance(self.num_train_epochs, (int, float)) and 0 < self.num_train_epochs < math.inf
        ):
            raise ValueError(
                f"num_train_epochs must be a finite number > 0 when max_steps <= 0, got {self.num_train_epochs!r}"
            )
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        for name in (
            "logging_steps",
            "eval_steps",
            "checkpointing_steps",
            "save_total_limit",
            "weight_decay",
            "geometry_weight",
            "distillation_weight",
            "reconstruction_weight",
        ):
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
        if self.positives not in POSITIVES:
            raise ValueError(f"positives must be one of {list(POSITIVES)}, got {self.positives!r}")

    def loss_weights(self, layer_aware: bool) -> dict:
        """The loss terms' weights for a head with (``layer_aware``) or without a layer branch: the
        keyword arguments of ``contrastive_loss``; raises ValueError when they leave nothing to train."""
        contrastive = self.contrastive_weight
        if contrastive is None:
            contrastive = 0.0 if layer_aware else 1.0
        weights = {
            "contrastive_weight": float(contrastive),
            "geometry_weight": float(self.geometry_weight),
            "distillation_weight": float(self.distillation_weight) if layer_aware else 0.0,
            "reconstruction_weight": float(self.reconstruction_weight) if layer_aware else 0.0,
            "distillation_temperature": float(self.distillation_temperature),
        }
        if not any(v for k, v in weights.items() if k.endswith("_weight")):
            kind = (
                "a layer-aware head"
                if layer_aware
                else "a head without layers (it has no distillation or reconstruction term)"
            )
            raise ValueError(f"every loss weight is 0 for {kind}: nothing would be trained")
        return weights
