"""Head-training throughput: the recipe's loop (hf_simskip.training.train_head, accelerate) versus a plain
PyTorch loop doing the same work (same head, batch, optimiser, scheduler, views and NT-Xent) over the same
cached embeddings; prints samples/s of both and the ratio.

    python benchmarks/train_throughput.py [--n 50000] [--dim 384] [--batch-size 256] [--steps 150] [--rounds 3]
    python benchmarks/train_throughput.py --cache ~/.cache/hf_simskip/corpus-<key>   # real cached embeddings

Random embeddings have MiniLM's scale (unit-norm rows, per-coordinate std ~0.05). The two sides alternate
round by round so that background load hits both alike; the best round of each is reported.
"""

from __future__ import annotations

import argparse
import logging
import math
import platform
import tempfile
import time

import torch


def embeddings(args) -> torch.Tensor:
    if args.cache:
        import datasets

        return datasets.load_from_disk(args.cache).with_format("torch")["embedding"][: args.n].float()
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.normalize(torch.randn(args.n, args.dim, generator=g), dim=-1)


def plain_loop(x: torch.Tensor, args) -> float:
    """The same step without accelerate: DataLoader, AdamW, warm-up schedule, views + NT-Xent."""
    from torch.utils.data import DataLoader, TensorDataset
    from transformers import get_scheduler

    from hf_simskip import SimSkipConfig, SimSkipHead, SimSkipObjective
    from hf_simskip.training import HeadTrainingArguments

    hp = HeadTrainingArguments()
    torch.manual_seed(0)
    head = SimSkipHead(SimSkipConfig(embedding_dim=x.shape[1]))
    objective = SimSkipObjective(hp, head.config)
    head.fit_statistics(x)
    head.train()
    loader = DataLoader(TensorDataset(x), batch_size=args.batch_size, shuffle=True, drop_last=True)
    opt = torch.optim.AdamW(head.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
    sched = get_scheduler("linear", opt, num_warmup_steps=math.ceil(0.05 * args.steps), num_training_steps=args.steps)
    gen = torch.Generator().manual_seed(0)
    step, start = 0, time.perf_counter()
    while step < args.steps:
        for (batch,) in loader:
            loss = objective(head, batch, gen)
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step >= args.steps:
                break
    return step * args.batch_size / (time.perf_counter() - start)


def recipe_loop(x: torch.Tensor, args) -> float:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from hf_simskip import SimSkipConfig, SimSkipHead
    from hf_simskip.training import HeadTrainingArguments, train_head

    AcceleratorState._reset_state(reset_partial_state=True)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out:
        hp = HeadTrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            eval_steps=0,
            logging_steps=0,
            checkpointing_steps=0,
        )
        metrics = train_head(SimSkipHead(SimSkipConfig(embedding_dim=x.shape[1])), x, hp, Accelerator(cpu=True))
    return metrics["train_samples_per_second"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cache", default=None, help="a build_embedding_cache folder (real embeddings)")
    args = p.parse_args()
    logging.disable(logging.WARNING)
    x = embeddings(args)
    best = {"plain": 0.0, "recipe": 0.0}
    for r in range(args.rounds):
        for name, fn in (("plain", plain_loop), ("recipe", recipe_loop)):
            sps = fn(x, args)
            best[name] = max(best[name], sps)
            print(f"round {r + 1}: {name:6s} {sps:10.0f} samples/s")
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; embeddings {tuple(x.shape)}, batch {args.batch_size}, {args.steps} steps"
    )
    print(
        f"best: plain PyTorch {best['plain']:.0f} samples/s, recipe (train_head + accelerate) "
        f"{best['recipe']:.0f} samples/s, ratio recipe/plain = {best['recipe'] / best['plain']:.3f}"
    )


if __name__ == "__main__":
    main()
