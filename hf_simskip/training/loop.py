"""Stage 2: train a SimSkipHead on cached embeddings with accelerate (the recipe's training loop).

    from accelerate import Accelerator
    metrics = train_head(model.head, x, HeadTrainingArguments(output_dir="out"), Accelerator(cpu=True))

Works under ``accelerate launch``/``torchrun`` (every in-batch loss term sees the rows of all processes, gathered
with gradients; DDP averages the gradients) and in-process with a plain ``Accelerator()``. The run is one
function read top to bottom (`train_head`); what a checkpoint keeps is one :class:`TrainState`, and the objects
of a run travel together in one :class:`_Run`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import broadcast_object_list, set_seed
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..models.simskip.head import split_inputs
from ..models.simskip.losses import SimSkipObjective
from .arguments import HeadTrainingArguments
from .checkpoint import TrainState, fingerprint, resume_state, run_config, save_checkpoint

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
    Fetched a whole batch at a time (``__getitems__``), so a memory-mapped table is read once per batch and
    only at the rows of this process's batches."""

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


@dataclass
class _Run:
    """The objects of one training run, prepared by accelerate."""

    args: HeadTrainingArguments
    accelerator: Accelerator
    head: torch.nn.Module  # the prepared (possibly DDP-wrapped) head
    objective: SimSkipObjective
    optimizer: torch.optim.Optimizer
    scheduler: object
    loader: DataLoader
    total: int
    generator: torch.Generator
    dev_fn: object
    state: TrainState
    best_weights: dict | None = None  # the best candidate's state_dict (CPU), written into every checkpoint
    losses: list = field(default_factory=list)
    samples: int = 0

    @property
    def module(self):
        return self.accelerator.unwrap_model(self.head)


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

    First the statistics and, for a layer-aware head with ``layer_closed_form``, the closed form are fitted
    (``fit_statistics``). ``dev_fn(head) -> float`` (higher is better) then scores the candidates: the
    identity (the gate closed), the initial head (the closed form), every ``eval_steps`` and the end; the best
    is kept in memory and in every checkpoint, and restored at the end when ``load_best_at_end`` (a run that
    never beats the raw embeddings ends as the identity). ``max_steps=0``: no gradient step.
    ``partners`` (same shape): with positives="dropout", row i's positive (a dropout embedding of sentence i).
    ``step_callback(step, state)``: called after every optimisation step (and its checkpoint), on every process.
    ``run_info``: what else decides this run (the recipe passes the architecture and the corpus fingerprint);
    it enters the run fingerprint that ties checkpoints to their run.
    A non-finite loss, weight, dev score or output stops the run with FloatingPointError before anything is saved.
    """
    args.validate()
    accelerator = accelerator or Accelerator(gradient_accumulation_steps=args.gradient_accumulation_steps)
    accelerator.gradient_accumulation_steps = args.gradient_accumulation_steps
    _check_data(embeddings, args, accelerator)
    head.check_input(embeddings)
    objective = SimSkipObjective(args, head.config)
    set_seed(args.seed)
    if fit_statistics:
        head.fit_statistics(embeddings)  # the views' scale, the branch's standardisation and closed form
    head.train()
    with _frozen(objective.untrained_parts(head)):  # DDP needs every trainable parameter to get a gradient
        run = _prepare(head, embeddings, args, accelerator, objective, _partners(embeddings, args, partners), dev_fn)
        config = run_config(args, head, embeddings, run_info)
        run.state, resume_rng, run.best_weights = resume_state(
            args.resume_from_checkpoint, args.output_dir, accelerator, run.generator, fingerprint(config), config
        )
        _log_header(run, len(embeddings))
        if run.state.global_step == 0:
            _score_untrained(run)
        elif hasattr(dev_fn, "restore") and "identity" in run.state.dev_details:
            dev_fn.restore(run.state.dev_details["identity"])  # the reference a resumed dev signal compares with
        bar = tqdm(total=run.total, initial=run.state.global_step, disable=not accelerator.is_local_main_process)
        start = time.perf_counter()
        while run.state.global_step < run.total:
            epoch, skip = divmod(run.state.batches_seen, len(run.loader))
            run.loader.set_epoch(epoch)  # sets the sampler's epoch; a skipping loader copies it
            epoch_loader = accelerator.skip_first_batches(run.loader, skip) if skip else run.loader
            # a skipping loader restarts accelerate's epoch counter (before accelerate 1.11), which it then hands
            # to the sampler when iterated: give it this epoch, or the resumed run would replay epoch 0's order
            epoch_loader.set_epoch(epoch)
            # mid-epoch, the uninterrupted run drew this loader's seed before the checkpoint; at an epoch
            # boundary it draws it after, from the restored RNG: reset the RNG only in the first case
            for batch, *partner in batches_after_resume(epoch_loader, resume_rng if skip else None):
                resume_rng = None
                with accelerator.accumulate(run.head):
                    loss = objective(run.head, batch, run.generator, partner[0] if partner else None)
                    accelerator.backward(loss)
                    run.optimizer.step()
                    run.scheduler.step()
                    run.optimizer.zero_grad()
                run.state.batches_seen += 1
                run.samples += batch.shape[0] * accelerator.num_processes
                run.losses.append(loss.detach())
                if not accelerator.sync_gradients:
                    continue
                run.state.global_step += 1
                bar.update(1)
                _after_step(run)
                if step_callback is not None:
                    step_callback(run.state.global_step, run.state)
                if run.state.global_step >= run.total:
                    break
        bar.close()
        return _finish(run, embeddings, time.perf_counter() - start)


@contextlib.contextmanager
def _frozen(parts):
    """Freeze ``parts`` for the block; whatever happens in it (an exception included), unfreeze them after."""
    frozen = [p for part in parts for p in part.parameters() if p.requires_grad]
    for param in frozen:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in frozen:
            param.requires_grad_(True)


def _prepare(head, x, args, accelerator, objective, partners, dev_fn) -> _Run:
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
    trainable = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    head, optimizer, loader = accelerator.prepare(head, optimizer, loader)
    updates_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    total = args.max_steps if args.max_steps >= 0 else math.ceil(args.num_train_epochs * updates_per_epoch)
    # a prepared scheduler steps once per process per update (accelerate's convention): scale the counts
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=math.ceil(args.warmup_ratio * total) * accelerator.num_processes,
        num_training_steps=max(total, 1) * accelerator.num_processes,
    )
    scheduler = accelerator.prepare(scheduler)
    generator = torch.Generator(device=accelerator.device).manual_seed(args.seed + accelerator.process_index)
    return _Run(args, accelerator, head, objective, optimizer, scheduler, loader, total, generator, dev_fn, None)


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


def _log_header(run: _Run, n: int) -> None:
    args, acc = run.args, run.accelerator
    effective = args.per_device_train_batch_size * acc.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running training *****", main_process_only=True)
    for key, value in [
        ("Num examples", n),
        ("Num epochs", args.num_train_epochs if args.max_steps < 0 else "max_steps"),
        ("Instantaneous batch size per device", args.per_device_train_batch_size),
        ("Total train batch size (w. parallel & accumulation)", effective),
        ("Gradient accumulation steps", args.gradient_accumulation_steps),
        ("Total optimization steps", run.total),
        ("Loss terms (weight)", {k: v for k, v in run.objective.weights.items() if v}),
    ]:
        logger.info("  %s = %s", key, value, main_process_only=True)


def _score_untrained(run: _Run) -> None:
    """Score the identity (the layer branch's gate closed) and, when it differs, the initial head (the closed
    form) on the dev signal, then open the gate: from here on u is part of the output and trained."""
    branch = run.module.layer_branch
    if run.dev_fn is not None:
        _evaluate(run, "identity")
    if branch is not None:
        branch.open()
        if run.dev_fn is not None and branch.closed_form is not None:
            _evaluate(run, "initial")


def _evaluate(run: _Run, candidate: str = "trained") -> float:
    """Score the head on the dev signal; keep it (weights and, for a layer-aware head, the weight of u the signal
    chose) when it beats the best so far. ``dev_fn`` returns a float (larger is better) or a DevScore (its ``key``
    compared, its ``value`` reported); the head's own weight of u is restored after, so the scoring never changes
    the training."""
    module, step = run.module, run.state.global_step
    branch = module.layer_branch
    training_scale = branch.scale if branch is not None else None
    module.eval()
    with torch.no_grad():
        result = run.dev_fn(module)
    chosen_scale = branch.scale if branch is not None else None
    module.train()
    key, value, details = _as_score(result)
    if run.accelerator.num_processes > 1:  # one decision for all: on CPU BatchNorm statistics are per process
        key, value, details = broadcast_object_list([(key, value, details)], from_process=0)[0]
    if not all(math.isfinite(k) for k in key) or not math.isfinite(value):
        raise FloatingPointError(
            f"the dev score of the {candidate} head at step {step} is {value}: its embeddings hold NaN or Inf, or "
            "the dev signal is broken; nothing from this run was saved"
        )
    label = candidate if candidate != "trained" else f"step {step}"
    run.state.dev_scores[label] = value
    if details:
        run.state.dev_details[label] = details
    run.accelerator.log({"dev/score": value}, step=step)
    logger.info("%s: dev score %.4f %s", label, value, details or "", main_process_only=True)
    if candidate == "identity":
        run.state.initial_dev_score = value
    if run.state.best_key is None or tuple(key) > tuple(run.state.best_key):
        state = run.state
        state.best_key, state.best_metric, state.best_step, state.best_candidate = list(key), value, step, candidate
        state.best_layer_scale = chosen_scale
        run.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
    if branch is not None and chosen_scale != training_scale:
        module.set_layer_scale(training_scale)
    return value


def _as_score(result) -> tuple[tuple, float, dict]:
    """(key, value, details) of what a dev_fn returned: a number, or a DevScore-like object."""
    if hasattr(result, "key"):
        return tuple(float(k) for k in result.key), float(result.value), dict(result.details)
    return (float(result),), float(result), {}


def _after_step(run: _Run) -> None:
    args, step, acc = run.args, run.state.global_step, run.accelerator
    logs = bool(args.logging_steps) and step % args.logging_steps == 0
    saves = bool(args.checkpointing_steps) and step % args.checkpointing_steps == 0
    if logs or saves or step >= run.total:
        check_finite(run.head, run.losses[-max(args.logging_steps, args.checkpointing_steps, 1) :], step, args)
    if logs:
        recent = acc.reduce(torch.stack(run.losses[-args.logging_steps :]).mean(), reduction="mean").item()
        terms = {f"train/{k}": float(v) for k, v in run.objective.terms.items()}
        acc.log({"train/loss": recent, "train/lr": run.scheduler.get_last_lr()[0], **terms}, step=step)
        logger.info("step %d: loss %.4f", step, recent, main_process_only=True)
    if run.dev_fn is not None and args.eval_steps and step % args.eval_steps == 0 and step < run.total:
        _evaluate(run)
    if saves:
        save_checkpoint(acc, args.output_dir, asdict(run.state), run.generator, args.save_total_limit, run.best_weights)


def _finish(run: _Run, embeddings, seconds: float) -> dict:
    args, acc, module, state = run.args, run.accelerator, run.module, run.state
    final_score = _evaluate(run) if run.dev_fn is not None and state.global_step > 0 else None
    kept = "last"
    if run.dev_fn is not None and args.load_best_at_end and run.best_weights is not None:
        module.load_state_dict(run.best_weights)
        if state.best_layer_scale is not None:  # the weight of u the kept candidate was chosen with
            module.set_layer_scale(state.best_layer_scale)
        kept = state.best_candidate
        if state.best_candidate == "trained":
            msg = "kept the trained head of step %s (dev %.4f)"
        elif state.best_candidate == "initial":
            msg = (
                "kept the initial head (the closed form, step %s, dev %.4f): no trained step beat it on the dev signal"
            )
        else:
            msg = (
                "kept the identity (step %s, dev %.4f): no refined head beat the backbone's own embedding on the dev "
                "signal, so this model returns the backbone's embedding (a layer-aware head pads it with zeros)"
            )
        logger.info(msg, state.best_step, state.best_metric, main_process_only=True)
    module.eval()
    _check_outputs(module, embeddings, state.global_step)
    tail = run.losses[-max(args.logging_steps, 1) :]
    last = acc.reduce(torch.stack(tail).float().mean(), reduction="mean").item() if tail else None
    return {
        "global_step": state.global_step,
        "total_steps": run.total,
        "train_loss": last,
        "loss_terms": {k: float(v) for k, v in run.objective.terms.items()},
        "initial_dev_score": state.initial_dev_score,
        "final_dev_score": final_score,
        "layer_scale": module.layer_branch.scale if module.layer_branch is not None else None,
        "dev_details": dict(state.dev_details),
        "best_dev_score": state.best_metric,
        "best_step": state.best_step,
        "kept": kept,
        "dev_scores": dict(state.dev_scores),
        "run_fingerprint": state.run_fingerprint,  # the run's checkpoints carry it (trainer_state.json)
        "train_seconds": round(seconds, 3),
        "train_samples_per_second": round(run.samples / max(seconds, 1e-9), 1),
        "num_processes": acc.num_processes,
        "mixed_precision": str(acc.mixed_precision),
        "args": asdict(args),
    }


def _check_outputs(module, embeddings, step: int) -> None:
    """The refined embeddings of the first rows must be finite: a run whose model returns NaN saves nothing."""
    sample = torch.as_tensor(embeddings[: min(len(embeddings), 256)]).float().to(module.feature_mean.device)
    with torch.no_grad():
        out = module.embed(sample)
    if not bool(torch.isfinite(out).all()):
        raise FloatingPointError(
            f"after step {step} the head returns NaN or Inf for the training rows; nothing from this run was saved"
        )


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


NEIGHBOR_CHUNK = 4096  # rows of the table read at a time, and rows of the (chunk, n) similarity block


def _partners(embeddings, args, partners):
    if args.positives == "neighbor":  # the index of every row's nearest other row, by the embedding x
        # x alone, read a chunk of rows at a time: a layer-aware table's (n, 1 + L, d) is never in memory at once
        x = None
        for start in range(0, len(embeddings), NEIGHBOR_CHUNK):
            rows = split_inputs(torch.as_tensor(embeddings[start : start + NEIGHBOR_CHUNK]).float())[0]  # (chunk, d)
            if x is None:
                x = rows.new_empty((len(embeddings), rows.shape[-1]))  # (n, d)
            x[start : start + len(rows)] = rows
        return nearest_other_index(x, NEIGHBOR_CHUNK)
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
