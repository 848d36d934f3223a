"""NT-Xent (models/simskip/losses.py) against a naive loop."""

import math

import pytest
import torch

from hf_simskip import nt_xent_loss


def naive_nt_xent(z1, z2, t, decoupled=False):
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n, total = len(z1), 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        num = math.exp(float(z[i] @ z[j]) / t)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i and not (decoupled and k == j))
        total += -math.log(num / den)
    return total / (2 * n)


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("t", [0.05, 0.5])
def test_nt_xent_equals_naive_loop(decoupled, t):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert float(nt_xent_loss(z1, z2, t, decoupled=decoupled)) == pytest.approx(
        naive_nt_xent(z1, z2, t, decoupled), rel=1e-5
    )


def test_nt_xent_in_fp32_under_bf16_inputs():
    z1, z2 = torch.randn(4, 8).bfloat16(), torch.randn(4, 8).bfloat16()
    loss = nt_xent_loss(z1, z2, 0.1)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_nt_xent_rejects_mismatched_views():
    with pytest.raises(ValueError, match=r"\(4, 8\) and \(3, 8\)"):
        nt_xent_loss(torch.randn(4, 8), torch.randn(3, 8))


def test_distillation_loss_is_the_kl_of_in_batch_neighbour_distributions():
    from hf_simskip.models.simskip.losses import distillation_loss

    g = torch.Generator().manual_seed(0)
    x, f = torch.randn(6, 5, generator=g), torch.randn(6, 7, generator=g)
    t = 0.1

    def rows(a):
        a = torch.nn.functional.normalize(a, dim=-1)
        sims = a @ a.T / t
        return [torch.softmax(torch.cat([sims[i, :i], sims[i, i + 1 :]]), 0) for i in range(len(a))]

    naive = sum((p * (p.log() - q.log())).sum() for p, q in zip(rows(x), rows(f))) / len(x)
    torch.testing.assert_close(distillation_loss(f, x, t), naive)
    assert distillation_loss(3 * x, x, t).abs() < 1e-6  # the same neighbourhoods (cosine ignores the scale)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_loss(f, x, 0.0)
