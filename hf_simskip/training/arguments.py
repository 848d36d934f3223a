"""HeadTrainingArguments: the one owner of the head's training settings.

The objective's settings (the views, the NT-Xent temperature, the weight of every loss term) are
``ObjectiveArguments``, defined with the model (``models/simskip/losses.py``) because
``SimSkipModel.forward(return_loss=True)`` computes the same loss; this class extends it with the optimisation,
schedule, dev-selection and checkpointing settings. The recipe parses it as it is (HfArgumentParser).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..models.simskip.losses import ObjectiveArguments

POSITIVES = ("views", "neighbor", "dropout")


@dataclass
class HeadTrainingArguments(ObjectiveArguments):
    """Hyper-parameters of the head's training; their defaults are the recipe's defaults."""

    output_dir: str = field(default="outputs/simskip", metadata={"help": "where checkpoints, final/ and metrics go"})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "replace a finished run in output_dir at the end of this run (else such a folder is refused)"
        },
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the head"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    num_train_epochs: float = field(default=1.0, metadata={"help": "passes over the corpus (unless max_steps > 0)"})
    max_steps: int = field(
        default=-1,
        metadata={
            "help": "> 0: that many optimisation steps (overrides num_train_epochs); 0: no gradient step (the closed "
            "form and the statistics are fitted, the dev selection still chooses)"
        },
    )
    per_device_train_batch_size: int = field(
        default=512, metadata={"help": "rows per process and step (the in-batch terms see all processes' rows)"}
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "batches per optimisation step"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "transformers' get_scheduler name"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "share of the steps spent warming up"})
    seed: int = field(default=42, metadata={"help": "seed of the shuffle, the views and the head's init"})
    logging_steps: int = field(default=50, metadata={"help": "log the loss every N steps; 0: never"})
    eval_steps: int = field(default=200, metadata={"help": "dev evaluation every N steps (and at the end); 0: never"})
    checkpointing_steps: int = field(default=0, metadata={"help": "save_state every N steps; 0: never"})
    save_total_limit: int = field(default=2, metadata={"help": "keep only the last K checkpoints (0: all)"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint folder"})
    load_best_at_end: bool = field(
        default=True,
        metadata={
            "help": "end with the head of the best dev score, the untrained identity among the candidates "
            "(--no_load_best_at_end: end with the last step)"
        },
    )
    dev_tolerance: float = field(
        default=0.3,
        metadata={
            "help": "the dev selection keeps a candidate only while its STS-B dev and SICK-R trial Spearman stay within "
            "this of the backbone's own embedding (the similarity geometry)"
        },
    )
    layer_scales: list[float] = field(
        default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        metadata={
            "help": "layer-aware heads: the weights of u the dev selection tries on every candidate; the largest that "
            "keeps the geometry is kept, and saved as the config's layer_scale"
        },
    )
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
        if self.learning_rate > 1e3:  # an overflow in the first AdamW step, not a learning rate
            raise ValueError(f"learning_rate must be at most 1e3, got {self.learning_rate!r}")
        if self.max_steps < 0 and not (
            isinstance(self.num_train_epochs, (int, float)) and 0 < self.num_train_epochs < math.inf
        ):
            raise ValueError(
                f"num_train_epochs must be a finite number > 0 when max_steps < 0, got {self.num_train_epochs!r}"
            )
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        for name in ("logging_steps", "eval_steps", "checkpointing_steps", "save_total_limit", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value < math.inf):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.dev_tolerance, (int, float)) and 0 <= self.dev_tolerance < math.inf):
            raise ValueError(f"dev_tolerance must be a finite number >= 0, got {self.dev_tolerance!r}")
        scales = list(self.layer_scales or [])
        if not scales or not all(isinstance(w, (int, float)) and 0 < w <= 1e3 for w in scales):
            raise ValueError(
                f"layer_scales must be a non-empty list of numbers in (0, 1000], got {self.layer_scales!r}"
            )
        if self.positives not in POSITIVES:
            raise ValueError(f"positives must be one of {list(POSITIVES)}, got {self.positives!r}")
