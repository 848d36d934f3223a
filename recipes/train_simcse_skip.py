"""Train a SimSkip head on top of a frozen sentence encoder, with accelerate.

    accelerate launch recipes/train_simcse_skip.py                                  # offline defaults
    accelerate launch recipes/train_simcse_skip.py --config recipes/configs/noise.yaml --learning_rate 3e-4
    accelerate launch --config_file recipes/accelerate/single_gpu_bf16.yaml recipes/train_simcse_skip.py \
        --config recipes/configs/simcse_bert_base.yaml

Stages: (0, optional) SimCSE fine-tuning of the backbone; (1) encode the corpus once with the frozen
backbone into a fingerprinted Arrow cache; (2) train the head on the cached embeddings (two augmented
views, NT-Xent with negatives from every process), with STS-B dev Spearman as the dev signal.
Arguments come from recipes/configs/default.yaml (when no --config is given), a --config YAML and the
command line, in that order of precedence (CLI wins).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from recipe_args import DataArguments, ModelArguments, RunArguments, parse_args, to_dict
from scipy.stats import spearmanr

from hf_simskip import SimSkipModel
from hf_simskip.data import build_embedding_cache, load_corpus, load_stsb_dev
from hf_simskip.training import HeadTrainingArguments, train_head, write_json
from hf_simskip.training_simcse import simcse_finetune, simcse_settings_key

logger = get_logger(__name__)


def build_model(margs: ModelArguments, targs: HeadTrainingArguments) -> SimSkipModel:
    head_kwargs = {k: v for k, v in dataclasses.asdict(margs).items()
                   if k not in ("model_name_or_path", "revision", "pooling", "max_length") and v is not None}
    # the views the head is trained with go into its config.json too (the model card reads them)
    head_kwargs.update({k: getattr(targs, k) for k in ("augmentation", "mask_ratio", "mask_fill", "noise_variance",
                                                       "temperature")})
    model = SimSkipModel.from_encoder_pretrained(margs.model_name_or_path, revision=margs.revision,
                                                 pooling=margs.pooling, max_length=margs.max_length, **head_kwargs)
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    return model


def make_dev_fn(model, dargs, accelerator):
    """STS-B dev Spearman (x100) of the cosine of refined embeddings; raw dev embeddings cached once."""
    a, b, gold = (col[: dargs.max_dev_pairs] for col in load_stsb_dev(dargs.data_dir))
    xa, _ = build_embedding_cache(model, a, dargs.cache_dir, accelerator, dargs.encode_batch_size, name="stsb-dev-a")
    xb, _ = build_embedding_cache(model, b, dargs.cache_dir, accelerator, dargs.encode_batch_size, name="stsb-dev-b")

    def refined(head, x):
        z, fz = head.refine(x.to(accelerator.device))  # z: the encoder's input, fz: its output
        return model.postprocess(fz, z)

    def dev_fn(head) -> float:
        ea, eb = refined(head, xa), refined(head, xb)
        cos = torch.nn.functional.cosine_similarity(ea.float(), eb.float()).cpu().numpy()
        return 100.0 * float(spearmanr(cos, gold).statistic)

    return dev_fn


def prepare_corpus(dargs: DataArguments, seed: int) -> tuple[list[str], dict]:
    sentences, corpus = load_corpus(dargs.data_dir, dargs.train_file, dargs.dataset_name, dargs.dataset_split,
                                    dargs.text_column, dargs.transductive_kfold_tasks)
    if dargs.max_train_samples and dargs.max_train_samples < len(sentences):
        keep = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed))
        sentences = sorted(sentences[i] for i in keep[: dargs.max_train_samples].tolist())
        corpus["max_train_samples"] = dargs.max_train_samples
    logger.info("training corpus: %s", json.dumps(corpus), main_process_only=True)
    return sentences, corpus


def save_outputs(model, metrics: dict, groups, out: Path) -> None:
    """final/ (save_pretrained), training_config.yaml, corpus.json, metrics.json; eval and push if asked."""
    margs, dargs, targs, rargs = groups
    final = out / "final"
    model.save_pretrained(final)
    (out / "training_config.yaml").write_text(yaml.safe_dump(to_dict(*groups)), encoding="utf-8")
    write_json(out / "corpus.json", metrics["corpus"])
    if rargs.eval_after_training:
        from hf_simskip.evaluation import evaluate, save_results

        metrics["eval"] = evaluate(model.encode, data_dir=dargs.data_dir, mode="fast")
        save_results(metrics["eval"], final / "eval_results.json")
    write_json(out / "metrics.json", metrics)
    logger.info("saved the refined model to %s; metrics: %s", final,
                {k: v for k, v in metrics.items() if k not in ("args", "corpus", "eval")}, main_process_only=True)
    if rargs.push_to_hub:
        model.push_to_hub(rargs.hub_model_id, private=rargs.hub_private)


def main(argv=None):
    margs, dargs, targs, rargs = parse_args(argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    trackers = None if rargs.report_to == "none" else rargs.report_to
    accelerator = Accelerator(mixed_precision=rargs.mixed_precision, log_with=trackers,
                              gradient_accumulation_steps=targs.gradient_accumulation_steps,
                              project_dir=targs.output_dir)
    set_seed(targs.seed)

    # --- the corpus (main process first: it may read or download once for everyone) ----------------
    with accelerator.main_process_first():
        sentences, corpus = prepare_corpus(dargs, targs.seed)
    batch = targs.per_device_train_batch_size * accelerator.num_processes
    if len(sentences) < batch:  # before any encoding
        raise ValueError(f"the corpus has {len(sentences)} unique sentences, fewer than one batch of {batch} "
                         "(per_device_train_batch_size x processes); use more sentences or a smaller batch")

    # --- the model; optional stage 0; stage 1, the embedding cache -------------------------------
    model = build_model(margs, targs).to(accelerator.device)
    stage0 = None
    if rargs.simcse_steps > 0:
        stage0 = simcse_settings_key(rargs.simcse_steps, rargs.simcse_learning_rate, rargs.simcse_batch_size,
                                     rargs.simcse_temperature, targs.seed, corpus["fingerprint_sha256"])
        corpus["stage0_simcse"] = stage0
        simcse_finetune(model, sentences, rargs.simcse_steps, accelerator, rargs.simcse_learning_rate,
                        rargs.simcse_batch_size, rargs.simcse_temperature, targs.seed)
    x, cache = build_embedding_cache(model, sentences, dargs.cache_dir, accelerator, dargs.encode_batch_size,
                                     extra_key=stage0)
    corpus["embedding_cache"] = cache
    partners = None
    if targs.positives == "dropout":  # one dropout view per sentence (SimCSE's positive), cached the same way
        partners, corpus["dropout_cache"] = build_embedding_cache(
            model, sentences, dargs.cache_dir, accelerator, dargs.encode_batch_size, extra_key=stage0,
            name="corpus-dropout", dropout_seed=targs.seed)
    dev_fn = make_dev_fn(model, dargs, accelerator) if dargs.dev_signal == "stsb" else None

    # --- stage 2: the head --------------------------------------------------------------------
    if rargs.report_to != "none":
        accelerator.init_trackers("simskip", config={k: v for k, v in to_dict(margs, dargs, targs, rargs).items()
                                                     if isinstance(v, (int, float, str, bool))})
    metrics = train_head(model.head, x, targs, accelerator, dev_fn, partners=partners)
    metrics["corpus"] = corpus

    # --- the end: the refined model, its config, metrics and corpus record -----------------------
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_outputs(model, metrics, (margs, dargs, targs, rargs), Path(targs.output_dir))
    accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
