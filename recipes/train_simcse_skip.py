"""Train a SimSkip head on top of a frozen sentence encoder, with accelerate.

    accelerate launch recipes/train_simcse_skip.py                                  # offline defaults
    accelerate launch recipes/train_simcse_skip.py --method pca                     # closed form, seconds
    accelerate launch recipes/train_simcse_skip.py --config recipes/configs/noise.yaml --learning_rate 3e-4
    accelerate launch --config_file recipes/accelerate/single_gpu_bf16.yaml recipes/train_simcse_skip.py \
        --config recipes/configs/simcse_bert_base.yaml

Stages: (0, optional) SimCSE fine-tuning of the backbone; (1) encode the corpus once with the frozen
backbone (x and the pooled hidden layers, one forward pass) into a fingerprinted Arrow cache; (2) fit the head's
statistics and the layer branch's closed form on the cache, then train it with its objective (the default
layer-aware head: relational distillation and reconstruction; the paper's head: NT-Xent between two views),
keeping the best of the identity, the closed form and the trained steps on the STS-B dev signal.
Arguments come from the dataclass defaults (SimSkipConfig, HeadTrainingArguments and Stage0Arguments own
them), the --method preset, an optional --config YAML and the command line, in that order of precedence.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.logging import get_logger
from accelerate.utils import set_seed

from hf_simskip import SimSkipModel
from hf_simskip.files import replace_dir, temp_dir_beside, write_json, write_text
from hf_simskip.sharing.model_card import write_model_card
from hf_simskip.training import (
    DevSignal,
    LabeledDev,
    build_embedding_cache,
    dev_pairs,
    load_corpus,
    read_labeled_dev,
    train_head,
)
from hf_simskip.training.checkpoint import disk_writer, earlier_run, remove_earlier_run
from hf_simskip.training.runtime import cpu_threads, hide_gpus_for_cpu_runs
from hf_simskip.training.simcse import simcse_finetune

from recipe_args import DataArguments, ModelArguments, RecipeArguments, config_kwargs, parse_args, to_dict

logger = get_logger(__name__)
RECORDS = ("corpus.json", "training_config.yaml", "metrics.json")  # beside final/, renamed into place in this order
# what the script reports in one line (exit code 1) instead of a traceback
EXPECTED_ERRORS = (ValueError, TypeError, FileNotFoundError, FloatingPointError)


def build_model(model_args: ModelArguments) -> SimSkipModel:
    model = SimSkipModel.from_encoder_pretrained(
        model_args.model_name_or_path, revision=model_args.revision, **config_kwargs(model_args)
    )
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    return model


def make_dev_fn(model, data_args: DataArguments, train_args, cache_args: dict, accelerator) -> DevSignal:
    """The dev signal (hf_simskip.training.dev): STS-B dev and SICK-R trial Spearman of the refined embeddings'
    cosine as constraints, and the weight of u a candidate can carry within them; with ``--dev_file``, the k-fold
    probe accuracy on the user's labeled sentences decides among what keeps the geometry. The raw dev embeddings are
    cached once, keyed like the corpus cache (``cache_args``: the same backbone weights and stage-0 key)."""
    pairs = dev_pairs(data_args.data_dir, data_args.max_dev_pairs) if data_args.dev_signal != "none" else {}
    if data_args.dev_signal == "stsb":
        pairs = {"stsb": pairs["stsb"]}
    cached = {}
    for name, (a, b, gold) in pairs.items():
        xa, _ = build_embedding_cache(model, a, **cache_args, name=f"{name}-dev-a")
        xb, _ = build_embedding_cache(model, b, **cache_args, name=f"{name}-dev-b")
        cached[name] = (xa, xb, gold)
    labeled = None
    if data_args.dev_file is not None:
        sentences, labels = read_labeled_dev(data_args.dev_file)
        inputs, _ = build_embedding_cache(model, sentences, **cache_args, name="labeled-dev")
        labeled = LabeledDev(inputs, labels)
    return DevSignal(cached, train_args.dev_tolerance, train_args.layer_scales, accelerator.device, labeled=labeled)


def prepare_corpus(data_args: DataArguments, seed: int) -> tuple[list[str], dict]:
    sentences, corpus = load_corpus(
        data_args.data_dir,
        data_args.train_file,
        data_args.dataset_name,
        data_args.dataset_split,
        data_args.text_column,
        data_args.transductive_kfold_tasks,
        data_args.dataset_config_name,
    )
    if data_args.max_train_samples and data_args.max_train_samples < len(sentences):
        keep = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed))
        sentences = sorted(sentences[i] for i in keep[: data_args.max_train_samples].tolist())
        corpus["max_train_samples"] = data_args.max_train_samples
    logger.info("training corpus: %s", json.dumps(corpus), main_process_only=True)
    return sentences, corpus


def save_outputs(
    model, metrics: dict, args: RecipeArguments, out: Path, earlier: dict | None = None, autocast=contextlib.nullcontext
) -> None:
    """The run's outputs, replacing an earlier run's only once they all exist. Everything is first written into a
    staging folder beside them (``.run.tmp-*``): the records (training_config.yaml, corpus.json), the model in
    final/ (evaluated there if asked), metrics.json, and final/'s card, rendered last from them. Then they are
    renamed into place: final/ (an earlier final/ is renamed aside and deleted only once the new one is there),
    corpus.json, training_config.yaml, metrics.json last. ``earlier`` (an overwrite_output_dir run: what the
    earlier run left in checkpoints/, taken before this run started): removed only then. ``autocast``: the run's
    mixed-precision context, for the encode of --eval_after_training."""
    data_args, run_args = args.data, args.run
    stage = temp_dir_beside(out / "run")
    staged = stage / "final"
    try:
        write_text(stage / "training_config.yaml", yaml.safe_dump(to_dict(*args)))
        write_json(stage / "corpus.json", metrics["corpus"])
        model.save_pretrained(staged, model_card=False)
        if run_args.eval_after_training:
            from hf_simskip.evaluation import evaluate, save_results

            with autocast():  # the backbone's forward in the run's precision (bf16/fp16 when asked)
                metrics["eval"] = evaluate(model.encode, data_dir=data_args.data_dir, mode="fast")
            save_results(metrics["eval"], staged / "eval_results.json")
        write_json(stage / "metrics.json", metrics)
        write_model_card(model, staged)  # its records: staged/ (eval results), then stage/ (this run's)
    except BaseException:  # nothing was replaced yet: leave no half-written stage behind
        shutil.rmtree(stage, ignore_errors=True)
        raise
    final = replace_dir(staged, out / "final")
    for name in RECORDS:  # metrics.json last: with final/, it marks the run finished
        os.replace(stage / name, out / name)
    stage.rmdir()
    if earlier is not None:
        # a resumed run keeps its own checkpoints (of its fingerprint); the earlier run's others go now
        keep = metrics.get("run_fingerprint") if args.train.resume_from_checkpoint else None
        removed = remove_earlier_run(out, earlier, keep_run=keep)
        if removed:
            logger.info("overwrite_output_dir: removed the earlier run's %s", removed, main_process_only=True)
    logger.info(
        "saved the refined model to %s; metrics: %s",
        final,
        {k: v for k, v in metrics.items() if k not in ("args", "corpus", "eval")},
        main_process_only=True,
    )
    if run_args.push_to_hub:
        from hf_simskip.sharing.hub import remember_source

        remember_source(model, final)  # the upload finds final/'s records and the run's
        model.push_to_hub(run_args.hub_model_id, private=run_args.hub_private)


def main(argv=None):
    hide_gpus_for_cpu_runs()  # a CPU run (ACCELERATE_USE_CPU=1) must not see GPUs: before CUDA is initialised
    args = parse_args(argv)
    model_args, data_args, train_args, stage0_args, run_args = args
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    trackers = None if run_args.report_to == "none" else run_args.report_to
    accelerator = Accelerator(
        mixed_precision=run_args.mixed_precision,  # None: the launcher's choice (--mixed_precision, its config)
        log_with=trackers,
        gradient_accumulation_steps=train_args.gradient_accumulation_steps,
        project_dir=train_args.output_dir,
        # a layer-aware head's default loss leaves parts of the head out of the graph (frozen for the run);
        # DDP then has to look for unused parameters instead of waiting for their gradients
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    threads = cpu_threads(accelerator.device.type)
    # overwrite_output_dir removes nothing now: an earlier run is replaced at the end, once this run's outputs exist
    # (a run that fails leaves it as it was); what it left in checkpoints/ is noted, to be removed then
    earlier = earlier_run(train_args.output_dir) if train_args.overwrite_output_dir else None
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
    stage0 = stage0_args.settings_key(train_args.seed, corpus["fingerprint_sha256"])
    if stage0 is not None:
        corpus["stage0_simcse"] = stage0
        simcse_finetune(model, sentences, stage0_args, accelerator, train_args.seed)
    cache_args = {
        "cache_dir": data_args.cache_dir,
        "accelerator": accelerator,
        "extra_key": stage0,
        "batch_size": data_args.encode_batch_size,
        "dtype": data_args.cache_dtype,
    }
    x, corpus["embedding_cache"] = build_embedding_cache(model, sentences, **cache_args)
    partners = None
    if train_args.positives == "dropout":  # one dropout view per sentence (SimCSE's positive), cached the same way
        partners, corpus["dropout_cache"] = build_embedding_cache(
            model, sentences, **cache_args, name="corpus-dropout", dropout_seed=train_args.seed
        )
    dev_fn = (
        make_dev_fn(model, data_args, train_args, cache_args, accelerator)
        if data_args.dev_signal != "none" or data_args.dev_file is not None
        else None
    )

    # --- stage 2: the head --------------------------------------------------------------------
    if run_args.report_to != "none":
        accelerator.init_trackers(
            "simskip", config={k: v for k, v in to_dict(*args).items() if isinstance(v, (int, float, str, bool))}
        )
    # what else decides the weights: checkpoints of another backbone, head or corpus are not resumed
    run_info = {
        "model": model.config.head_dict(),
        "backbone": model.config.encoder_name_or_path,
        "revision": model.config.encoder_revision,
        "corpus": corpus["fingerprint_sha256"],
        "stage0": stage0,
    }
    if data_args.dev_file is not None:  # another labeled dev set selects differently: not the same run
        run_info["dev_file"] = hashlib.sha256(Path(data_args.dev_file).expanduser().read_bytes()).hexdigest()
    metrics = train_head(model.head, x, train_args, accelerator, dev_fn, partners=partners, run_info=run_info)
    metrics["corpus"] = corpus
    metrics["cpu_threads"] = torch.get_num_threads() if accelerator.device.type == "cpu" else None
    metrics["cpu_threads_set_by_recipe"] = threads is not None

    # --- the end: the refined model, its config, metrics and corpus record -----------------------
    # final/ and the records are written by the global main process only, into its output_dir; on machines with
    # their own disks the other nodes' output_dir keeps only their copy of the checkpoints (to resume from)
    out = Path(train_args.output_dir)
    accelerator.wait_for_everyone()
    writes = disk_writer(accelerator, out)  # collective: this node's writer when the disk is not shared
    if accelerator.is_main_process:
        save_outputs(model, metrics, args, out, earlier, autocast=accelerator.autocast)
    accelerator.wait_for_everyone()
    if writes and not accelerator.is_main_process:  # another node's own disk
        if earlier is not None:  # overwrite_output_dir: what the earlier run left on this node goes now, too
            keep = metrics.get("run_fingerprint") if train_args.resume_from_checkpoint else None
            remove_earlier_run(out, earlier, keep_run=keep)
        logger.info(
            "final/ and the run's records are written by the main process, on its machine; %s on this machine holds "
            "this node's checkpoints only",
            out,
            main_process_only=False,
        )
    accelerator.end_training()
    return metrics


def run_script(argv) -> int:
    """``python train_simcse_skip.py`` / ``accelerate launch``: main(argv); an error of the expected kinds (bad
    arguments or input, a missing file, a diverged run) is one line on stderr and exit code 1, no traceback.
    ``main`` itself raises (tests and in-process callers)."""
    try:
        main(argv)
    except EXPECTED_ERRORS as err:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):  # a bar the error interrupted mid-line: end its line
            bar.close()
        message = " ".join(str(err).split()) or type(err).__name__
        sys.stderr.write(f"{Path(__file__).name}: error: {message}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_script(sys.argv[1:]))
