"""The batched probe solves sklearn's LogisticRegression problem, at any feature scale."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from hf_simskip.evaluation import evaluate, lookup_encoder
from hf_simskip.evaluation.probe import fit_logistic


def _data(K, n=600, d=24, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = (X @ (3 * rng.normal(size=(d, K))) + rng.gumbel(size=(n, K))).argmax(1)
    return X, y


@pytest.mark.parametrize("K, scale", [(2, 1.0), (2, 100.0), (4, 1.0), pytest.param(4, 100.0, marks=pytest.mark.slow)])
def test_same_optimum_as_sklearn(K, scale):
    X, y = _data(K)
    X = X * scale
    masks = np.ones((2, len(y)), bool)
    masks[1, :150] = False
    Cs = np.array([[0.25, 8.0], [1.0, 32.0]])
    fit = fit_logistic(torch.tensor(X), torch.tensor(y), torch.tensor(masks), torch.tensor(Cs), K)
    assert bool(fit.converged.all())
    pred = fit.predict(torch.tensor(X)).numpy()
    for f in range(2):
        for g in range(2):
            clf = LogisticRegression(C=Cs[f, g], tol=1e-10, max_iter=5000).fit(X[masks[f]], y[masks[f]])
            w = fit.weights[f, g].numpy()
            np.testing.assert_allclose(w[:-1], clf.coef_.T, rtol=0, atol=1e-4 * np.abs(clf.coef_).max())
            assert (pred[f, g] == clf.predict(X)).mean() == 1.0


def test_unconverged_is_reported(caplog):
    X, y = _data(2)
    with caplog.at_level("WARNING"):
        fit = fit_logistic(
            torch.tensor(X * 1000),
            torch.tensor(y),
            torch.ones(1, len(y), dtype=torch.bool),
            torch.tensor([[1e6]]),
            2,
            max_iter=1,
        )
    assert not bool(fit.converged.all())
    assert "did not converge" in caplog.text


def test_rescaled_embeddings(tmp_path, senteval_data):
    """standardize=True: identical answers for x and 100*x. standardize=False (SentEval's objective,
    which is not scale invariant): still converges, and answers stay close."""
    from hf_simskip.evaluation import load_task

    task = load_task("CR", senteval_data)
    sents, labels = task.splits["all"].sentences, task.splits["all"].labels
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(sents), 8))
    emb[:, 0] += 1.5 * (2 * labels - 1)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    out = {}
    for scale in [1.0, 100.0]:
        enc = lookup_encoder((sents, emb * scale))
        for std in [False, True]:
            r = evaluate(enc, tasks=["CR"], mode="fast", standardize=std, show_progress_bar=False)
            assert r["protocol"]["probe"]["converged"] and r["protocol"]["standardize"] is std
            out[scale, std] = r["tasks"]["CR"]["acc"]
    assert out[1.0, True] == out[100.0, True]
    assert abs(out[1.0, True] - out[1.0, False]) <= 1.0  # unit-norm rows: standardizing is ~ a no-op
    assert abs(out[1.0, False] - out[100.0, False]) <= 5.0


def test_regularisation_path_any_order():
    """Grid columns are solved in increasing C with warm starts: any column order, same optimum."""
    X, y = _data(3, n=300, d=8)
    masks = torch.ones(1, len(y), dtype=torch.bool)
    Cs = torch.tensor([[16.0, 0.5, 2.0]], dtype=torch.float64)
    path = fit_logistic(torch.tensor(X), torch.tensor(y), masks, Cs, 3)
    for g in range(3):
        alone = fit_logistic(torch.tensor(X), torch.tensor(y), masks, Cs[:, g : g + 1], 3)
        w = alone.weights[0, 0]
        torch.testing.assert_close(path.weights[0, g], w, rtol=0, atol=1e-4 * float(w.abs().max()))
    assert bool(path.converged.all())
