"""Arguments of recipes/train_simcse_skip.py as dataclasses: defaults < YAML (--config) < command line.

The head-training hyper-parameters are ``hf_simskip.training.HeadTrainingArguments`` (their defaults
are the recipe's defaults; recipes/configs/default.yaml mirrors them and is loaded when no --config
is given). Unknown keys, in a YAML or on the command line, are errors.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from hf_simskip.data import DEFAULT_CACHE_DIR
from hf_simskip.paths import resolve_data_dir
from hf_simskip.training import HeadTrainingArguments

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={
        "help": "backbone id or folder; None: the packaged offline all-MiniLM-L6-v2"})
    revision: str | None = None
    pooling: str | None = field(default=None, metadata={
        "help": "cls | cls_before_pooler | mean | ...; required for non sentence-transformers backbones"})
    max_length: int | None = None
    encoder_normalize: bool | None = field(default=None, metadata={"help": "None: what the backbone does"})
    normalize_embeddings: bool | None = None
    embedding_dim: int | None = field(default=None, metadata={"help": "expected d; must match the backbone"})
    dropout: float = 0.1
    batch_norm: bool = True
    use_skip: bool = True
    zero_init: bool = True
    residual_scale: float = 1.0
    linear_position: str = "residual_branch"
    output: str = "refined"


@dataclass
class DataArguments:
    data_dir: str | None = field(default=None, metadata={
        "help": "SentEval-layout folder; else $HF_SIMSKIP_DATA, else ../shared/data/senteval"})
    train_file: str | None = field(default=None, metadata={"help": "a text file, one sentence a line"})
    dataset_name: str | None = field(default=None, metadata={"help": "a load_from_disk folder or a Hub dataset"})
    dataset_split: str = "train"
    text_column: str = "text"
    transductive_kfold_tasks: bool = field(default=False, metadata={
        "help": "also train on the (unlabeled) sentences of CR, MPQA, MR, SUBJ: transductive, opt-in"})
    max_train_samples: int | None = None
    cache_dir: str = field(default=DEFAULT_CACHE_DIR, metadata={"help": "where embedding caches live"})
    encode_batch_size: int = 64
    dev_signal: str = field(default="stsb", metadata={"help": "stsb (STS-B dev Spearman) | none"})
    max_dev_pairs: int | None = field(default=None, metadata={"help": "use only the first N STS-B dev pairs (tests)"})


@dataclass
class RunArguments:
    mixed_precision: str = field(default="no", metadata={"help": "no | fp16 | bf16"})
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard | wandb | all | none"})
    eval_after_training: bool = field(default=False, metadata={
        "help": "fast SentEval evaluation of final/ (encodes ~110k sentences: ~8 min on 2 CPU cores)"})
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = True
    simcse_steps: int = field(default=0, metadata={"help": "stage 0: unsupervised SimCSE steps on the backbone"})
    simcse_learning_rate: float = 3e-5
    simcse_batch_size: int = 64
    simcse_temperature: float = 0.05
    lr_grid: list[float] | None = field(default=None, metadata={
        "help": "documentation of a learning-rate grid; one run uses learning_rate (see README.md, Train)"})


DATACLASSES = (ModelArguments, DataArguments, HeadTrainingArguments, RunArguments)


def _read_yaml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {str(path)!r}: expected an existing YAML file")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of argument names to values, got {type(values).__name__}")
    known = {f.name for cls in DATACLASSES for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; valid keys are {sorted(known)}")
    return values


def _split_config(argv: list[str]) -> tuple[str | None, list[str]]:
    rest, config = [], None
    it = iter(argv)
    for a in it:
        if a == "--config":
            config = next(it, None)
            if config is None:
                raise ValueError("--config needs a YAML file path")
        elif a.startswith("--config="):
            config = a.split("=", 1)[1]
        else:
            rest.append(a)
    return config, rest


def validate(margs, dargs, targs, rargs) -> None:
    """Errors before any work: bad values, a missing data folder, conflicting options."""
    targs.validate()
    if rargs.mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"mixed_precision must be one of ['no', 'fp16', 'bf16'], got {rargs.mixed_precision!r}")
    if dargs.dev_signal not in ("stsb", "none"):
        raise ValueError(f"dev_signal must be 'stsb' or 'none', got {dargs.dev_signal!r}")
    if dargs.train_file is None and dargs.dataset_name is None or dargs.transductive_kfold_tasks \
            or dargs.dev_signal == "stsb":
        resolve_data_dir(dargs.data_dir)  # FileNotFoundError naming where it looked
    if dargs.train_file is not None and not Path(dargs.train_file).expanduser().is_file():
        raise ValueError(f"train_file {dargs.train_file!r}: expected an existing text file")
    if rargs.push_to_hub and not rargs.hub_model_id:
        raise ValueError("push_to_hub needs hub_model_id (e.g. user/simskip-minilm)")
    if dargs.max_train_samples is not None and dargs.max_train_samples < 1:
        raise ValueError(f"max_train_samples must be >= 1, got {dargs.max_train_samples!r}")
    if rargs.simcse_steps < 0:
        raise ValueError(f"simcse_steps must be >= 0, got {rargs.simcse_steps!r}")


def parse_args(argv=None):
    """(ModelArguments, DataArguments, HeadTrainingArguments, RunArguments) from YAML + CLI, validated."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config, rest = _split_config(argv)
    parser = HfArgumentParser(DATACLASSES)
    parser.set_defaults(**_read_yaml(config or DEFAULT_CONFIG))
    margs, dargs, targs, rargs = parser.parse_args_into_dataclasses(args=rest)  # unknown CLI keys: error, exit 2
    validate(margs, dargs, targs, rargs)
    return margs, dargs, targs, rargs


def to_dict(*groups) -> dict:
    return {k: v for g in groups for k, v in dataclasses.asdict(g).items()}
