"""Train a SimSkip head on top of a frozen sentence encoder, with accelerate.

    accelerate launch recipes/train_simcse_skip.py                                  # offline defaults
    accelerate launch recipes/train_simcse_skip.py --config recipes/configs/noise.yaml --learning_rate 3e-4
    accelerate launch --config_file recipes/accelerate/single_gpu_bf16.yaml recipes/train_simcse_skip.py \
        --config recipes/configs/simcse_bert_base.yaml

Stages: (0, optional) SimCSE fine-tuning of the backbone; (1) encode the corpus once with the frozen
backbone into a fingerprinted Arrow cache; (2) train the head on the cached embeddings (two augmented
views, NT-Xent with negatives from every process), with STS-B dev Spearman as the dev signal.
Arguments come from the dataclass defaults (SimSkipConfig and HeadTrainingArguments own them), an
optional --config YAML and the command line, in that order of precedence (CLI wins).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed

from hf_simskip import SimSkipModel
from hf_simskip.files import write_json, write_text
from hf_simskip.training import build_embedding_cache, load_corpus, stsb_dev_fn, stsb_dev_pairs, train_head
from hf_simskip.training.simcse import simcse_finetune, simcse_settings_key

from recipe_args import DataArguments, ModelArguments, config_kwargs, parse_args, to_dict

logger = get_logger(__name__)


def build_model(model_args: ModelArguments) -> SimSkipModel:
    model = SimSkipModel.from_encoder_pretrained(
        model_args.model_name_or_path, revision=model_args.revision, **config_kwargs(model_args)
    )
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    return model


def make_dev_fn(model, data_args: DataArguments, accelerator):
    """STS-B dev Spearman (x100) of the cosine of refined embeddings; raw dev embeddings cached once."""
    a, b, gold = stsb_dev_pairs(data_args.data_dir, data_args.max_dev_pairs)
    cache = (data_args.cache_dir, accelerator, data_args.encode_batch_size)
    xa, _ = build_embedding_cache(model, a, *cache, name="stsb-dev-a")
    xb, _ = build_embedding_cache(model, b, *cache, name="stsb-dev-b")
    return stsb_dev_fn(xa, xb, gold, accelerator.device)


def prepare_corpus(data_args: DataArguments, seed: int) -> tuple[list[str], dict]:
    sentences, corpus = load_corpus(
        data_args.data_dir,
        data_args.train_file,
        data_args.dataset_name,
        data_args.dataset_split,
        data_args.text_column,
        data_args.transductive_kfold_tasks,
    )
    if data_args.max_train_samples and data_args.max_train_samples < len(sentences):
        keep = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed))
        sentences = sorted(sentences[i] for i in keep[: data_args.max_train_samples].tolist())
        corpus["max_train_samples"] = data_args.max_train_samples
    logger.info("training corpus: %s", json.dumps(corpus), main_process_only=True)
    return sentences, corpus


def save_outputs(model, metrics: dict, groups, out: Path) -> None:
    """final/ (save_pretrained), training_config.yaml, corpus.json, metrics.json; eval and push if asked."""
    _, data_args, _, run_args = groups
    final = out / "final"
    model.save_pretrained(final)
    write_text(out / "training_config.yaml", yaml.safe_dump(to_dict(*groups)))
    write_json(out / "corpus.json", metrics["corpus"])
    if run_args.eval_after_training:
        from hf_simskip.evaluation import evaluate, save_results

        metrics["eval"] = evaluate(model.encode, data_dir=data_args.data_dir, mode="fast")
        save_results(metrics["eval"], final / "eval_results.json")
    write_json(out / "metrics.json", metrics)
    logger.info(
        "saved the refined model to %s; metrics: %s",
        final,
        {k: v for k, v in metrics.items() if k not in ("args", "corpus", "eval")},
        main_process_only=True,
    )
    if run_args.push_to_hub:
        model.push_to_hub(run_args.hub_model_id, private=run_args.hub_private)


def main(argv=None):
    model_args, data_args, train_args, run_args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    trackers = None if run_args.report_to == "none" else run_args.report_to
    accelerator = Accelerator(
        mixed_precision=run_args.mixed_precision,
        log_with=trackers,
        gradient_accumulation_steps=train_args.gradient_accumulation_steps,
        project_dir=train_args.output_dir,
    )
    set_seed(train_args.seed)

    # --- the corpus (main process first: it may read or download once for everyone) ----------------
    with accelerator.main_process_first():
        sentences, corpus = prepare_corpus(data_args, train_args.seed)
    batch = train_args.per_device_train_batch_size * accelerator.num_processes
    if len(sentences) < batch:  # before any encoding
        raise ValueError(
            f"the corpus has {len(sentences)} unique sentences, fewer than one batch of {batch} "
            "(per_device_train_batch_size x processes); use more sentences or a smaller batch"
        )

    # --- the model; optional stage 0; stage 1, the embedding cache -------------------------------
    model = build_model(model_args).to(accelerator.device)
    stage0 = None
    if run_args.simcse_steps > 0:
        stage0 = simcse_settings_key(
            run_args.simcse_steps,
            run_args.simcse_learning_rate,
            run_args.simcse_batch_size,
            run_args.simcse_temperature,
            train_args.seed,
            corpus["fingerprint_sha256"],
        )
        corpus["stage0_simcse"] = stage0
        simcse_finetune(
            model,
            sentences,
            run_args.simcse_steps,
            accelerator,
            run_args.simcse_learning_rate,
            run_args.simcse_batch_size,
            run_args.simcse_temperature,
            train_args.seed,
        )
    x, cache = build_embedding_cache(
        model, sentences, data_args.cache_dir, accelerator, data_args.encode_batch_size, extra_key=stage0
    )
    corpus["embedding_cache"] = cache
    partners = None
    if train_args.positives == "dropout":  # one dropout view per sentence (SimCSE's positive), cached the same way
        partners, corpus["dropout_cache"] = build_embedding_cache(
            model,
            sentences,
            data_args.cache_dir,
            accelerator,
            data_args.encode_batch_size,
            extra_key=stage0,
            name="corpus-dropout",
            dropout_seed=train_args.seed,
        )
    dev_fn = make_dev_fn(model, data_args, accelerator) if data_args.dev_signal == "stsb" else None

    # --- stage 2: the head --------------------------------------------------------------------
    if run_args.report_to != "none":
        accelerator.init_trackers(
            "simskip",
            config={
                k: v
                for k, v in to_dict(model_args, data_args, train_args, run_args).items()
                if isinstance(v, (int, float, str, bool))
            },
        )
    metrics = train_head(model.head, x, train_args, accelerator, dev_fn, partners=partners)
    metrics["corpus"] = corpus

    # --- the end: the refined model, its config, metrics and corpus record -----------------------
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_outputs(model, metrics, (model_args, data_args, train_args, run_args), Path(train_args.output_dir))
    accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
