"""Stage 2: train a SimSkipHead on cached embeddings with accelerate (the recipe's training loop).

    from accelerate import Accelerator
    metrics = train_head(model.head, x, HeadTrainingArguments(output_dir="out"), Accelerator(cpu=True))

Works under ``accelerate launch``/``torchrun`` (negatives gathered across processes with gradients,
DDP averages the gradients) and in-process with a plain ``Accelerator()``.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Sampler, TensorDataset
from tqdm.auto import tqdm
from transformers import get_scheduler

from .data import nearest_other_rows
from .training_checkpoint import batches_after_resume, resume_state, save_checkpoint

logger = get_logger(__name__)
POSITIVES = ("views", "neighbor", "dropout")


@dataclass
class HeadTrainingArguments:
    """Hyper-parameters of the head's contrastive training. These defaults are THE defaults of the
    recipe (recipes/configs/default.yaml mirrors them; a test checks it)."""

    output_dir: str = field(default="outputs/simskip", metadata={"help": "where checkpoints, final/ and metrics go"})
    augmentation: str = field(default="mask+noise", metadata={"help": "mask | noise | mask+noise | none"})
    mask_ratio: float = field(default=0.2, metadata={"help": "probability of masking a coordinate"})
    mask_fill: str = field(default="mean", metadata={"help": "masked coordinates become the per-dim mean or zero"})
    noise_variance: float = field(default=0.13, metadata={"help": "noise variance relative to the per-dim std"})
    temperature: float = field(default=0.1, metadata={"help": "NT-Xent temperature"})
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    num_train_epochs: float = 3.0
    max_steps: int = field(default=-1, metadata={"help": "> 0 overrides num_train_epochs (optimisation steps)"})
    per_device_train_batch_size: int = 256
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
    positives: str = field(default="views", metadata={"help": "views: two views of the same row (the paper); "
                                                         "neighbor: a view of the row and a view of its nearest "
                                                         "other row in the corpus (cosine); dropout: a view of the "
                                                         "row and a view of its dropout embedding (SimCSE's "
                                                         "positive; train_head's `partners`)"})
    kill_after_step: int = field(default=0, metadata={"help": "test hook: SIGKILL this process after step k"})

    def validate(self) -> None:
        positive = {"learning_rate": self.learning_rate, "per_device_train_batch_size": self.per_device_train_batch_size,
                    "gradient_accumulation_steps": self.gradient_accumulation_steps, "temperature": self.temperature}
        for name, value in positive.items():
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            raise ValueError(f"num_train_epochs must be > 0 when max_steps <= 0, got {self.num_train_epochs!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        for name in ("logging_steps", "eval_steps", "checkpointing_steps", "save_total_limit", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        from .configuration_simskip import AUGMENTATIONS, MASK_FILLS

        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {list(AUGMENTATIONS)}, got {self.augmentation!r}")
        if self.positives not in POSITIVES:
            raise ValueError(f"positives must be one of {list(POSITIVES)}, got {self.positives!r}")
        if self.mask_fill not in MASK_FILLS:
            raise ValueError(f"mask_fill must be one of {list(MASK_FILLS)}, got {self.mask_fill!r}")


class EpochPermutation(Sampler):
    """A shuffle that depends only on (seed, epoch): the same order on every process and after a resume."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def training_step(head, batch: torch.Tensor, args: HeadTrainingArguments, generator: torch.Generator,
                  partner: torch.Tensor | None = None) -> torch.Tensor:
    """NT-Xent of two augmented views of ``batch`` (N, d) (or of ``batch`` and its ``partner`` rows, the
    neighbour positives); negatives come from every process (gathered with gradients). The forward goes through ``head`` itself, so DDP's hooks and accelerate's autocast
    apply (``SimSkipHead.contrastive_loss`` does the same math on an unwrapped head)."""
    from .augmentations import augment
    from .losses import nt_xent_loss

    module = head.module if hasattr(head, "module") else head  # DDP-wrapped or not
    module.check_input(batch)
    fill = module.feature_mean if args.mask_fill == "mean" else None
    views = (args.augmentation, args.mask_ratio, args.noise_variance, generator, fill, module.feature_std)
    v1 = augment(batch, *views)
    v2 = augment(batch if partner is None else partner, *views)
    n = batch.shape[0]
    _, proj = head(torch.cat([v1, v2], dim=0))  # (2N, d): one pass, BatchNorm sees all 2N views
    return nt_xent_loss(proj[:n], proj[n:], args.temperature)


def _prepare(head, x, args, accelerator, partners=None):
    if accelerator.device.type == "cuda" and accelerator.num_processes > 1:
        head = torch.nn.SyncBatchNorm.convert_sync_batchnorm(head)  # CUDA only (gloo has no SyncBatchNorm)
    sampler = EpochPermutation(len(x), args.seed)
    tensors = (x,) if partners is None else (x, partners)
    loader = DataLoader(TensorDataset(*tensors), batch_size=args.per_device_train_batch_size, sampler=sampler,
                        drop_last=True)  # BatchNorm fails on a batch of one
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    head, optimizer, loader = accelerator.prepare(head, optimizer, loader)
    updates_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    total = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * updates_per_epoch)
    # a prepared scheduler steps once per process per update (accelerate's convention): scale the counts
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer,
                              num_warmup_steps=math.ceil(args.warmup_ratio * total) * accelerator.num_processes,
                              num_training_steps=total * accelerator.num_processes)
    scheduler = accelerator.prepare(scheduler)
    return head, optimizer, loader, sampler, scheduler, total


def _check_data(x, args, accelerator):
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"embeddings must be a (n, d) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    need = args.per_device_train_batch_size * accelerator.num_processes
    if x.shape[0] < need:
        raise ValueError(f"the corpus has {x.shape[0]} embeddings, fewer than one batch of {need} "
                         f"(per_device_train_batch_size x processes); use more sentences or a smaller batch")


def _log_header(accelerator, n, args, total):
    effective = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running training *****", main_process_only=True)
    for key, value in [("Num examples", n), ("Num epochs", args.num_train_epochs if args.max_steps <= 0 else "max_steps"),
                       ("Instantaneous batch size per device", args.per_device_train_batch_size),
                       ("Total train batch size (w. parallel & accumulation)", effective),
                       ("Gradient accumulation steps", args.gradient_accumulation_steps),
                       ("Total optimization steps", total)]:
        logger.info("  %s = %s", key, value, main_process_only=True)


def _evaluate(head, dev_fn, state, args, accelerator, step):
    module = accelerator.unwrap_model(head)
    module.eval()
    with torch.no_grad():
        score = float(dev_fn(module))
    module.train()
    accelerator.log({"dev/score": score}, step=step)
    logger.info("step %d: dev score %.4f", step, score, main_process_only=True)
    if step == 0:
        state["initial_dev_score"] = score
    if state["best_metric"] is None or score > state["best_metric"]:
        state.update(best_metric=score, best_step=step)
        if accelerator.is_main_process:
            best = Path(args.output_dir) / "best_head.pt"
            best.parent.mkdir(parents=True, exist_ok=True)
            torch.save(module.state_dict(), best.with_suffix(".tmp"))
            os.replace(best.with_suffix(".tmp"), best)
    return score


def train_head(head, embeddings: torch.Tensor, args: HeadTrainingArguments, accelerator: Accelerator | None = None,
               dev_fn=None, fit_statistics: bool = True, partners: torch.Tensor | None = None) -> dict:
    """Train ``head`` (SimSkipHead) in place on ``embeddings`` (n, d); returns metrics.

    ``dev_fn(head) -> float`` (higher is better) is called before training (step 0: with zero_init the
    identity, i.e. the raw embeddings), every ``eval_steps`` and at the end; the best head is kept
    (``best_head.pt``) and restored at the end when ``load_best_at_end`` (so a run that never beats the
    raw embeddings on the dev signal ends as the identity).
    ``partners`` (n, d): with positives="dropout", row i's positive (e.g. a dropout embedding of sentence i).
    """
    args.validate()
    accelerator = accelerator or Accelerator(gradient_accumulation_steps=args.gradient_accumulation_steps)
    accelerator.gradient_accumulation_steps = args.gradient_accumulation_steps
    _check_data(embeddings, args, accelerator)
    head.check_input(embeddings)
    set_seed(args.seed)
    if fit_statistics:
        head.fit_statistics(embeddings)  # the augmentations are scale-aware through these buffers
    generator = torch.Generator(device=accelerator.device).manual_seed(args.seed + accelerator.process_index)
    head.train()
    partners = _partners(embeddings, args, partners)
    head, optimizer, loader, sampler, scheduler, total = _prepare(head, embeddings.float(), args, accelerator, partners)
    state, resume_rng = resume_state(args.resume_from_checkpoint, args.output_dir, accelerator, generator)
    _log_header(accelerator, len(embeddings), args, total)
    if dev_fn is not None and state["global_step"] == 0:
        _evaluate(head, dev_fn, state, args, accelerator, 0)  # the untrained head (identity with zero_init): baseline
    losses, start, samples = [], time.perf_counter(), 0
    bar = tqdm(total=total, initial=state["global_step"], disable=not accelerator.is_local_main_process)
    while state["global_step"] < total:
        epoch, skip = divmod(state["batches_seen"], len(loader))
        loader.set_epoch(epoch)  # sets the sampler's epoch; a skipping loader copies it
        epoch_loader = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch, *partner in batches_after_resume(epoch_loader, resume_rng):
            resume_rng = None
            with accelerator.accumulate(head):
                loss = training_step(head, batch, args, generator, partner[0] if partner else None)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state["batches_seen"] += 1
            samples += batch.shape[0] * accelerator.num_processes
            losses.append(loss.detach())
            if not accelerator.sync_gradients:
                continue
            state["global_step"] += 1
            step = state["global_step"]
            bar.update(1)
            _after_step(head, dev_fn, state, args, accelerator, step, losses, scheduler, generator, total)
            if step >= total:
                break
    bar.close()
    return _finish(head, dev_fn, state, args, accelerator, losses, samples, time.perf_counter() - start, total)


def _partners(embeddings, args, partners):
    if args.positives == "neighbor":
        return nearest_other_rows(embeddings.float())
    if args.positives != "dropout":
        if partners is not None:
            raise ValueError(f"partners were given but positives={args.positives!r}; use positives='dropout'")
        return None
    if not isinstance(partners, torch.Tensor) or partners.shape != embeddings.shape:
        got = getattr(partners, "shape", type(partners).__name__)
        raise ValueError(f"positives='dropout' needs partners of shape {tuple(embeddings.shape)} (one dropout "
                         f"embedding per row), got {got}")
    return partners.float()


def _after_step(head, dev_fn, state, args, accelerator, step, losses, scheduler, generator, total):
    if args.logging_steps and step % args.logging_steps == 0:
        recent = accelerator.reduce(torch.stack(losses[-args.logging_steps:]).mean(), reduction="mean").item()
        accelerator.log({"train/loss": recent, "train/lr": scheduler.get_last_lr()[0]}, step=step)
        logger.info("step %d: loss %.4f", step, recent, main_process_only=True)
    if dev_fn is not None and args.eval_steps and step % args.eval_steps == 0 and step < total:
        _evaluate(head, dev_fn, state, args, accelerator, step)
    if args.checkpointing_steps and step % args.checkpointing_steps == 0:
        save_checkpoint(accelerator, args.output_dir, dict(state), generator, args.save_total_limit)
    if args.kill_after_step and step == args.kill_after_step:
        os.kill(os.getpid(), signal.SIGKILL)  # test hook: a crash right after step k


def _finish(head, dev_fn, state, args, accelerator, losses, samples, seconds, total):
    final_score = _evaluate(head, dev_fn, state, args, accelerator, state["global_step"]) if dev_fn else None
    module = accelerator.unwrap_model(head)
    best = Path(args.output_dir) / "best_head.pt"
    accelerator.wait_for_everyone()
    if dev_fn is not None and args.load_best_at_end and best.is_file() and state["best_step"] != state["global_step"]:
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True))
        logger.info("loaded the best head (step %s, dev %.4f)", state["best_step"], state["best_metric"],
                    main_process_only=True)
    tail = losses[-max(args.logging_steps, 1):]
    last = accelerator.reduce(torch.stack(tail).float().mean(), reduction="mean").item() if tail else None
    module.eval()
    return {"global_step": state["global_step"], "total_steps": total, "train_loss": last,
            "initial_dev_score": state.get("initial_dev_score"),
            "final_dev_score": final_score, "best_dev_score": state["best_metric"], "best_step": state["best_step"],
            "train_seconds": round(seconds, 3), "train_samples_per_second": round(samples / max(seconds, 1e-9), 1),
            "num_processes": accelerator.num_processes, "mixed_precision": str(accelerator.mixed_precision),
            "args": asdict(args)}


def write_json(path, obj) -> None:
    """JSON written atomically (tmp + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


__all__ = ["HeadTrainingArguments", "train_head", "training_step", "EpochPermutation", "write_json"]
