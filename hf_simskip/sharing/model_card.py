"""Model cards: README.md rendered from ``model_card_template.md`` with ``huggingface_hub.ModelCard``.

Nothing in a card is typed by hand: the metadata and the tables come from the model's config and
from JSON records, given as dicts or paths, or read from the model folder (then its parent, a
training run's output_dir) when they are there:

    training_args.json           the training arguments (dict; or training_config.yaml, the recipe's)
    corpus.json                  what the head was trained on (dict; "datasets": Hub ids)
    eval_results.json            hf_simskip.evaluation.evaluate() on the refined model
    baseline_eval_results.json   the same protocol on the backbone's raw embeddings

The template is the repository's top-level ``model_card_template.md``, the single source of the card;
``hf_simskip/sharing/model_card_template.md`` is a link to it, which the wheel resolves into a file, so
an installed package renders the same template.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..files import write_text

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).parent / "model_card_template.md"
RECORD_FILES = {
    "training_args": "training_args.json",
    "corpus": "corpus.json",
    "results": "eval_results.json",
    "baseline_results": "baseline_eval_results.json",
}
ALTERNATIVE_FILES = {"training_args": ("training_config.yaml",)}  # what the training recipe writes
RUN_RECORDS = ("training_args", "corpus")  # may sit one level up, in the training run's output_dir
METRICS = {  # results key -> (model-index metric type, pretty name)
    "acc": ("accuracy", "accuracy"),
    "f1": ("f1", "F1"),
    "spearman": ("spearmanr", "Spearman x100"),
    "pearson": ("pearsonr", "Pearson x100"),
}
BACKBONE_CARD_FIELDS = ("pooling", "encoder_normalize", "max_seq_length", "freeze_encoder")  # in the card's prose
PROTOCOL_KEYS = ("mode", "kfold", "seed", "standardize")


def _load_record(value, name: str) -> dict | None:
    """A dict, a path to a JSON object, or None."""
    if value is None or isinstance(value, dict):
        return value
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a dict, a path to a JSON file or None, got {type(value).__name__}")
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such JSON file {str(path)!r}")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, ValueError) as err:
        raise ValueError(f"{name}: {str(path)!r} is not valid JSON/YAML ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{name}: {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def collect_records(folders=(), search_parents: bool = True, **given) -> dict:
    """The four records (see the module docstring): a given dict/path wins, else the first of ``folders``
    holding the file; training_args and corpus also from the folders' parents (a training run's
    output_dir holds the model in ``final/``; training_config.yaml there stands for training_args.json).
    Evaluation results are only read from the folders themselves. Unknown keyword names are an error."""
    unknown = set(given) - set(RECORD_FILES)
    if unknown:
        raise TypeError(f"unknown card records {sorted(unknown)}; expected some of {sorted(RECORD_FILES)}")
    folders = [Path(f) for f in folders if f]
    parents = [f.resolve().parent for f in folders] if search_parents else []
    records = {}
    for key, filename in RECORD_FILES.items():
        value = given.get(key)
        if value is None:
            search = folders + (parents if key in RUN_RECORDS else [])
            names = (filename, *ALTERNATIVE_FILES.get(key, ()))
            found = [f / n for f in search for n in names if (f / n).is_file()]
            value = found[0] if found else None
        records[key] = _load_record(value, key)
        if key in ("results", "baseline_results") and records[key] is not None:
            check_scores(records[key], key if isinstance(value, dict) else f"{key} {str(value)!r}")
    return records


def check_scores(record: dict, where: str) -> None:
    """An evaluate() result whose every score the card prints is a finite number; else a ValueError naming
    ``where`` (the record and its file) and the key."""
    if not isinstance(record.get("tasks"), dict):
        raise ValueError(f"{where} must be an evaluate() result with a 'tasks' dict, got keys {sorted(record)}")
    for task, scores in record["tasks"].items():
        if not isinstance(scores, dict):
            raise ValueError(
                f'{where}: tasks.{task} must be an object of scores (e.g. {{"acc": 81.2}}), got {scores!r:.60}'
            )
        for key in METRICS:
            if key in scores:
                _check_number(scores[key], where, f"tasks.{task}.{key}")
    if record.get("avg") is not None:
        _check_number(record["avg"], where, "avg")


def _check_number(value, where: str, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(
            f"{where}: {key} must be a finite number, got {value!r:.60} ({type(value).__name__}); fix the file "
            "or write it again with 'hf-simskip eval --output'"
        )


def hub_id_or_none(name) -> str | None:
    """``name`` when it can be a Hub repo id (not a local path), else None."""
    if not isinstance(name, str) or os.path.isabs(name) or os.path.exists(name) or "/" not in name:
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def eval_rows(results: dict, baseline: dict | None) -> list[dict]:
    """One row per (task, metric) of ``results``, the baseline's number beside it when it has one."""
    check_scores(results, "results")
    if baseline is not None:
        check_scores(baseline, "baseline_results")
    rows = []
    base_tasks = (baseline or {}).get("tasks", {})
    for task, scores in results["tasks"].items():
        for key in METRICS:
            if key not in scores:
                continue
            value = scores[key]
            base = base_tasks.get(task, {}).get(key)
            rows.append(
                {
                    "task": task,
                    "metric": key,
                    "value": value,
                    "refined": f"{value:.2f}",
                    "baseline": "-" if base is None else f"{base:.2f}",
                    "delta": "-" if base is None else f"{value - base:+.2f}",
                }
            )
    if results.get("avg") is not None:
        base = (baseline or {}).get("avg")
        rows.append(
            {
                "task": "avg (transfer)",
                "metric": "acc",
                "value": results["avg"],
                "refined": f"{results['avg']:.2f}",
                "baseline": "-" if base is None else f"{base:.2f}",
                "delta": "-" if base is None else f"{results['avg'] - base:+.2f}",
            }
        )
    return rows


def _eval_results(rows: list[dict], protocol: dict) -> list[EvalResult]:
    args = {k: protocol[k] for k in PROTOCOL_KEYS if k in protocol}
    out = []
    for row in rows:
        if row["task"].startswith("avg"):
            continue
        sts = row["metric"] in ("spearman", "pearson")
        metric_type, metric_name = METRICS[row["metric"]]
        out.append(
            EvalResult(
                task_type="sentence-similarity" if sts else "text-classification",
                task_name="Semantic Textual Similarity" if sts else "SentEval transfer (logistic-regression probe)",
                dataset_type=f"senteval/{row['task'].lower()}",
                dataset_name=f"SentEval {row['task']}",
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=row["value"],
                metric_args=args or None,
            )
        )
    return out


def _protocol_difference(results: dict, baseline: dict | None) -> str:
    if not baseline:
        return ""
    mine, theirs = results.get("protocol", {}), baseline.get("protocol", {})
    diff = [f"{k}: {theirs.get(k)!r} vs {mine.get(k)!r}" for k in PROTOCOL_KEYS if theirs.get(k) != mine.get(k)]
    return "; ".join(diff)


def _flat(record: dict | None) -> list[tuple[str, str]]:
    """(key, value) table cells; '|' escaped so a value never breaks the markdown table."""
    cell = lambda v: (json.dumps(v) if isinstance(v, (dict, list)) else str(v)).replace("|", "\\|")  # noqa: E731
    return [(str(k), cell(v)) for k, v in (record or {}).items()]


def card_data(config, records: dict, model_name: str, license: str = "apache-2.0") -> ModelCardData:
    """The YAML metadata: library, pipeline, tags, base model (+ relation), datasets, license, model-index."""
    base = hub_id_or_none(config.encoder_name_or_path) if config.encoder_config is not None else None
    corpus = records.get("corpus") or {}
    datasets = corpus.get("datasets") or corpus.get("dataset")
    datasets = [datasets] if isinstance(datasets, str) else list(datasets or [])
    # hf_simskip.training.load_corpus records a Hub corpus as sources["dataset:NAME[split].column"]
    datasets += [k[len("dataset:") :].split("[", 1)[0] for k in corpus.get("sources") or {} if k.startswith("dataset:")]
    datasets = list(dict.fromkeys(d for d in datasets if hub_id_or_none(d)))
    results = records.get("results")
    extra = {}
    if base:
        # the backbone's weights ship unchanged and a small trained module sits on top: an adapter, in the
        # Hub's vocabulary; with a trained backbone it is a fine-tune
        extra["base_model_relation"] = "adapter" if config.freeze_encoder else "finetune"
    evals = _eval_results(eval_rows(results, None), results.get("protocol", {})) if results else None
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="feature-extraction",
        license=license,
        tags=["simskip", "embeddings", "contrastive-learning", "feature-extraction", "custom_code"]
        + (["sentence-similarity"] if config.encoder_config is not None else []),
        base_model=base,
        datasets=datasets or None,
        model_name=model_name if evals else None,
        eval_results=evals,
        **extra,
    )


def render_card(
    config, records: dict, repo_id: str | None = None, license: str = "apache-2.0", template_path=None
) -> ModelCard:
    """A ModelCard for ``config`` (a SimSkipConfig) and the records from :func:`collect_records`."""
    from .. import __version__

    model_name = (repo_id or "simskip-model").rsplit("/", 1)[-1]
    data = card_data(config, records, model_name, license)
    results, baseline = records.get("results"), records.get("baseline_results")
    rows = eval_rows(results, baseline) if results else []
    protocol = {k: (results or {}).get("protocol", {}).get(k) for k in PROTOCOL_KEYS}
    return ModelCard.from_template(
        data,
        template_path=str(template_path or TEMPLATE_PATH),
        model_name=model_name,
        repo_id=repo_id or "path/to/this-model",
        has_backbone=config.encoder_config is not None,
        base_model=data.base_model,
        encoder_name_or_path=config.encoder_name_or_path,
        encoder_revision=config.encoder_revision,
        pooling=config.pooling,
        encoder_normalize=config.encoder_normalize,
        max_seq_length=config.max_seq_length,
        freeze_encoder=config.freeze_encoder,
        embedding_dim=config.embedding_dim,
        output_dim=config.output_dim,
        layers=getattr(config, "layers", None),
        layer_pooling=getattr(config, "layer_pooling", None),
        layer_scale=getattr(config, "layer_scale", None),
        layer_dim=getattr(config, "layer_dim", None),
        head_config=[(k, json.dumps(v)) for k, v in config.head_dict().items() if k not in BACKBONE_CARD_FIELDS],
        training_args=_flat(records.get("training_args")),
        corpus=_flat(records.get("corpus")),
        eval_rows=rows,
        protocol=protocol,
        has_baseline=baseline is not None,
        baseline_protocol_differs=_protocol_difference(results or {}, baseline),
        hf_simskip_version=__version__,
    )


def write_model_card(
    model_or_config, folder, repo_id: str | None = None, sources=(), search_parents: bool = True, **records
) -> Path:
    """Render the card into ``folder/README.md`` (atomically). Records not given are read from ``folder``
    and then from ``sources`` (other folders, e.g. where the model was saved before), see collect_records."""
    config = getattr(model_or_config, "config", model_or_config)
    if getattr(config, "model_type", None) != "simskip":
        raise TypeError(f"expected a SimSkipModel or SimSkipConfig, got {type(model_or_config).__name__}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(folder)!r} does not exist")
    card = render_card(config, collect_records([folder, *sources], search_parents, **records), repo_id)
    return write_text(folder / "README.md", str(card))


def card_for_folder(folder, repo_id: str | None = None, **records) -> ModelCard:
    """The card of a saved model folder (its config.json and records), rendered but not written."""
    from ..models.simskip.configuration_simskip import SimSkipConfig

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{str(folder)!r} has no config.json: expected a folder saved by SimSkipModel")
    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type != "simskip":
        raise ValueError(f"{str(folder)!r} holds a {model_type!r} model, expected model_type 'simskip'")
    return render_card(SimSkipConfig.from_pretrained(folder), collect_records([folder], True, **records), repo_id)


def write_card_for_folder(folder, repo_id: str | None = None, **records) -> Path:
    """Render the card of a saved model folder into its README.md (atomically)."""
    return write_text(Path(folder) / "README.md", str(card_for_folder(folder, repo_id, **records)))


__all__ = [
    "write_model_card",
    "write_card_for_folder",
    "card_for_folder",
    "render_card",
    "collect_records",
    "RECORD_FILES",
    "TEMPLATE_PATH",
]
