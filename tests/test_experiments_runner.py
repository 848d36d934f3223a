"""experiments/runner.py: grid specs, training on cached embeddings, cached corpus views."""

import numpy as np
import pytest
import torch

import runner
from runner import RunSpec, make_control, train_on_embeddings


def test_run_spec_validation():
    with pytest.raises(ValueError, match="unknown train keys|train keys must be"):
        RunSpec(name="x", train={"lr": 1e-3})
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        RunSpec(name="x", train={"temperature": 0})
    with pytest.raises(ValueError, match="pooling must be one of"):
        RunSpec(name="x", head={"pooling": "avg"})
    with pytest.raises(ValueError, match="corpus must be"):
        RunSpec(name="x", corpus="test")
    with pytest.raises(ValueError, match="parts must be like"):
        RunSpec(name="x", control="concat", parts=["x", "L"])
    with pytest.raises(ValueError, match=r"dev_labels must be one of \['SST2'\] \(with dev: sts\), got 'TREC'"):
        RunSpec(name="x", dev_labels="TREC")
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
    model, metrics = train_on_embeddings(x, spec, seed=0, dev_pairs={"stsb": (a, b, gold)})
    assert metrics["global_step"] == 16 and metrics["best_dev_score"] >= metrics["initial_dev_score"]
    assert model.refine(x[:5]).shape == (5, 16)


def test_a_small_grid_end_to_end(tiny_backbone, tiny_senteval, tmp_path):
    """The runner on the tiny SentEval fixture with the tiny backbone: one cache of every hidden layer (built
    once, reused by the next run), post-hoc and layer controls, a layer-aware head with dropout positives."""
    import json

    import yaml

    grid = {
        "backbone": tiny_backbone,
        "pooling": "mean",
        "mode": "fast",
        "seeds": [0],
        "runs": [
            {"name": "identity", "control": "identity"},
            {"name": "x+0.5L1", "control": "concat", "parts": ["x", "0.5*L1"]},
            {"name": "pca", "control": "pca", "parts": ["L0", "L1"], "dim": 8, "weight": 0.5},
            {
                "name": "layers",
                "default": True,
                "head": {"layers": [0, 1], "layer_dim": 16, "projector_dim": 0},
                "train": {
                    "positives": "dropout",
                    "augmentation": "none",
                    "max_steps": 3,
                    "per_device_train_batch_size": 32,
                    "geometry_weight": 1.0,
                    "eval_steps": 0,
                },
            },
            {  # SST2's dev split as a labeled dev set (the recipe's --dev_file)
                "name": "labels",
                "head": {"layers": [0, 1], "layer_dim": 16, "projector_dim": 0},
                "train": {"max_steps": 2, "per_device_train_batch_size": 32, "eval_steps": 0},
                "dev_labels": "SST2",
            },
        ],
    }
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(grid))
    args = [
        "run",
        "--grid",
        str(tmp_path / "g.yaml"),
        "--data-dir",
        str(tiny_senteval),
        "--out",
        str(tmp_path / "results"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    runner.main(args)
    runs = {p.name: json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*.json")}
    assert set(runs) == {
        "identity__seed0.json",
        "x+0.5L1__seed0.json",
        "pca__seed0.json",
        "layers__seed0.json",
        "labels__seed0.json",
    }
    labeled = runs["labels__seed0.json"]["run"]["training"]["dev_details"]
    assert {"identity", "initial", "step 2"} <= set(labeled)
    assert labeled["identity"]["labeled_dev_accuracy"] is not None and "stsb" in labeled["identity"]
    assert runs["x+0.5L1__seed0.json"]["protocol"]["embedding_dim"] == 64
    assert runs["layers__seed0.json"]["protocol"]["embedding_dim"] == 48  # [f(x) (32), u (16)]
    assert runs["layers__seed0.json"]["run"]["training"]["global_step"] == 3
    caches = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir())
    assert caches == ["experiments", "experiments"]  # the stacks, and one dropout view of the corpus
    (tmp_path / "results" / "runs" / "identity__seed0.json").unlink()
    runner.main(args)  # resumes: only the missing run, the cache reused
    assert (tmp_path / "results" / "runs" / "identity__seed0.json").is_file()
