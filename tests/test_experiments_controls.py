"""experiments/controls.py: the post-hoc refiners the SimSkip rows are compared with."""

import numpy as np
import pytest

from controls import PostHocRefiner


def test_post_hoc_refiners_do_what_they_say():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 6)) @ rng.normal(size=(6, 6)) + 3.0
    std = PostHocRefiner("standardize").fit(x).transform(x)
    np.testing.assert_allclose(std.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(std.std(0), 1, atol=1e-4)
    white = PostHocRefiner("whiten").fit(x).transform(x)
    np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(6), atol=1e-4)
    assert PostHocRefiner("whiten", k=3).fit(x).transform(x).shape == (2000, 3)
    abtt = PostHocRefiner("abtt", k=2).fit(x).transform(x)
    top = PostHocRefiner("abtt", k=2).fit(x).top
    np.testing.assert_allclose(abtt @ top.T, 0, atol=1e-4)  # top directions removed
    np.testing.assert_array_equal(PostHocRefiner("identity").fit(x).transform(x), x.astype(np.float32))


def test_post_hoc_refiner_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        PostHocRefiner("pca").fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\(n, d\) array"):
        PostHocRefiner("whiten").fit(np.zeros(3))
