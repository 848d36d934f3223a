"""SimSkipHead (models/simskip/head.py) on plain tensors: no backbone."""

import pytest
import torch

from hf_simskip import SimSkipHead, ViewArguments, contrastive_loss


def test_zero_init_head_is_identity_and_minus_differs_only_by_skip():
    torch.manual_seed(0)
    head = SimSkipHead(16, zero_init=True).eval()
    x = torch.randn(8, 16)
    assert torch.equal(head.refiner(x), x)
    skip = SimSkipHead(16, zero_init=False).eval()
    minus = SimSkipHead(16, zero_init=False, use_skip=False).eval()
    minus.load_state_dict(skip.state_dict())
    torch.testing.assert_close(skip.refiner(x) - minus.refiner(x), x)
    assert not torch.allclose(minus.refiner(x), x)


def test_after_skip_position_also_starts_as_identity():
    head = SimSkipHead(12, linear_position="after_skip").eval()
    x = torch.randn(5, 12)
    torch.testing.assert_close(head.refiner(x), x)


def test_head_shapes_follow_the_paper():
    head = SimSkipHead(128)
    sizes = [
        tuple(p.shape) for n, p in head.refiner.named_parameters() if n.endswith("0.weight") or n == "linear.weight"
    ]
    assert sizes == [(64, 128), (128, 64), (128, 128)]  # d*d/2, d/2*d, d*d
    assert [tuple(m.weight.shape) for m in head.projector if hasattr(m, "weight")] == [(128, 128), (128, 128)]


def test_contrastive_loss_trains_and_fits_statistics():
    torch.manual_seed(0)
    x = torch.randn(64, 16) * 0.05 + 0.3
    head = SimSkipHead(16, zero_init=True)
    head.fit_statistics(x)
    torch.testing.assert_close(head.feature_mean, x.mean(0))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        loss = contrastive_loss(head, x, ViewArguments(), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_head_rejects_wrong_width_and_single_row_training():
    head = SimSkipHead(8)
    with pytest.raises(ValueError, match=r"\(n, 8\), got \(4, 9\)"):
        head.fit_statistics(torch.randn(4, 9))
    with pytest.raises(ValueError, match="at least 2 rows"):
        head(torch.randn(1, 8))


def test_embed_is_the_output_mode_and_normalisation():
    torch.manual_seed(0)
    x = torch.randn(6, 8)
    head = SimSkipHead(8, zero_init=False, output="concat", normalize_embeddings=True).eval()
    out = head.embed(x)
    assert out.shape == (6, 16) and head.output_dim == 16
    torch.testing.assert_close(out.norm(dim=1), torch.ones(6))
    raw = head.embed(x, normalize=False)
    torch.testing.assert_close(raw[:, :8], x)
    torch.testing.assert_close(raw[:, 8:], head.refiner(x))


def test_a_head_without_projector_embeds_but_cannot_train():
    head = SimSkipHead(8, with_projector=False)
    assert head.projector is None and head.embed(torch.randn(3, 8)).shape == (3, 8)
    with pytest.raises(ValueError, match="without its projector"):
        contrastive_loss(head, torch.randn(4, 8), ViewArguments())
