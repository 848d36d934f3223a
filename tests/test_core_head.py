"""SimSkipHead, augmentations and NT-Xent on plain tensors (no backbone)."""
import math

import pytest
import torch

from hf_simskip import SimSkipConfig, SimSkipHead, augment, gaussian_noise, nt_xent_loss, random_mask


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
    assert float(nt_xent_loss(z1, z2, t, decoupled=decoupled)) == pytest.approx(naive_nt_xent(z1, z2, t, decoupled), rel=1e-5)


def test_nt_xent_in_fp32_under_bf16_inputs():
    z1, z2 = torch.randn(4, 8).bfloat16(), torch.randn(4, 8).bfloat16()
    loss = nt_xent_loss(z1, z2, 0.1)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_nt_xent_rejects_mismatched_views():
    with pytest.raises(ValueError, match=r"\(4, 8\) and \(3, 8\)"):
        nt_xent_loss(torch.randn(4, 8), torch.randn(3, 8))


def test_augmentations_are_reproducible_and_scale_aware():
    x = torch.randn(64, 16) * 0.05
    a = augment(x, "mask+noise", 0.2, 0.13, torch.Generator().manual_seed(1), x.mean(0), x.std(0))
    b = augment(x, "mask+noise", 0.2, 0.13, torch.Generator().manual_seed(1), x.mean(0), x.std(0))
    assert torch.equal(a, b)
    rel = gaussian_noise(x, 0.13, torch.Generator().manual_seed(0), scale=x.std(0)) - x
    absolute = gaussian_noise(x, 0.13, torch.Generator().manual_seed(0)) - x
    assert rel.std().item() == pytest.approx(math.sqrt(0.13) * x.std(0).mean().item(), rel=0.15)  # noise relative to the data
    assert absolute.std().item() == pytest.approx(math.sqrt(0.13), rel=0.1)  # the paper's absolute noise
    masked = random_mask(torch.ones(1000, 10), 0.2, torch.Generator().manual_seed(0))
    assert (masked == 0).float().mean().item() == pytest.approx(0.2, abs=0.02)
    filled = random_mask(torch.ones(50, 3), 0.5, torch.Generator().manual_seed(0), fill=torch.tensor([7.0, 8.0, 9.0]))
    assert set(filled[:, 0].tolist()) <= {1.0, 7.0}


def test_augment_rejects_unknown_kind():
    with pytest.raises(ValueError, match="augmentation must be one of"):
        augment(torch.randn(2, 3), "crop")


def test_zero_init_head_is_identity_and_minus_differs_only_by_skip():
    torch.manual_seed(0)
    head = SimSkipHead(16, zero_init=True).eval()
    x = torch.randn(8, 16)
    assert torch.equal(head.encoder(x), x)
    skip = SimSkipHead(16, zero_init=False).eval()
    minus = SimSkipHead(16, zero_init=False, use_skip=False).eval()
    minus.load_state_dict(skip.state_dict())
    torch.testing.assert_close(skip.encoder(x) - minus.encoder(x), x)
    assert not torch.allclose(minus.encoder(x), x)


def test_after_skip_position_also_starts_as_identity():
    head = SimSkipHead(12, linear_position="after_skip").eval()
    x = torch.randn(5, 12)
    torch.testing.assert_close(head.encoder(x), x)


def test_head_shapes_follow_the_paper():
    head = SimSkipHead(128)
    sizes = [tuple(p.shape) for n, p in head.encoder.named_parameters() if n.endswith("0.weight") or n == "linear.weight"]
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
        loss = head.contrastive_loss(x, "mask+noise", 0.2, 0.13, 0.1, g)
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


@pytest.mark.parametrize("kwargs, match", [
    ({"pooling": "avg"}, "pooling must be one of"),
    ({"hidden_dims": [4, 7]}, "must end with embedding_dim=8"),
    ({"hidden_dims": [4]}, "two positive ints"),
    ({"dropout": 1.5}, "dropout must be a number"),
    ({"temperature": 0}, "temperature must be > 0"),
    ({"augmentation": "blur"}, "augmentation must be one of"),
    ({"use_skip": False}, "zero_init=True with use_skip=False"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimSkipConfig(embedding_dim=8, **kwargs)


def test_config_defaults_follow_the_paper():
    c = SimSkipConfig(embedding_dim=768)
    assert c.hidden_dims == [384, 768] and c.projector_dim == 768 and c.mask_ratio == 0.2 and c.noise_variance == 0.13


def test_standardize_input_zero_init_is_the_standardisation(tmp_path):
    from hf_simskip import SimSkipModel

    x = torch.randn(50, 16) * 0.05 + 0.2
    model = SimSkipModel(SimSkipConfig(embedding_dim=16, standardize_input=True, output="concat")).eval()
    model.fit_statistics(x)
    z = (x - x.mean(0)) / x.std(0, unbiased=False)
    out = model.refine(x)
    torch.testing.assert_close(out, torch.cat([z, z], dim=1), atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(SimSkipModel.from_pretrained(tmp_path).refine(x), out)
