"""Issue 6 machinery: grid specs, training on cached embeddings, and the summary contract."""
import json

import numpy as np
import pytest
import torch

from hf_simskip.experiments import RunSpec, make_control, train_on_embeddings
from hf_simskip.experiments_report import write_report
from hf_simskip.training import write_json

TASKS7 = ["CR", "MPQA", "MR", "MRPC", "SST2", "SUBJ", "TREC"]


def test_run_spec_validation():
    with pytest.raises(ValueError, match="unknown train keys|train keys must be"):
        RunSpec(name="x", train={"lr": 1e-3})
    with pytest.raises(ValueError, match="those go under head"):
        RunSpec(name="x", train={"temperature": 0.1})
    with pytest.raises(ValueError, match="pooling must be one of"):
        RunSpec(name="x", head={"pooling": "avg"})
    with pytest.raises(ValueError, match="corpus must be"):
        RunSpec(name="x", corpus="test")
    args = RunSpec(name="x", head={"temperature": 0.2}, train={"learning_rate": 3e-4}).training_args(7, "out")
    assert (args.temperature, args.learning_rate, args.seed) == (0.2, 3e-4, 7)
    assert make_control("whiten-64").name == "whiten-64" and make_control("abtt-3").k == 3


def test_training_on_cached_embeddings_keeps_the_dev_best_head():
    torch.manual_seed(0)
    x = torch.randn(512, 16) * 0.05 + 0.1
    a = x[:64].numpy()
    b = (x[:64] + 0.01 * torch.randn(64, 16)).numpy()
    gold = np.random.default_rng(0).random(64)
    spec = RunSpec(name="t", head={"zero_init": True},
                   train={"num_train_epochs": 2, "per_device_train_batch_size": 64, "eval_steps": 4})
    model, metrics = train_on_embeddings(x, spec, seed=0, dev_pairs=(a, b, gold))
    assert metrics["global_step"] == 16 and metrics["best_dev_score"] >= metrics["initial_dev_score"]
    assert model.refine(x[:5]).shape == (5, 16)


def _fake_run(path, name, seed, shift, default=False, control=None):
    tasks = {t: {"acc": 80.0 + shift + 0.1 * seed} for t in TASKS7}
    tasks.update(STSB={"spearman": 82.0 + shift, "pearson": 80.0}, SICKR={"spearman": 77.0, "pearson": 75.0})
    record = {"tasks": tasks, "avg": float(np.mean([tasks[t]["acc"] for t in TASKS7])),
              "protocol": {"mode": "full", "kfold": 10, "seed": 1111, "probe": {"type": "logistic regression (x)", "grid": [1]}},
              "run": {"name": name, "seed": seed, "spec": {"name": name, "default": default, "control": control}}}
    write_json(path / "runs" / f"{name}__seed{seed}.json", record)


def test_summary_contract(tmp_path):
    _fake_run(tmp_path, "identity", 0, 0.0, control="identity")
    for seed in (0, 1, 2):
        _fake_run(tmp_path, "simskip", seed, 1.0, default=True)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nSTALE TABLE\n<!-- results:end -->\nrest\n")
    rows = write_report(tmp_path, readme)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == rows
    names = {r["name"]: r for r in summary}
    assert set(names) == {"identity", "simskip"} and sum(r["default"] for r in summary) == 1
    row = names["simskip"]
    assert row["seeds"] == [0, 1, 2] and row["mode"] == "full" and row["backbone"]
    assert row["mean"]["CR"] == pytest.approx(81.1) and row["sd"]["CR"] == pytest.approx(0.1)
    text = readme.read_text()
    assert "STALE TABLE" not in text and "| **simskip** (default) |" in text and text.endswith("rest\n")
    assert (tmp_path / "deltas.png").stat().st_size > 1000


def test_dropout_corpus_views_are_cached_once_and_checked(tiny_backbone, tmp_path, monkeypatch):
    import importlib.util

    from helpers_tiny import REPO, tiny_sentences

    from hf_simskip import SimSkipModel

    monkeypatch.syspath_prepend(str(REPO / "recipes"))
    spec = importlib.util.spec_from_file_location("experiments_cli", REPO / "recipes" / "experiments.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    sentences, backbone = tiny_sentences(10), {"name": tiny_backbone, "pooling": "mean"}
    views = cli.dropout_embeddings(sentences, tmp_path, backbone, seed=1)
    clean = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean").encode(sentences)
    assert views.shape == clean.shape and not np.allclose(views, clean, atol=1e-4)
    [cached] = list(tmp_path.glob("corpus_dropout_*.npz"))
    monkeypatch.setattr(SimSkipModel, "from_encoder_pretrained", None)  # a second call must not encode
    np.testing.assert_array_equal(cli.dropout_embeddings(sentences, tmp_path, backbone, seed=1), views)
    np.savez(cached, sentences=np.array(sentences[::-1]), embeddings=views)  # a stale or foreign file
    with pytest.raises(ValueError, match="holds other sentences than the corpus"):
        cli.dropout_embeddings(sentences, tmp_path, backbone, seed=1)
