"""Stage 2: train a SimSkipHead on cached embeddings with accelerate (the recipe's training loop).

    from accelerate import Accelerator
    metrics = train_head(model.head, x, HeadTrainingArguments(output_dir="out"), Accelerator(cpu=True))

Works under ``accelerate launch``/``torchrun`` (negatives gathered across processes with gradients,
DDP averages the gradients) and in-process with a plain ``Accelerator()``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..files import atomic_path
from ..models.simskip.head import contrastive_loss
from .arguments import HeadTrainingArguments
from .checkpoint import fingerprint, resume_state, run_config, save_checkpoint

logger = get_logger(__name__)


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


class Rows(Dataset):
    """Batches of rows of a tensor or a memory-mapped FeatureTable: ``(rows,)``, or ``(rows, partner rows)``
    where ``partners`` is a second table of the same shape or an (n,) index of partner rows in the first.
    Fetched a whole batch at a time (``__getitems__``), so a memory-mapped table is read once per batch."""

    def __init__(self, table, partners=None):
        self.table, self.partners = table, partners

    def __len__(self) -> int:
        return len(self.table)

    def __getitems__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        rows = torch.as_tensor(self.table[index]).float()
        if self.partners is None:
            return (rows,)
        if isinstance(self.partners, torch.Tensor) and self.partners.dim() == 1:  # an index into the table
            return rows, torch.as_tensor(self.table[self.partners[index]]).float()
        return rows, torch.as_tensor(self.partners[index]).float()

    def __getitem__(self, i):
        return tuple(t[0] for t in self.__getitems__([i]))


def _whole_batch(batch):
    return batch  # Rows.__getitems__ already built it


def _prepare(head, x, args, accelerator, partners=None):
    if accelerator.device.type == "cuda" and accelerator.num_processes > 1:
        head = torch.nn.SyncBatchNorm.convert_sync_batchnorm(head)  # CUDA only (gloo has no SyncBatchNorm)
    sampler = EpochPermutation(len(x), args.seed)
    loader = DataLoader(
        Rows(x, partners),
        batch_size=args.per_device_train_batch_size,
        sampler=sampler,
        drop_last=True,  # BatchNorm fails on a batch of one
        collate_fn=_whole_batch,
    )
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    head, optimizer, loader = accelerator.prepare(head, optimizer, loader)
    updates_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    total = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * updates_per_epoch)
    # a prepared scheduler steps once per process per update (accelerate's convention): scale the counts
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=math.ceil(args.warmup_ratio * total) * accelerator.num_processes,
        num_training_steps=total * accelerator.num_processes,
    )
    scheduler = accelerator.prepare(scheduler)
    return head, optimizer, loader, sampler, scheduler, total


def _check_data(x, args, accelerator):
    if not hasattr(x, "shape") or not hasattr(x, "__getitem__") or len(x.shape) not in (2, 3):
        got = getattr(x, "shape", type(x).__name__)
        raise ValueError(f"embeddings must be an (n, d) or (n, 1 + L, d) tensor or FeatureTable, got {got}")
    need = args.per_device_train_batch_size * accelerator.num_processes
    if x.shape[0] < need:
        raise ValueError(
            f"the corpus has {x.shape[0]} embeddings, fewer than one batch of {need} "
            f"(per_device_train_batch_size x processes); use more sentences or a smaller batch"
        )


def _log_header(accelerator, n, args, total):
    effective = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running training *****", main_process_only=True)
    for key, value in [
        ("Num examples", n),
        ("Num epochs", args.num_train_epochs if args.max_steps <= 0 else "max_steps"),
        ("Instantaneous batch size per device", args.per_device_train_batch_size),
        ("Total train batch size (w. parallel & accumulation)", effective),
        ("Gradient accumulation steps", args.gradient_accumulation_steps),
        ("Total optimization steps", total),
    ]:
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
            with atomic_path(best) as tmp:
                torch.save(module.state_dict(), tmp)
    return score


def train_head(
    head,
    embeddings,
    args: HeadTrainingArguments,
    accelerator: Accelerator | None = None,
    dev_fn=None,
    fit_statistics: bool = True,
    partners: torch.Tensor | None = None,
    step_callback=None,
    run_info: dict | None = None,
) -> dict:
    """Train ``head`` (SimSkipHead) in place on ``embeddings``: its raw inputs, (n, d) or (n, 1 + L, d), a
    tensor or a memory-mapped FeatureTable (the recipe's cache); returns metrics.

    ``dev_fn(head) -> float`` (higher is better) is called before training (step 0: with zero_init the
    identity, i.e. the raw embeddings), every ``eval_steps`` and at the end; the best head is kept
    (``best_head.pt``) and restored at the end when ``load_best_at_end`` (so a run that never beats the
    raw embeddings on the dev signal ends as the identity).
    ``partners`` (same shape): with positives="dropout", row i's positive (a dropout embedding of sentence i).
    ``step_callback(step, state)``: called after every optimisation step (and its checkpoint), on every process.
    ``run_info``: what else decides this run (the recipe passes the architecture and the corpus
    fingerprint); it enters the run fingerprint that ties checkpoints to their run.
    A non-finite loss or weight stops the run with FloatingPointError before anything is saved.
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
    weights = args.loss_weights(bool(head.n_layers))
    frozen = _freeze_untrained(head, weights)  # DDP needs every trainable parameter to get a gradient
    partners = _partners(embeddings, args, partners)
    head, optimizer, loader, sampler, scheduler, total = _prepare(head, embeddings, args, accelerator, partners)
    config = run_config(args, head, embeddings, run_info)
    state, resume_rng = resume_state(
        args.resume_from_checkpoint, args.output_dir, accelerator, generator, fingerprint(config), config
    )
    _log_header(accelerator, len(embeddings), args, total)
    if dev_fn is not None and state["global_step"] == 0:
        _evaluate(head, dev_fn, state, args, accelerator, 0)  # the untrained head (identity with zero_init): baseline
    branch = accelerator.unwrap_model(head).layer_branch
    if branch is not None and state["global_step"] == 0:
        branch.open()  # after the identity was scored: from here on u is trained and part of the output
    losses, start, samples = [], time.perf_counter(), 0
    bar = tqdm(total=total, initial=state["global_step"], disable=not accelerator.is_local_main_process)
    while state["global_step"] < total:
        epoch, skip = divmod(state["batches_seen"], len(loader))
        loader.set_epoch(epoch)  # sets the sampler's epoch; a skipping loader copies it
        epoch_loader = accelerator.skip_first_batches(loader, skip) if skip else loader
        # a skipping loader restarts accelerate's epoch counter (before accelerate 1.11), which it then hands to
        # the sampler when iterated: give it this epoch, or the resumed run would replay epoch 0's order
        epoch_loader.set_epoch(epoch)
        # mid-epoch, the uninterrupted run drew this loader's seed before the checkpoint; at an epoch
        # boundary it draws it after, from the restored RNG: reset the RNG only in the first case
        for batch, *partner in batches_after_resume(epoch_loader, resume_rng if skip else None):
            resume_rng = None
            with accelerator.accumulate(head):
                loss = contrastive_loss(head, batch, args, generator, partner[0] if partner else None, **weights)
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
            if step_callback is not None:
                step_callback(step, state)
            if step >= total:
                break
    bar.close()
    for param in frozen:
        param.requires_grad_(True)
    return _finish(head, dev_fn, state, args, accelerator, losses, samples, time.perf_counter() - start, total)


def _freeze_untrained(head, weights: dict) -> list:
    """Freeze the parts no loss term reaches (the projector without NT-Xent, the refiner of x without
    NT-Xent or the geometry term, the decoder without reconstruction); returns the parameters frozen."""
    parts = []
    if not weights["contrastive_weight"]:
        parts.append(head.projector)
        if not weights["geometry_weight"]:
            parts.append(head.refiner)
    if not weights["reconstruction_weight"]:
        parts.append(getattr(head, "layer_decoder", None))
    frozen = [p for part in parts if part is not None for p in part.parameters() if p.requires_grad]
    for param in frozen:
        param.requires_grad_(False)
    return frozen


def _partners(embeddings, args, partners):
    if args.positives == "neighbor":  # the index of every row's nearest other row, by the embedding x
        x = torch.as_tensor(embeddings[:])
        return nearest_other_index(x[:, 0] if x.dim() == 3 else x)
    if args.positives != "dropout":
        if partners is not None:
            raise ValueError(f"partners were given but positives={args.positives!r}; use positives='dropout'")
        return None
    if not hasattr(partners, "shape") or tuple(partners.shape) != tuple(embeddings.shape):
        got = getattr(partners, "shape", type(partners).__name__)
        raise ValueError(
            f"positives='dropout' needs partners of shape {tuple(embeddings.shape)} (one dropout "
            f"embedding per row), got {got}"
        )
    return partners


def _after_step(head, dev_fn, state, args, accelerator, step, losses, scheduler, generator, total):
    logs = bool(args.logging_steps) and step % args.logging_steps == 0
    saves = bool(args.checkpointing_steps) and step % args.checkpointing_steps == 0
    if logs or saves or step >= total:
        check_finite(head, losses[-max(args.logging_steps, args.checkpointing_steps, 1) :], step, args)
    if logs:
        recent = accelerator.reduce(torch.stack(losses[-args.logging_steps :]).mean(), reduction="mean").item()
        accelerator.log({"train/loss": recent, "train/lr": scheduler.get_last_lr()[0]}, step=step)
        logger.info("step %d: loss %.4f", step, recent, main_process_only=True)
    if dev_fn is not None and args.eval_steps and step % args.eval_steps == 0 and step < total:
        _evaluate(head, dev_fn, state, args, accelerator, step)
    if saves:
        save_checkpoint(accelerator, args.output_dir, dict(state), generator, args.save_total_limit)


def _finish(head, dev_fn, state, args, accelerator, losses, samples, seconds, total):
    final_score = _evaluate(head, dev_fn, state, args, accelerator, state["global_step"]) if dev_fn else None
    module = accelerator.unwrap_model(head)
    best = Path(args.output_dir) / "best_head.pt"
    accelerator.wait_for_everyone()
    if dev_fn is not None and args.load_best_at_end and best.is_file() and state["best_step"] != state["global_step"]:
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True))
        logger.info(
            "loaded the best head (step %s, dev %.4f)", state["best_step"], state["best_metric"], main_process_only=True
        )
    tail = losses[-max(args.logging_steps, 1) :]
    last = accelerator.reduce(torch.stack(tail).float().mean(), reduction="mean").item() if tail else None
    module.eval()
    return {
        "global_step": state["global_step"],
        "total_steps": total,
        "train_loss": last,
        "initial_dev_score": state.get("initial_dev_score"),
        "final_dev_score": final_score,
        "best_dev_score": state["best_metric"],
        "best_step": state["best_step"],
        "train_seconds": round(seconds, 3),
        "train_samples_per_second": round(samples / max(seconds, 1e-9), 1),
        "num_processes": accelerator.num_processes,
        "mixed_precision": str(accelerator.mixed_precision),
        "args": asdict(args),
    }


def check_finite(head, losses, step: int, args) -> None:
    """Stop a diverged run before it saves anything: every recent loss and every weight must be finite
    (checked at logging and checkpoint steps and at the end, so the GPU is not synchronised each step)."""
    module = getattr(head, "module", head)
    bad_loss = bool(losses) and not bool(torch.isfinite(torch.stack([loss.float() for loss in losses])).all())
    bad = [name for name, p in module.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad_loss or bad:
        what = "the loss" if bad_loss else f"the weights ({', '.join(bad[:3])})"
        raise FloatingPointError(
            f"training diverged by step {step}: {what} became NaN or Inf (learning_rate {args.learning_rate}, "
            f"temperature {args.temperature}); nothing from this run was saved after it. Lower the learning rate"
        )


def batches_after_resume(loader, rng_state):
    """The loader's batches; after a resume the global torch RNG is reset once the loader has started."""
    it = iter(loader)
    first = next(it, None)  # torch's DataLoader draws a base seed from the global RNG when it starts...
    if rng_state is not None:
        torch.set_rng_state(rng_state)  # ...so a resumed run resets it to what the uninterrupted run had
    if first is not None:
        yield first
    yield from it


@torch.no_grad()
def nearest_other_index(x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """For each row of ``x`` (n, d), the index of its nearest other row by cosine similarity (n,)."""
    unit = torch.nn.functional.normalize(x.float(), dim=-1)
    best = torch.empty(len(x), dtype=torch.long)
    for start in range(0, len(x), chunk):
        sims = unit[start : start + chunk] @ unit.T  # (chunk, n)
        sims[torch.arange(sims.shape[0]), torch.arange(start, start + sims.shape[0])] = -2.0  # not itself
        best[start : start + chunk] = sims.argmax(1)
    return best


def nearest_other_rows(x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """For each row of ``x`` (n, d), its nearest other row by cosine similarity (n, d)."""
    return x[nearest_other_index(x, chunk)]


__all__ = ["train_head", "EpochPermutation", "batches_after_resume", "nearest_other_rows", "check_finite"]
