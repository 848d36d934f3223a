"""Arguments of recipes/train_simcse_skip.py as dataclasses: defaults < --method preset < YAML (--config) < CLI.

Nothing here restates a hyper-parameter that has an owner elsewhere:
- ``ModelArguments`` is derived from ``SimSkipConfig`` (the architecture): one optional argument per config
  field, its help from ``FIELD_HELP`` and its default shown from the config's signature; ``None`` means
  "SimSkipConfig's default, or what the backbone's own files say";
- the head's training settings are ``hf_simskip.training.HeadTrainingArguments`` itself, and stage 0's are
  ``hf_simskip.training.simcse.Stage0Arguments``.
Only the backbone's location and the data/run plumbing are defined in this file. Unknown keys, in a YAML or on
the command line, are errors.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import yaml
from transformers import HfArgumentParser

from hf_simskip import SimSkipConfig
from hf_simskip.models.simskip.configuration_simskip import BACKBONE_FIELDS, FIELD_HELP
from hf_simskip.paths import find_data_dir
from hf_simskip.training import HeadTrainingArguments, LabeledDev, read_labeled_dev
from hf_simskip.training.cache import CACHE_DTYPES, default_cache_dir
from hf_simskip.training.checkpoint import check_output_dir, check_writable, resolve_checkpoint
from hf_simskip.training.simcse import Stage0Arguments

logger = logging.getLogger(__name__)
# --method: what each method sets unless the YAML or the command line says otherwise. The closed-form methods
# fit the layer branch's linear map on the corpus and take no gradient step (seconds, not minutes)
METHODS = {
    "train": {},
    "pca": {"layer_closed_form": "pca", "layer_hidden_dim": 0, "max_steps": 0},
    "residual_pca": {"layer_closed_form": "residual_pca", "layer_hidden_dim": 0, "max_steps": 0},
}


def _config_arguments(config_class, name: str):
    """A dataclass with one optional field per ``config_class`` field (but the backbone's own), default None."""
    hints = typing.get_type_hints(config_class.__init__)
    defaults = config_class.field_defaults()
    fields = [
        (
            "model_name_or_path",
            str | None,
            field(
                default=None, metadata={"help": "backbone id or folder; None: the packaged offline all-MiniLM-L6-v2"}
            ),
        ),
        ("revision", str | None, field(default=None, metadata={"help": "the backbone's revision"})),
    ]
    for key in config_class.field_names():
        if key in BACKBONE_FIELDS:
            continue
        kind = hints[key]
        optional = kind if type(None) in typing.get_args(kind) else kind | None
        if key == "layers":  # hidden-state indices, or the word none for the paper's head on x alone
            optional = list[str] | None
        default = defaults[key]
        said = "derived from the backbone or d" if default is None else repr(default)
        # "%(default).0s" prints nothing: it stops argparse adding "(default: None)" beside the real default
        help_ = f"{FIELD_HELP[key]} [default: {said}]%(default).0s"
        fields.append((key, optional, field(default=None, metadata={"help": help_})))
    return dataclasses.make_dataclass(name, fields)


ModelArguments = _config_arguments(SimSkipConfig, "ModelArguments")
ModelArguments.__doc__ = "The backbone and every SimSkipConfig field (derived from SimSkipConfig)."


@dataclass
class DataArguments:
    data_dir: str | None = field(
        default=None, metadata={"help": "SentEval-layout folder; else $HF_SIMSKIP_DATA, else ../shared/data/senteval"}
    )
    train_file: str | None = field(default=None, metadata={"help": "a text file, one sentence a line"})
    dataset_name: str | None = field(
        default=None, metadata={"help": "a load_from_disk folder or a Hub dataset (with --dataset_config_name)"}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "the Hub dataset's configuration name"})
    dataset_split: str = field(default="train", metadata={"help": "the dataset split to read"})
    text_column: str = field(default="text", metadata={"help": "the dataset column holding the sentences"})
    transductive_kfold_tasks: bool = field(
        default=False,
        metadata={"help": "also train on the (unlabeled) sentences of CR, MPQA, MR, SUBJ: transductive, opt-in"},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "train on a seeded random subset of this many sentences"}
    )
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "where embedding caches live; None: resolved when the run starts, $HF_SIMSKIP_CACHE, else "
            "$HF_HOME/hf_simskip (hf_simskip.training.cache.default_cache_dir)"
        },
    )
    cache_dtype: str = field(
        default="float16",
        metadata={
            "help": "float16 | float32: how the cache stores rows; a float16 build stops (no cache written) when the "
            "backbone's outputs exceed float16's range (65504): use float32 for such backbones"
        },
    )
    encode_batch_size: int = field(default=64, metadata={"help": "sentences per backbone forward when caching"})
    dev_signal: str = field(
        default="sts",
        metadata={
            "help": "sts: STS-B dev and SICK-R trial (the similarity geometry every candidate must keep, see "
            "--dev_tolerance and --layer_scales) | stsb: STS-B dev alone | none: no selection, the last step is kept"
        },
    )
    max_dev_pairs: int | None = field(
        default=None, metadata={"help": "use only the first N pairs of each dev split (tests)"}
    )
    dev_file: str | None = field(
        default=None,
        metadata={
            "help": "labeled sentences of your own task (.csv/.tsv with 'sentence' and 'label' columns, .jsonl, or "
            "'label<TAB>sentence' lines): the candidate and weight of u with the best "
            f"{LabeledDev.FOLDS}-fold probe accuracy on them "
            "win among those keeping the STS geometry (with --dev_signal none: on this file alone)"
        },
    )


@dataclass
class RunArguments:
    method: str = field(
        default="train",
        metadata={
            "help": "train: fit the closed form, then train the head (the default); pca / residual_pca: the "
            "closed-form layer refiner alone, no gradient step (sets layer_closed_form, layer_hidden_dim 0, "
            "max_steps 0 unless given)"
        },
    )
    mixed_precision: str | None = field(
        default=None,
        metadata={
            "help": "no | fp16 | bf16; None: what the launcher or its config says (accelerate launch "
            "--mixed_precision, ACCELERATE_MIXED_PRECISION), else no"
        },
    )
    report_to: str = field(default="none", metadata={"help": "none | tensorboard | wandb | all (as in transformers 5)"})
    eval_after_training: bool = field(
        default=False,
        metadata={"help": "fast-mode SentEval evaluation of final/ (encodes ~110k sentences: ~8 min on 2 CPU cores)"},
    )
    push_to_hub: bool = field(default=False, metadata={"help": "upload final/ to hub_model_id at the end"})
    hub_model_id: str | None = field(default=None, metadata={"help": "namespace/name on the Hub"})
    hub_private: bool = field(default=True, metadata={"help": "create the Hub repository as private"})


DATACLASSES = (ModelArguments, DataArguments, HeadTrainingArguments, Stage0Arguments, RunArguments)


class RecipeArguments(NamedTuple):
    """The recipe's argument groups, each owned by its dataclass."""

    model: typing.Any  # ModelArguments
    data: DataArguments
    train: HeadTrainingArguments
    stage0: Stage0Arguments
    run: RunArguments


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


def build_parser() -> HfArgumentParser:
    """HfArgumentParser over the recipe's dataclasses, plus --config; the help of every --no_X says what it
    turns off (HfArgumentParser copies the positive text)."""
    parser = HfArgumentParser(DATACLASSES)
    parser.add_argument(
        "--config", default=None, help="a YAML file of argument values (command-line arguments override it)"
    )
    for action in parser._actions:
        negative = [o for o in action.option_strings if o.startswith("--no_")]
        if negative:
            action.help = f"turn {negative[0][len('--no_') :]} off"
    return parser


def validate(args: RecipeArguments) -> RecipeArguments:
    """Errors before any work (bad values, missing or unwritable folders, conflicting options). Returns the
    arguments to run with: a signal that needs the SentEval data folder is turned off, with a warning, when
    there is none (the given groups are not changed)."""
    model_args, data_args, train_args, stage0_args, run_args = args
    train_args.validate()
    stage0_args.validate()
    if run_args.method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {run_args.method!r}")
    if run_args.mixed_precision not in (None, "no", "fp16", "bf16"):
        raise ValueError(
            f"mixed_precision must be one of [None, 'no', 'fp16', 'bf16'], got {run_args.mixed_precision!r}"
        )
    if data_args.cache_dtype not in CACHE_DTYPES:
        raise ValueError(f"cache_dtype must be one of {list(CACHE_DTYPES)}, got {data_args.cache_dtype!r}")
    if data_args.dev_signal not in ("sts", "stsb", "none"):
        raise ValueError(f"dev_signal must be 'sts', 'stsb' or 'none', got {data_args.dev_signal!r}")
    if data_args.encode_batch_size < 1:
        raise ValueError(f"encode_batch_size must be >= 1, got {data_args.encode_batch_size!r}")
    data_dir = find_data_dir(data_args.data_dir)  # a named folder that does not exist: FileNotFoundError
    if data_dir is None:
        if data_args.transductive_kfold_tasks:
            raise ValueError(
                "transductive_kfold_tasks reads CR, MPQA, MR and SUBJ from the SentEval data folder, "
                "and there is none: pass --data_dir or set $HF_SIMSKIP_DATA"
            )
        off = []
        if data_args.dev_signal != "none":
            data_args, off = dataclasses.replace(data_args, dev_signal="none"), off + ["dev_signal"]
        if run_args.eval_after_training:
            run_args, off = dataclasses.replace(run_args, eval_after_training=False), off + ["eval_after_training"]
        for name in off:
            logger.warning(
                "no SentEval data folder: %s turned off (it reads STS-B dev / the SentEval tasks); "
                "pass --data_dir or set $HF_SIMSKIP_DATA to keep it",
                name,
            )
    if data_args.dev_file is not None:
        LabeledDev.check_labels(read_labeled_dev(data_args.dev_file)[1])  # stops before any encoding
    if data_args.train_file is not None and not Path(data_args.train_file).expanduser().is_file():
        raise ValueError(f"train_file {data_args.train_file!r}: expected an existing text file")
    cache_dir = Path(data_args.cache_dir).expanduser() if data_args.cache_dir is not None else default_cache_dir()
    check_writable(cache_dir, "cache_dir")
    resume = train_args.resume_from_checkpoint
    if resume is not None and resume != "latest":
        resolve_checkpoint(resume, train_args.output_dir)  # the folder must be a checkpoint
    # a finished run is replaced only with overwrite_output_dir (at the end), or by resuming its own checkpoints
    check_output_dir(train_args.output_dir, train_args.overwrite_output_dir, resume)
    if run_args.push_to_hub and not run_args.hub_model_id:
        raise ValueError("push_to_hub needs hub_model_id (e.g. user/simskip-minilm)")
    if data_args.max_train_samples is not None and data_args.max_train_samples < 1:
        raise ValueError(f"max_train_samples must be >= 1, got {data_args.max_train_samples!r}")
    return RecipeArguments(model_args, data_args, train_args, stage0_args, run_args)


def _method_defaults(values: dict) -> dict:
    """The --method preset for the values given so far (YAML and command line), as parser defaults."""
    method = values.get("method", "train")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    return dict(METHODS[method])


def parse_args(argv=None) -> RecipeArguments:
    """The recipe's argument groups from the defaults, the --method preset, YAML and CLI, validated."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config, rest = _split_config(argv)
    yaml_values = _read_yaml(config) if config is not None else {}
    parser = build_parser()
    parser.set_defaults(**yaml_values)
    first = parser.parse_args_into_dataclasses(args=rest)  # unknown arguments: exit 2
    method = first[DATACLASSES.index(RunArguments)].method
    preset = {k: v for k, v in _method_defaults({"method": method}).items() if k not in yaml_values}
    if preset:  # the preset fills what neither the YAML nor the command line set
        parser.set_defaults(**preset)
    groups = parser.parse_args_into_dataclasses(args=rest)[: len(DATACLASSES)]
    return validate(RecipeArguments(*groups))


def config_kwargs(model_args) -> dict:
    """The SimSkipConfig fields set in ``model_args`` (None: left to SimSkipConfig or the backbone)."""
    kwargs = {
        k: v
        for k, v in dataclasses.asdict(model_args).items()
        if k not in ("model_name_or_path", "revision") and v is not None
    }
    if "layers" in kwargs:
        kwargs["layers"] = layers_value(kwargs["layers"])
    return kwargs


def layers_value(value):
    """``--layers``: hidden-state indices (``0 1 2``), or ``none`` (the paper's head on x alone)."""
    items = [value] if isinstance(value, (str, int)) else list(value)
    if len(items) == 1 and str(items[0]).strip().lower() == "none":
        return None
    try:
        return [int(k) for k in items]
    except (TypeError, ValueError):
        raise ValueError(f"--layers takes hidden-state indices (e.g. 0 1 2) or the word none, got {value!r}") from None


def to_dict(*groups) -> dict:
    return {k: v for g in groups for k, v in dataclasses.asdict(g).items()}
