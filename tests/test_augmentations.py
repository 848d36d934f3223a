"""Views of an embedding (models/simskip/augmentations.py): reproducible, scale aware, validated."""

import math

import pytest
import torch

from hf_simskip import ViewArguments, augment, gaussian_noise, make_view, random_mask


def test_augmentations_are_reproducible_and_scale_aware():
    x = torch.randn(64, 16) * 0.05
    a = augment(x, "mask+noise", 0.2, 0.13, torch.Generator().manual_seed(1), x.mean(0), x.std(0))
    b = augment(x, "mask+noise", 0.2, 0.13, torch.Generator().manual_seed(1), x.mean(0), x.std(0))
    assert torch.equal(a, b)
    rel = gaussian_noise(x, 0.13, torch.Generator().manual_seed(0), scale=x.std(0)) - x
    absolute = gaussian_noise(x, 0.13, torch.Generator().manual_seed(0)) - x
    assert rel.std().item() == pytest.approx(
        math.sqrt(0.13) * x.std(0).mean().item(), rel=0.15
    )  # noise relative to the data
    assert absolute.std().item() == pytest.approx(math.sqrt(0.13), rel=0.1)  # the paper's absolute noise
    masked = random_mask(torch.ones(1000, 10), 0.2, torch.Generator().manual_seed(0))
    assert (masked == 0).float().mean().item() == pytest.approx(0.2, abs=0.02)
    filled = random_mask(torch.ones(50, 3), 0.5, torch.Generator().manual_seed(0), fill=torch.tensor([7.0, 8.0, 9.0]))
    assert set(filled[:, 0].tolist()) <= {1.0, 7.0}


def test_augment_rejects_unknown_kind():
    with pytest.raises(ValueError, match="augmentation must be one of"):
        augment(torch.randn(2, 3), "crop")


def test_view_arguments_validate_and_make_views():
    x = torch.randn(32, 8)
    v = make_view(
        x, ViewArguments(augmentation="mask", mask_ratio=0.5, mask_fill="zero"), torch.Generator().manual_seed(0)
    )
    assert ((v == 0) | (v == x)).all() and (v == 0).any()
    for kwargs, match in [
        ({"augmentation": "crop"}, "augmentation must be one of"),
        ({"mask_fill": "median"}, "mask_fill must be one of"),
        ({"mask_ratio": 1.0}, "mask_ratio must be a number in"),
        ({"temperature": 0}, "temperature must be a finite number > 0"),
        ({"noise_variance": float("inf")}, "noise_variance must be a finite number"),
    ]:
        with pytest.raises(ValueError, match=match):
            ViewArguments(**kwargs).validate()
