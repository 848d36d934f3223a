"""Model cards: README.md rendered from ``model_card_template.md`` with ``huggingface_hub.ModelCard``.

Nothing in a card is typed by hand: the metadata and the tables come from the model's config and
from JSON records, given as dicts or paths, or read from the model folder (then its parent, a
training run's output_dir) when they are there:

    training_args.json           the training arguments (dict; or training_config.yaml, the recipe's)
    corpus.json                  what the head was trained on (dict; "datasets": Hub ids; "stage0_simcse"
                                 when the recipe's stage 0 fine-tuned the backbone)
    metrics.json                 the training outcome (the recipe's: which candidate was kept, dev scores)
    eval_results.json            hf_simskip.evaluation.evaluate() on the refined model
    baseline_eval_results.json   the same protocol on the backbone's raw embeddings

The card shows no local path: a backbone or corpus file given as a folder or file is named by its last part,
and the run's folders (cache, output, data) are not shown.

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
# the training outcome: read like the run's records, but not one of RECORD_FILES (whose keys are `hf-simskip card`'s
# options and the files the upload copies)
OUTCOME_FILES = {"metrics": "metrics.json"}
RUN_RECORDS = ("training_args", "corpus", "metrics")  # may sit one level up, in the training run's output_dir
# the settings of a training record the card shows (label, key), in this order, when the record has them
SETTINGS = (
    ("method", "method"),
    ("backbone", "model_name_or_path"),
    ("learning rate", "learning_rate"),
    ("batch size per device", "per_device_train_batch_size"),
    ("epochs", "num_train_epochs"),
    ("max steps", "max_steps"),
    ("positives", "positives"),
    ("views", "augmentation"),
    ("NT-Xent weight", "contrastive_weight"),
    ("distillation weight", "distillation_weight"),
    ("reconstruction weight", "reconstruction_weight"),
    ("geometry weight", "geometry_weight"),
    ("max train samples", "max_train_samples"),
    ("dev signal", "dev_signal"),
    ("keep the best head", "load_best_at_end"),
    ("stage 0 (SimCSE) steps", "simcse_steps"),
    ("seed", "seed"),
)
# corpus sources of a SentEval-layout data folder that are copies of a Hub dataset (hf_simskip.evaluation.download
# fetches wiki1m_for_simcse.txt from there)
HUB_SOURCES = {"unlabeled/wiki1m_for_simcse.txt": "princeton-nlp/datasets-for-simcse"}
# what corpus_table says in its own words, or leaves out (the caches are local folders)
CORPUS_KEYS = (
    "sources",
    "total",
    "unique",
    "max_train_samples",
    "transductive_kfold_tasks",
    "fingerprint_sha256",
    "license",
    "datasets",
    "dataset",
    "embedding_cache",
    "dropout_cache",
    "stage0_simcse",
)
CANDIDATE_NAMES = {"identity": "identity (the backbone's embedding)", "initial": "initial (the closed form)"}
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
    """The records (see the module docstring): a given dict/path wins, else the first of ``folders``
    holding the file; training_args, corpus and metrics also from the folders' parents (a training run's
    output_dir holds the model in ``final/``; training_config.yaml there stands for training_args.json).
    Evaluation results are only read from the folders themselves. Unknown keyword names are an error."""
    files = {**RECORD_FILES, **OUTCOME_FILES}
    unknown = set(given) - set(files)
    if unknown:
        raise TypeError(f"unknown card records {sorted(unknown)}; expected some of {sorted(files)}")
    folders = [Path(f) for f in folders if f]
    parents = [f.resolve().parent for f in folders] if search_parents else []
    records = {}
    for key, filename in files.items():
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


def _local(name) -> bool:
    """A path on this machine rather than a Hub id or a plain value."""
    return isinstance(name, str) and (
        os.path.isabs(name) or name.startswith(("./", "../", "~")) or os.path.exists(name)
    )


def _shown(name: str) -> str:
    """A name for the card: a local path becomes its last part."""
    return Path(name).name or name if _local(name) else name


def _cell(value) -> str:
    """A table cell: lists as JSON, '|' escaped so a value never breaks the markdown table."""
    return (json.dumps(value) if isinstance(value, (dict, list)) else str(value)).replace("|", "\\|")


def stage0_ran(records: dict) -> bool:
    """Whether the recipe's stage 0 fine-tuned the backbone (corpus.json holds its settings as stage0_simcse)."""
    return bool((records.get("corpus") or {}).get("stage0_simcse"))


def hub_datasets(corpus: dict | None) -> list[str]:
    """The Hub ids of a corpus record: its "datasets", the Hub datasets it was read from
    (``sources["dataset:NAME[split].column"]``, as hf_simskip.training.load_corpus records them) and the data folder
    files that are copies of a Hub dataset (HUB_SOURCES)."""
    corpus = corpus or {}
    datasets = corpus.get("datasets") or corpus.get("dataset")
    datasets = [datasets] if isinstance(datasets, str) else list(datasets or [])
    sources = corpus.get("sources") or {}
    datasets += [k[len("dataset:") :].split("[", 1)[0] for k in sources if k.startswith("dataset:")]
    datasets += [HUB_SOURCES[k] for k in sources if k in HUB_SOURCES]
    return list(dict.fromkeys(d for d in datasets if hub_id_or_none(d)))


def card_data(config, records: dict, model_name: str, license: str = "apache-2.0") -> ModelCardData:
    """The YAML metadata: library, pipeline, tags, base model (+ relation), datasets, license, model-index."""
    has_backbone = config.encoder_config is not None
    base = hub_id_or_none(config.encoder_name_or_path) if has_backbone else None
    datasets = hub_datasets(records.get("corpus"))
    results = records.get("results")
    extra = {}
    if base:
        # the backbone's weights ship unchanged and a small trained module sits on top: an adapter, in the Hub's
        # vocabulary; a backbone trained with the head, or fine-tuned by stage 0 first, makes it a fine-tune
        finetuned = not config.freeze_encoder or stage0_ran(records)
        extra["base_model_relation"] = "finetune" if finetuned else "adapter"
    evals = _eval_results(eval_rows(results, None), results.get("protocol", {})) if results else None
    tags = ["simskip", "embeddings", "contrastive-learning", "feature-extraction", "custom_code"]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="feature-extraction",
        license=license,
        tags=tags + (["sentence-transformers", "sentence-similarity"] if has_backbone else []),
        base_model=base,
        datasets=datasets or None,
        model_name=model_name if evals else None,
        eval_results=evals,
        **extra,
    )


def _score(value) -> str:
    return f"{value:.2f}" if isinstance(value, numbers.Real) and not isinstance(value, bool) else "-"


def training_outcome(config, metrics: dict | None, training_args: dict | None) -> dict | None:
    """What the training kept, in words, and the dev scores of the candidates (label, score), from the recipe's
    metrics.json (``kept``: identity | initial | trained | last, ``best_step``, ``best_dev_score``,
    ``dev_scores``). None without a record."""
    if not metrics:
        return None
    kept, scores = metrics.get("kept"), metrics.get("dev_scores") or {}
    best, step = metrics.get("best_dev_score"), metrics.get("best_step")
    total = metrics.get("total_steps", metrics.get("global_step"))
    method = (training_args or {}).get("method")
    backbone = scores.get("identity", metrics.get("initial_dev_score"))
    trained = [v for k, v in scores.items() if k.startswith("step ") and isinstance(v, numbers.Real)]
    best_trained = max(trained) if trained else None
    if kept == "identity":
        if config.layer_aware:
            returns = (
                f"the backbone's embedding padded with zeros: `[x, 0]`, the first {config.embedding_dim} columns "
                f"the backbone's own embedding, the last {config.layer_dim} zero"
            )
        elif config.output == "concat":
            returns = "the backbone's embedding twice, `[x, x]`" + (
                ", standardised" if config.standardize_input else ""
            )
        else:
            returns = "the backbone's embedding" + (
                ", standardised per dimension" if config.standardize_input else " unchanged"
            )
        others = f"; the best trained step scored {_score(best_trained)}" if best_trained is not None else ""
        if "initial" in scores:
            others += f", the closed form {_score(scores['initial'])}"
        text = (
            f"**No refined head beat the backbone.** On the dev signal the backbone's own embedding scored "
            f"{_score(backbone)}{others}, so the selection kept the untrained head, and this model returns {returns}. "
            "Use the backbone itself, or train again (another corpus, learning rate or method)."
        )
    elif kept == "initial":
        closed = f" (`{config.layer_closed_form}`)" if config.layer_closed_form else ""
        if method in ("pca", "residual_pca") or not trained:
            why = f"no gradient step was taken (method `{method}`)" if method else "no gradient step was taken"
        else:
            why = f"no trained step beat it (the best scored {_score(best_trained)})"
        text = (
            f"**Closed-form, not trained.** The layer branch's linear map{closed} was fitted in closed form on the "
            f"corpus and kept: {why}. Dev score {_score(best)}, the backbone's own embedding {_score(backbone)}."
        )
    elif kept == "trained":
        of = f" of {total}" if total is not None else ""
        text = (
            f"**Trained.** The head of step {step}{of} scored best on the dev signal and was kept: {_score(best)}, the "
            f"backbone's own embedding {_score(backbone)}"
            + (f", the closed form before training {_score(scores['initial'])}" if "initial" in scores else "")
            + "."
        )
    elif kept == "last" and not metrics.get("global_step") and config.layer_aware and config.layer_closed_form:
        text = (
            f"**Closed-form, not trained.** The layer branch's linear map (`{config.layer_closed_form}`) was fitted in "
            "closed form on the corpus, no gradient step was taken, and no dev signal compared it with the backbone."
        )
    elif kept == "last":
        text = (
            f"No dev selection: the head after the last step ({metrics.get('global_step')}) was kept, without a "
            "comparison with the backbone (no dev signal, or the best head was not restored)."
        )
    else:
        text = (
            f"The training record does not say which candidate was kept; best dev score {_score(best)} at step {step}."
        )
    details = metrics.get("dev_details") or {}
    if kept in ("identity", "initial", "trained") and any("labeled_dev_accuracy" in d for d in details.values()):
        text += (
            " The dev scores are the cross-validated accuracy of a logistic probe on the trainer's own labeled dev "
            "sentences, "
            "among the candidates (and weights of the layer part) that kept the STS dev geometry."
        )
    kept_label = {"identity": "identity", "initial": "initial", "trained": f"step {step}"}.get(kept)
    rows = [
        (
            CANDIDATE_NAMES.get(label, label.replace("step ", "trained, step "))
            + (" (kept)" if label == kept_label else ""),
            _score(value),
        )
        for label, value in scores.items()
    ]
    return {"kept": kept, "text": text, "rows": rows, "selected_on_dev": kept in ("identity", "initial", "trained")}


def training_settings(record: dict | None, config=None) -> list[tuple[str, str]]:
    """The settings that decide a run (SETTINGS), as (label, value) cells; no local path is shown. The views and
    positives are left out when no NT-Xent term used them (a layer-aware head's default loss)."""
    record = record or {}
    no_views = config is not None and config.layer_aware and not record.get("contrastive_weight")
    rows = []
    for label, key in SETTINGS:
        if key not in record or (no_views and key in ("augmentation", "positives", "contrastive_weight")):
            continue
        value = record[key]
        if key == "model_name_or_path" and value is None:
            value = "sentence-transformers/all-MiniLM-L6-v2 (packaged)"
        unset = value is None or (key == "max_steps" and value < 0) or (key == "simcse_steps" and not value)
        if unset:  # the default: nothing to say (max_steps -1: the epochs decide)
            continue
        rows.append((label, _cell(_shown(value) if isinstance(value, str) else value)))
    return rows


def corpus_table(corpus: dict | None) -> tuple[str, list[tuple[str, str]]]:
    """A one-line summary and (source, sentences) rows of a corpus record; local file names shortened."""
    if not corpus:
        return "", []
    rows = []
    for name, count in (corpus.get("sources") or {}).items():
        if name.startswith("file:"):
            name = "file " + _shown(name[len("file:") :])
        rows.append((_cell(name), _cell(count)))
    parts = []
    if corpus.get("unique") is not None:
        parts.append(f"{corpus['unique']:,} unique sentences" if isinstance(corpus["unique"], int) else "")
    if corpus.get("max_train_samples"):
        parts.append(f"a seeded sample of {corpus['max_train_samples']:,}")
    if corpus.get("transductive_kfold_tasks"):
        parts.append("transductive: includes the unlabeled sentences of CR, MPQA, MR and SUBJ")
    if corpus.get("fingerprint_sha256"):
        parts.append(f"sha256 of the sorted sentences `{str(corpus['fingerprint_sha256'])[:16]}...`")
    if corpus.get("license"):
        parts.append(f"license {corpus['license']}")
    if not rows:  # a record written by hand: its plain values, paths shortened
        parts += [
            f"{key} {_cell(_shown(value) if isinstance(value, str) else value)}"
            for key, value in corpus.items()
            if key not in CORPUS_KEYS and isinstance(value, (str, int, float)) and not isinstance(value, bool)
        ]
    summary = "; ".join(p for p in parts if p) + "." if parts else "as recorded in corpus.json."
    return summary, rows


def _layers_text(config) -> str:
    layers = list(config.layers or [])
    runs = ", ".join(str(k) for k in layers)
    if layers and layers == list(range(layers[0], layers[-1] + 1)) and len(layers) > 2:
        runs = f"{layers[0]} to {layers[-1]}"
    return f"the backbone's hidden states {runs} (0 = the token embeddings), each pooled (`{config.layer_pooling}`) from the same forward pass as `x`"


def render_card(
    config, records: dict, repo_id: str | None = None, license: str = "apache-2.0", template_path=None
) -> ModelCard:
    """A ModelCard for ``config`` (a SimSkipConfig) and the records from :func:`collect_records`."""
    from ..version import __version__

    model_name = (repo_id or "simskip-model").rsplit("/", 1)[-1]
    data = card_data(config, records, model_name, license)
    results, baseline = records.get("results"), records.get("baseline_results")
    rows = eval_rows(results, baseline) if results else []
    protocol = {k: (results or {}).get("protocol", {}).get(k) for k in PROTOCOL_KEYS}
    has_backbone = config.encoder_config is not None
    backbone_name = _shown(config.encoder_name_or_path or "a local backbone") if has_backbone else None
    base = data.base_model
    backbone_short = (base or backbone_name or "").rsplit("/", 1)[-1]
    kind = "layer-aware SimSkip refiner" if config.layer_aware else "SimSkip refiner"
    subject = f"{kind} of {backbone_short}" if has_backbone else f"{kind} for {config.embedding_dim}-d embeddings"
    title = f"{model_name}: {subject}" if repo_id else subject[0].upper() + subject[1:]
    stage0 = (records.get("corpus") or {}).get("stage0_simcse") or {}
    finetune_text = (
        f"SimCSE stage 0, {stage0['simcse_steps']} steps, before the head was trained"
        if isinstance(stage0, dict) and stage0.get("simcse_steps")
        else ("SimCSE stage 0, before the head was trained" if stage0 else "trained with the head")
    )
    summary, corpus_rows = corpus_table(records.get("corpus"))
    scale = getattr(config, "layer_scale", None) or 0.0
    return ModelCard.from_template(
        data,
        template_path=str(template_path or TEMPLATE_PATH),
        title=title,
        model_name=model_name,
        repo_id=repo_id or "path/to/this-model",
        has_backbone=has_backbone,
        backbone_link=f"[`{base}`](https://huggingface.co/{base})" if base else None,
        backbone_name=backbone_name,
        backbone_short=backbone_short,
        backbone_finetuned=has_backbone and (not config.freeze_encoder or bool(stage0)),
        finetune_text=finetune_text,
        encoder_revision=config.encoder_revision,
        pooling=config.pooling,
        encoder_normalize=config.encoder_normalize,
        max_seq_length=config.max_seq_length,
        embedding_dim=config.embedding_dim,
        output_dim=config.output_dim,
        layers=config.layers,
        layers_text=_layers_text(config) if config.layer_aware else "",
        layer_scale=scale,
        layer_dim=getattr(config, "layer_dim", None),
        u_share=round(100 * scale**2 / (1 + scale**2)),
        outcome=training_outcome(config, records.get("metrics"), records.get("training_args")),
        settings=training_settings(records.get("training_args"), config),
        has_corpus=records.get("corpus") is not None,
        corpus_summary=summary,
        corpus_rows=corpus_rows,
        head_config=[(k, _cell(v)) for k, v in config.head_dict().items() if k not in BACKBONE_CARD_FIELDS],
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
    "training_outcome",
    "RECORD_FILES",
    "OUTCOME_FILES",
    "TEMPLATE_PATH",
]
