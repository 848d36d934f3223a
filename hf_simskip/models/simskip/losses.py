"""The head's loss terms: NT-Xent (paper eq. 1, SimCLR) over the 2N views of a batch, optionally across
processes, and the terms that keep the backbone's similarity geometry (geometry, relational distillation).

Self-contained (the Hub copies it beside modeling_simskip.py): torch and the standard library only.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _world(group) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        return 1, 0
    return dist.get_world_size(group), dist.get_rank(group)


def gather_with_grad(t: torch.Tensor, group=None) -> torch.Tensor:
    """all_gather that keeps gradients (a no-grad gather silently scales them by 1/world_size)."""
    import torch.distributed.nn.functional as dist_nn  # explicit: torch.distributed.nn is not auto-imported

    return torch.cat(dist_nn.all_gather(t, group=group), dim=0)


def nt_xent_loss(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, group=None, decoupled: bool = False
) -> torch.Tensor:
    """Mean NT-Xent over the 2N anchors of this process.

    ``z1[i]`` and ``z2[i]`` are the positive pair; every other view is a negative. With a process
    group of world size W > 1 the candidates are the 2NW views of all processes (gathered with
    gradients), the anchors stay local and the labels are offset by rank, so W processes x batch N
    give the loss and gradients (after DDP's averaging) of one process x batch NW.
    ``decoupled=True`` drops the positive from the denominator, as eq. 1 is printed in the paper
    (``k != i, j``); the default is SimCLR's NT-Xent, which keeps it.
    Similarities and the loss are computed in float32 whatever the autocast dtype.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"expected two views of equal shape (N, d), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    n = z1.shape[0]
    with torch.autocast(device_type=z1.device.type, enabled=False):
        local = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=-1)  # (2N, d)
        world, rank = _world(group)
        candidates = gather_with_grad(local, group) if world > 1 else local  # (2N*W, d)
        logits = local @ candidates.T / temperature  # (2N, 2N*W)
        offset = rank * 2 * n
        idx = torch.arange(2 * n, device=local.device)
        positives = offset + torch.cat([idx[n:], idx[:n]])  # view 1 <-> view 2
        logits[idx, offset + idx] = float("-inf")  # never contrast a view with itself
        if decoupled:
            pos_logit = logits[idx, positives].clone()
            logits[idx, positives] = float("-inf")
            return (torch.logsumexp(logits, dim=1) - pos_logit).mean()
        return F.cross_entropy(logits, positives)


def geometry_loss(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the in-batch cosine similarities of the output and of the raw
    embeddings x (off the diagonal): it keeps the similarity geometry that STS scores measure."""
    with torch.autocast(device_type=out.device.type, enabled=False):
        a = F.normalize(out.float(), dim=-1)
        b = F.normalize(x.float(), dim=-1)
        diff = a @ a.T - b @ b.T  # (N, N)
        off = ~torch.eye(len(a), dtype=torch.bool, device=a.device)
        return (diff[off] ** 2).mean()


def distillation_loss(features: torch.Tensor, x: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Relational distillation: for every row i, KL(p_x(i) || p_g(i)), where p(i) is the softmax over the
    other rows j of the batch of cos(i, j) / temperature, taken on the raw embeddings x (the teacher) and
    on the layer features g (the student). It teaches g the backbone's soft ranking of neighbours (what
    STS measures) without asking it to copy x."""
    if not temperature > 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature!r}")
    with torch.autocast(device_type=features.device.type, enabled=False):
        g = F.normalize(features.float(), dim=-1)
        b = F.normalize(x.float(), dim=-1)
        eye = torch.eye(len(g), dtype=torch.bool, device=g.device)
        student = F.log_softmax((g @ g.T / temperature).masked_fill(eye, float("-inf")), dim=1)
        teacher = F.softmax((b @ b.T / temperature).masked_fill(eye, float("-inf")), dim=1)
        return F.kl_div(student.masked_fill(eye, 0.0), teacher, reduction="batchmean")
