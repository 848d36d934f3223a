"""Two CPU processes (gloo) give the loss and head gradients of one process with the doubled batch, for every
in-batch loss term (NT-Xent, geometry, distillation, reconstruction) and for whole training runs.

`accelerate launch --cpu --num_processes 2` starts ONE process, so the test runs this file under
`ACCELERATE_USE_CPU=1 python -m torch.distributed.run --nproc_per_node 2`. BatchNorm uses per-process
batch statistics on CPU (SyncBatchNorm is CUDA-only), so the heads compared here have batch_norm=False, and
dropout is off, to make 2 x B and 1 x 2B the same function. A no-grad gather is shown to differ.
"""

import os
import subprocess
import sys
from pathlib import Path

import torch

D, B, T, N = 8, 6, 0.1, 96


def build_head(layers=None):
    from hf_simskip import SimSkipConfig, SimSkipHead

    torch.manual_seed(0)
    # zero_init would zero the early gradients of the refiner
    config = SimSkipConfig(embedding_dim=D, dropout=0.0, batch_norm=False, zero_init=False, layers=layers)
    return SimSkipHead(config)


def batch_and_views():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2 * B, D, generator=g)  # (2B, d): the full batch
    return x, x + 0.1 * torch.randn(2 * B, D, generator=g), x + 0.1 * torch.randn(2 * B, D, generator=g)


def layer_rows(n=2 * B, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, D, generator=g)  # (n, 1 + 2 layers, d)


def every_term():
    """Every in-batch term at once, on rows without views (augmentation none: the two views are the rows)."""
    from hf_simskip import ObjectiveArguments

    return ObjectiveArguments(
        augmentation="none",
        temperature=T,
        contrastive_weight=1.0,
        geometry_weight=1.0,
        distillation_weight=1.0,
        reconstruction_weight=1.0,
    )


def loss_and_grads(head, v1, v2):
    from hf_simskip import nt_xent_loss

    head.zero_grad()
    n = v1.shape[0]
    proj = head(torch.cat([v1, v2])).projections  # (2n, d)
    loss = nt_xent_loss(proj[:n], proj[n:], T)
    loss.backward()
    return loss.detach()


def objective_and_grads(head, rows):
    from hf_simskip import SimSkipObjective

    head.zero_grad()
    module = getattr(head, "module", head)
    loss = SimSkipObjective(every_term(), module.config)(head, rows)
    loss.backward()
    return loss.detach()


def training_args(out, batch, steps):
    from hf_simskip.training import HeadTrainingArguments

    # the default layer-aware objective (distillation), plus reconstruction, no views, no dev signal
    return HeadTrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        max_steps=steps,
        logging_steps=1,
        learning_rate=1e-2,
        reconstruction_weight=1.0,
    )


def train(out, batch, steps, accelerator):
    from hf_simskip.training import train_head

    head = build_head(layers=[0, 1])
    metrics = train_head(head, layer_rows(N, seed=3), training_args(out, batch, steps), accelerator)
    return metrics["train_loss"], {k: v.detach().clone() for k, v in head.state_dict().items()}


def worker(out: Path) -> None:
    import torch.distributed as dist
    from accelerate import Accelerator

    import hf_simskip.models.simskip.losses as losses

    acc = Accelerator(cpu=True)
    rank, world = acc.process_index, acc.num_processes
    assert world == 2, world
    local = slice(rank * B, (rank + 1) * B)
    results, original_gather = {}, losses.gather_with_grad
    head = acc.prepare(build_head())
    x, v1, v2 = batch_and_views()
    for mode in ("with_grad", "no_grad"):
        if mode == "no_grad":  # what a plain all_gather does: the other processes' views carry no gradient

            def gather(t, group=None):
                parts = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
                dist.all_gather(parts, t.detach())
                parts[dist.get_rank()] = t
                return torch.cat(parts)

            losses.gather_with_grad = gather
        loss = loss_and_grads(head, v1[local], v2[local])
        grads = {k: p.grad.clone() for k, p in head.module.named_parameters()}  # DDP-averaged
        results[mode] = {"loss": acc.reduce(loss, reduction="mean").item(), "grads": grads}
    losses.gather_with_grad = original_gather
    # the objective with every in-batch term, through DDP, on a layer-aware head
    layered = acc.prepare(build_head(layers=[0, 1]))
    step_loss = objective_and_grads(layered, layer_rows()[local])
    results["every_term"] = {
        "loss": acc.reduce(step_loss, reduction="mean").item(),
        "grads": {k: p.grad.clone() for k, p in layered.module.named_parameters() if p.grad is not None},
    }
    # whole runs of train_head: the first step's loss and the weights after three steps
    results["first_loss"], _ = train(out / "run1", B, 1, acc)
    _, results["after_three"] = train(out / "run3", B, 3, acc)
    if rank == 0:
        torch.save(results, out / "dist.pt")
    backbone = os.environ.get("TINY_BACKBONE")
    if backbone:  # stage 1 with 2 processes: each encodes a shard, the cache holds the rows in order
        from hf_simskip import SimSkipModel
        from hf_simskip.training import build_embedding_cache

        from utils import tiny_sentences

        model = SimSkipModel.from_encoder_pretrained(backbone, pooling="mean", layers=None)
        emb, _ = build_embedding_cache(model, tiny_sentences(11), out / "cache", acc, batch_size=4, dtype="float32")
        if rank == 0:
            torch.save(emb[:], out / "cache_x.pt")
    acc.wait_for_everyone()


def test_two_processes_equal_one_process_with_double_batch(tmp_path, tiny_backbone):
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "TINY_BACKBONE": tiny_backbone,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        __file__,
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(tmp_path / "dist.pt")
    head = build_head()
    x, v1, v2 = batch_and_views()
    ref_loss = loss_and_grads(head, v1, v2).item()  # one process, batch 2B, no process group
    ref = {k: p.grad for k, p in head.named_parameters()}
    assert abs(got["with_grad"]["loss"] - ref_loss) < 1e-5
    for k, g in ref.items():
        torch.testing.assert_close(got["with_grad"]["grads"][k], g, atol=1e-5, rtol=1e-5, msg=k)
    # a no-grad gather: same loss value, but gradients off (scaled by 1/world for the gathered half)
    assert abs(got["no_grad"]["loss"] - ref_loss) < 1e-5
    assert max((got["no_grad"]["grads"][k] - g).abs().max().item() for k, g in ref.items()) > 1e-3
    # every in-batch term sees the global batch: 2 x B through DDP == 1 x 2B
    layered = build_head(layers=[0, 1])
    assert abs(got["every_term"]["loss"] - objective_and_grads(layered, layer_rows()).item()) < 1e-5
    for k, p in layered.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(got["every_term"]["grads"][k], p.grad, atol=1e-5, rtol=1e-5, msg=k)
    # whole training runs: 2 processes at batch B give the loss and the weights of 1 process at batch 2B
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    first_loss, _ = train(tmp_path / "one1", 2 * B, 1, Accelerator(cpu=True))
    assert abs(got["first_loss"] - first_loss) < 1e-5
    _, weights = train(tmp_path / "one3", 2 * B, 3, Accelerator(cpu=True))
    for k, v in weights.items():
        torch.testing.assert_close(got["after_three"][k], v, atol=1e-5, rtol=1e-4, msg=k)
    # distributed stage 1: the cache holds every sentence's rows in the original order
    from hf_simskip import SimSkipModel
    from hf_simskip.training import embed_sentences

    from utils import tiny_sentences

    model = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", layers=None)
    torch.testing.assert_close(
        torch.load(tmp_path / "cache_x.pt"), embed_sentences(model, tiny_sentences(11)), atol=1e-5, rtol=1e-5
    )


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
