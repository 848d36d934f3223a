"""Two CPU processes (gloo) give the loss and head gradients of one process with the doubled batch.

`accelerate launch --cpu --num_processes 2` starts ONE process, so the test runs this file under
`ACCELERATE_USE_CPU=1 python -m torch.distributed.run --nproc_per_node 2`. BatchNorm uses per-process
batch statistics on CPU (SyncBatchNorm is CUDA-only), so the head is built with batch_norm=False, and
dropout is off, to make 2 x B and 1 x 2B the same function. A no-grad gather is shown to differ.
"""

import os
import subprocess
import sys
from pathlib import Path

import torch

D, B, T = 8, 6, 0.1


def build_head():
    from hf_simskip import SimSkipHead

    torch.manual_seed(0)
    return SimSkipHead(D, dropout=0.0, batch_norm=False, zero_init=False)  # zero_init would zero the early grads


def batch_and_views():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2 * B, D, generator=g)  # (2B, d): the full batch
    return x, x + 0.1 * torch.randn(2 * B, D, generator=g), x + 0.1 * torch.randn(2 * B, D, generator=g)


def loss_and_grads(head, v1, v2):
    from hf_simskip import nt_xent_loss

    head.zero_grad()
    n = v1.shape[0]
    _, proj = head(torch.cat([v1, v2]))  # (2n, d)
    loss = nt_xent_loss(proj[:n], proj[n:], T)
    loss.backward()
    return loss.detach()


def worker(out: Path) -> None:
    import torch.distributed as dist
    from accelerate import Accelerator

    import hf_simskip.models.simskip.losses as losses
    from hf_simskip import contrastive_loss
    from hf_simskip.training import HeadTrainingArguments

    acc = Accelerator(cpu=True)
    rank, world = acc.process_index, acc.num_processes
    assert world == 2, world
    head = acc.prepare(build_head())
    x, v1, v2 = batch_and_views()
    local = slice(rank * B, (rank + 1) * B)
    results, original_gather = {}, losses.gather_with_grad
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
    # the training loop's step through DDP (augmentation "none": both views are the rows themselves)
    losses.gather_with_grad = original_gather
    head.zero_grad()
    args = HeadTrainingArguments(augmentation="none", temperature=T)
    step_loss = contrastive_loss(head, x[local], args, torch.Generator())
    acc.backward(step_loss)
    results["training_step"] = {
        "loss": acc.reduce(step_loss.detach(), reduction="mean").item(),
        "grads": {k: p.grad.clone() for k, p in head.module.named_parameters()},
    }
    if rank == 0:
        torch.save(results, out / "dist.pt")
    backbone = os.environ.get("TINY_BACKBONE")
    if backbone:  # stage 1 with 2 processes: each encodes a shard, the gather restores the order
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
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
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
    # the training loop's contrastive_loss through DDP (augmentation none) matches 1 x 2B too
    ref_step = loss_and_grads(build_head(), x, x).item()
    assert abs(got["training_step"]["loss"] - ref_step) < 1e-5
    head2 = build_head()
    loss_and_grads(head2, x, x)
    for k, p in head2.named_parameters():
        torch.testing.assert_close(got["training_step"]["grads"][k], p.grad, atol=1e-5, rtol=1e-5, msg=k)
    # distributed stage 1: gathered shards in the original order, padding dropped
    from hf_simskip import SimSkipModel
    from hf_simskip.training import embed_sentences

    from utils import tiny_sentences

    model = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", layers=None)
    torch.testing.assert_close(
        torch.load(tmp_path / "cache_x.pt"), embed_sentences(model, tiny_sentences(11)), atol=1e-5, rtol=1e-5
    )


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
