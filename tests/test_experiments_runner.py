"""experiments/runner.py: grid specs, training on cached embeddings, cached corpus views."""

import numpy as np
import pytest
import torch

from hf_simskip import SimSkipModel

from runner import RunSpec, dropout_embeddings, make_control, train_on_embeddings
from utils import tiny_sentences


def test_run_spec_validation():
    with pytest.raises(ValueError, match="unknown train keys|train keys must be"):
        RunSpec(name="x", train={"lr": 1e-3})
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        RunSpec(name="x", train={"temperature": 0})
    with pytest.raises(ValueError, match="pooling must be one of"):
        RunSpec(name="x", head={"pooling": "avg"})
    with pytest.raises(ValueError, match="corpus must be"):
        RunSpec(name="x", corpus="test")
    args = RunSpec(name="x", train={"temperature": 0.2, "learning_rate": 3e-4}).training_args(7, "out")
    assert (args.temperature, args.learning_rate, args.seed) == (0.2, 3e-4, 7)
    assert make_control("whiten-64").name == "whiten-64" and make_control("abtt-3").k == 3


def test_training_on_cached_embeddings_keeps_the_dev_best_head():
    torch.manual_seed(0)
    x = torch.randn(512, 16) * 0.05 + 0.1
    a = x[:64].numpy()
    b = (x[:64] + 0.01 * torch.randn(64, 16)).numpy()
    gold = np.random.default_rng(0).random(64)
    spec = RunSpec(
        name="t",
        head={"zero_init": True},
        train={"num_train_epochs": 2, "per_device_train_batch_size": 64, "eval_steps": 4},
    )
    model, metrics = train_on_embeddings(x, spec, seed=0, dev_pairs=(a, b, gold))
    assert metrics["global_step"] == 16 and metrics["best_dev_score"] >= metrics["initial_dev_score"]
    assert model.refine(x[:5]).shape == (5, 16)


def test_dropout_corpus_views_are_cached_once_and_checked(tiny_backbone, tmp_path, monkeypatch):
    sentences, backbone = tiny_sentences(10), {"name": tiny_backbone, "pooling": "mean"}
    views = dropout_embeddings(sentences, tmp_path, backbone, seed=1)
    clean = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean").encode(sentences)
    assert views.shape == clean.shape and not np.allclose(views, clean, atol=1e-4)
    [cached] = list(tmp_path.glob("corpus_dropout_*.npz"))
    monkeypatch.setattr(SimSkipModel, "from_encoder_pretrained", None)  # a second call must not encode
    np.testing.assert_array_equal(dropout_embeddings(sentences, tmp_path, backbone, seed=1), views)
    np.savez(cached, sentences=np.array(sentences[::-1]), embeddings=views)  # a stale or foreign file
    with pytest.raises(ValueError, match="holds other sentences than the corpus"):
        dropout_embeddings(sentences, tmp_path, backbone, seed=1)
