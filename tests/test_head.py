"""SimSkipHead (models/simskip/head.py) on plain tensors: no backbone."""

import numpy as np
import pytest
import torch

from hf_simskip import ObjectiveArguments, SimSkipConfig, SimSkipHead, SimSkipObjective


def make_head(dim, with_training_parts=True, **config):
    return SimSkipHead(SimSkipConfig(embedding_dim=dim, **config), with_training_parts=with_training_parts)


def test_zero_init_head_is_identity_and_minus_differs_only_by_skip():
    torch.manual_seed(0)
    head = make_head(16, zero_init=True).eval()
    x = torch.randn(8, 16)
    assert torch.equal(head.refiner(x), x)
    skip = make_head(16, zero_init=False).eval()
    minus = make_head(16, zero_init=False, use_skip=False).eval()
    minus.load_state_dict(skip.state_dict())
    torch.testing.assert_close(skip.refiner(x) - minus.refiner(x), x)
    assert not torch.allclose(minus.refiner(x), x)


def test_after_skip_position_also_starts_as_identity():
    head = make_head(12, linear_position="after_skip").eval()
    x = torch.randn(5, 12)
    torch.testing.assert_close(head.refiner(x), x)


def test_head_shapes_follow_the_paper():
    head = make_head(128)
    sizes = [
        tuple(p.shape) for n, p in head.refiner.named_parameters() if n.endswith("0.weight") or n == "linear.weight"
    ]
    assert sizes == [(64, 128), (128, 64), (128, 128)]  # d*d/2, d/2*d, d*d
    assert [tuple(m.weight.shape) for m in head.projector if hasattr(m, "weight")] == [(128, 128), (128, 128)]


def test_contrastive_loss_trains_and_fits_statistics():
    torch.manual_seed(0)
    x = torch.randn(64, 16) * 0.05 + 0.3
    head = make_head(16, zero_init=True)
    head.fit_statistics(x)
    torch.testing.assert_close(head.feature_mean, x.mean(0))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        loss = SimSkipObjective(ObjectiveArguments(), head.config)(head, x, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_head_rejects_wrong_width_and_single_row_training():
    head = make_head(8)
    with pytest.raises(ValueError, match=r"\(n, 8\), got \(4, 9\)"):
        head.fit_statistics(torch.randn(4, 9))
    with pytest.raises(ValueError, match="at least 2 rows"):
        head(torch.randn(1, 8))


def test_embed_is_the_output_mode_and_normalisation():
    torch.manual_seed(0)
    x = torch.randn(6, 8)
    head = make_head(8, zero_init=False, output="concat", normalize_embeddings=True).eval()
    out = head.embed(x)
    assert out.shape == (6, 16) and head.config.output_dim == 16
    torch.testing.assert_close(out.norm(dim=1), torch.ones(6))
    raw = head.embed(x, normalize=False)
    torch.testing.assert_close(raw[:, :8], x)
    torch.testing.assert_close(raw[:, 8:], head.refiner(x))


def test_a_head_without_projector_embeds_but_cannot_train():
    head = make_head(8, with_training_parts=False)
    assert head.projector is None and head.embed(torch.randn(3, 8)).shape == (3, 8)
    with pytest.raises(ValueError, match="without its projector"):
        SimSkipObjective(ObjectiveArguments(), head.config)(head, torch.randn(4, 8))


def layer_stacks(n=600, layers=3, dim=8, seed=0):
    """(n, 1 + layers, dim): x, then layers that share a part with x and carry their own signal."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    own = torch.randn(n, layers, dim, generator=g)
    return torch.cat([x.unsqueeze(1), 0.5 * x.unsqueeze(1) + own], dim=1)


def test_the_closed_form_pca_branch_is_a_pca_of_the_standardised_layers():
    h = layer_stacks()
    head = make_head(8, layers=[0, 1, 2], layer_closed_form="pca", layer_hidden_dim=0, layer_dim=4).eval()
    head.fit_statistics(h)
    head.layer_branch.open()
    with torch.no_grad():
        u = head.embed(h)[:, 8:]
    # the same with numpy: each layer L2-normalised, concatenated, standardised, top-4 principal directions
    layers = torch.nn.functional.normalize(h[:, 1:], dim=-1).flatten(1).double().numpy()
    z = (layers - layers.mean(0)) / layers.std(0)
    evals, evecs = np.linalg.eigh(z.T @ z / len(z))
    pca = z @ evecs[:, ::-1][:, :4]
    pca /= np.linalg.norm(pca, axis=1, keepdims=True)
    expected = head.config.layer_scale * h[:, 0].norm(dim=-1, keepdim=True).double().numpy() * pca
    # eigenvectors have no sign: compare the Gram matrices (what cosines and a linear probe see)
    np.testing.assert_allclose(u.double().numpy() @ u.double().numpy().T, expected @ expected.T, atol=1e-4)


def test_the_residual_closed_form_is_what_x_does_not_predict():
    h = layer_stacks()
    head = make_head(8, layers=[0, 1, 2], layer_closed_form="residual_pca", layer_hidden_dim=0, layer_dim=4)
    head.fit_statistics(h)
    with torch.no_grad():
        g = head.layer_branch.features(h[:, 1:], head.standardize(h[:, 0])).double()
    zx = head.standardize(h[:, 0]).double()
    cross = (g - g.mean(0)).T @ (zx - zx.mean(0)) / len(g)  # (4, 8): no linear trace of x is left
    assert cross.abs().max() < 1e-2
    pca = make_head(8, layers=[0, 1, 2], layer_closed_form="pca", layer_hidden_dim=0, layer_dim=4)
    pca.fit_statistics(h)
    with torch.no_grad():
        g_pca = pca.layer_branch.features(h[:, 1:], pca.standardize(h[:, 0])).double()
    assert ((g_pca - g_pca.mean(0)).T @ (zx - zx.mean(0)) / len(g)).abs().max() > 0.1  # the plain PCA keeps it


def test_an_untrained_branch_with_an_mlp_is_exactly_its_closed_form():
    h = layer_stacks()
    mlp = make_head(8, layers=[0, 1, 2], layer_hidden_dim=16, layer_dim=4)  # the default: pca + MLP from zero
    linear = make_head(8, layers=[0, 1, 2], layer_hidden_dim=0, layer_dim=4)
    for head in (mlp, linear):
        head.fit_statistics(h)
        head.layer_branch.open()
    torch.testing.assert_close(mlp.eval().embed(h), linear.eval().embed(h))
    assert mlp.layer_branch.net is not None and linear.layer_branch.net is None


def test_huge_finite_inputs_give_finite_outputs():
    head = make_head(8, layers=[0, 1], layer_hidden_dim=0, layer_dim=4).eval()
    head.fit_statistics(layer_stacks(layers=2))
    head.layer_branch.open()
    out = head.embed(layer_stacks(n=4, layers=2) * 1e20)
    assert torch.isfinite(out).all() and out[:, 8:].abs().max() > 0
