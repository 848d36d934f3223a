"""NT-Xent (paper eq. 1, SimCLR) over the 2N views of a batch, optionally across processes.

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
