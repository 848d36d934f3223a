"""The dev signal for model selection: STS-B dev Spearman of the cosine of refined embeddings.

Never a test split. The pairs are read with the evaluation's SentEval-faithful STS-B loader, so the
strings are exactly those the evaluation encodes.
"""

from __future__ import annotations

import torch


def stsb_dev_pairs(data_dir=None, max_pairs: int | None = None) -> tuple[list[str], list[str], list[float]]:
    """(sentences a, sentences b, gold scores) of STS-B dev; ``max_pairs`` keeps the first N (tests)."""
    from ..evaluation import load_task
    from ..paths import resolve_data_dir

    dev = load_task("STSB", resolve_data_dir(data_dir)).splits["dev"]
    a, b, gold = dev.pairs[0], dev.pairs[1], [float(y) for y in dev.labels]
    return a[:max_pairs], b[:max_pairs], gold[:max_pairs]


def stsb_dev_fn(x_a: torch.Tensor, x_b: torch.Tensor, gold, device=None):
    """``dev_fn(head) -> float``: Spearman x100 of cos(head.embed(x_a), head.embed(x_b)) against ``gold``,
    with ``x_a``, ``x_b`` the head's raw inputs for the dev pairs ((n, d), or (n, 1 + L, d) with layers)."""
    from scipy.stats import spearmanr

    x_a, x_b = (torch.as_tensor(t[:]).float() for t in (x_a, x_b))  # tensors, arrays or FeatureTables
    if x_a.shape != x_b.shape or x_a.shape[0] != len(gold):
        raise ValueError(
            f"expected the raw inputs of the {len(gold)} dev pairs, twice the same shape, got "
            f"{tuple(x_a.shape)} and {tuple(x_b.shape)}"
        )

    def dev_fn(head) -> float:
        target = device if device is not None else next(head.buffers()).device
        ea, eb = head.embed(x_a.to(target)), head.embed(x_b.to(target))
        cos = torch.nn.functional.cosine_similarity(ea.float(), eb.float()).cpu().numpy()
        return 100.0 * float(spearmanr(cos, gold).statistic)

    return dev_fn


__all__ = ["stsb_dev_pairs", "stsb_dev_fn"]
