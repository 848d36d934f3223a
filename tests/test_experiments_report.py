"""experiments/report.py: results/summary.json (the contract), summary.md, the plot and the README block."""

import json

import numpy as np
import pytest

from hf_simskip.files import write_json

from report import write_report

TASKS7 = ["CR", "MPQA", "MR", "MRPC", "SST2", "SUBJ", "TREC"]


def _fake_run(path, name, seed, shift, default=False, control=None):
    tasks = {t: {"acc": 80.0 + shift + 0.1 * seed} for t in TASKS7}
    tasks.update(STSB={"spearman": 82.0 + shift, "pearson": 80.0}, SICKR={"spearman": 77.0, "pearson": 75.0})
    record = {
        "tasks": tasks,
        "avg": float(np.mean([tasks[t]["acc"] for t in TASKS7])),
        "protocol": {
            "mode": "full",
            "kfold": 10,
            "seed": 1111,
            "probe": {"type": "logistic regression (x)", "grid": [1]},
        },
        "run": {"name": name, "seed": seed, "spec": {"name": name, "default": default, "control": control}},
    }
    write_json(path / "runs" / f"{name}__seed{seed}.json", record)


def test_summary_contract(tmp_path):
    _fake_run(tmp_path, "identity", 0, 0.0, control="identity")
    for seed in (0, 1, 2):
        _fake_run(tmp_path, "simskip", seed, 1.0, default=True)
    (tmp_path / "experiments").mkdir()
    readme = tmp_path / "experiments" / "README.md"
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
    assert "![per-task deltas](../deltas.png)" in text  # the image path is relative to the README
    assert (tmp_path / "deltas.png").stat().st_size > 1000


def test_the_plot_shows_a_few_main_rows_per_task_and_marks_the_default(tmp_path):
    """issue 21: deltas.png had one bar per row per task (29 x 9) with the default lost among them. Now the
    per-task panel holds the default, the paper's head and the best rows of each kind, and the overview names
    every row with the default labelled."""
    from report import main_rows, plot, summarize

    _fake_run(tmp_path, "identity", 0, 0.0, control="identity")
    for i in range(8):
        _fake_run(tmp_path, f"control-{i}", 0, 0.1 * i - 0.3, control="post-hoc")
    for i in range(16):
        _fake_run(tmp_path, f"head-{i}", 0, 0.05 * i - 0.2)
    _fake_run(tmp_path, "paper", 0, -2.0)
    for seed in (0, 1, 2):
        _fake_run(tmp_path, "the-default", seed, 0.4, default=True)
    rows = summarize(tmp_path / "runs")
    shown = plot(rows, tmp_path / "deltas.png")
    assert shown["per_task"] == [r["name"] for r in main_rows(rows)]
    assert {"the-default", "paper", "control-7", "head-15"} <= set(shown["per_task"]) and len(shown["per_task"]) <= 6
    assert "the-default (default)" in shown["overview"] and len(shown["overview"]) == len(rows) - 1
    assert (tmp_path / "deltas.png").stat().st_size > 1000


def test_the_headline_judges_the_default_against_the_best_closed_form_that_keeps_sts(tmp_path):
    """issue 18: the report states trained minus the best closed form (that keeps STS, at most 2d wide) and the
    goal's checks, in summary.md and in the top-level README's headline block."""
    _fake_run(tmp_path, "identity", 0, 0.0, control="identity")
    _fake_run(tmp_path, "default-head", 0, 2.5, default=True)
    _fake_run(tmp_path, "x+L4", 0, 3.0, control="concat")  # better, but loses STS-B (shift 3.0 > 0.3... up)
    _fake_run(tmp_path, "closed-form-pca", 0, 1.0)
    record = json.loads((tmp_path / "runs" / "closed-form-pca__seed0.json").read_text())
    record["run"]["spec"]["train"] = {"max_steps": 0}
    write_json(tmp_path / "runs" / "closed-form-pca__seed0.json", record)
    for name, dim in (("identity", 384), ("default-head", 768), ("x+L4", 768), ("closed-form-pca", 768)):
        path = tmp_path / "runs" / f"{name}__seed0.json"
        record = json.loads(path.read_text())
        record["protocol"]["embedding_dim"] = dim
        if name == "x+L4":
            record["tasks"]["STSB"]["spearman"] = 80.0  # 2 below the identity: does not keep STS
        write_json(path, record)
    top = tmp_path / "README.md"
    top.write_text("a\n<!-- headline:start -->\nOLD\n<!-- headline:end -->\nb\n")
    rows = write_report(tmp_path, None, top_readme=top)
    assert {r["name"]: r["kind"] for r in rows}["closed-form-pca"] == "closed-form"
    summary = (tmp_path / "summary.md").read_text()
    assert (
        "**Trained minus the best closed form** that keeps STS at width <= 768 (`closed-form-pca`, 81.00): +1.50."
        in summary
    )
    assert ">= best closed form + 0.3: met; >= identity + 2.0: met" in summary
    text = top.read_text()
    assert "OLD" not in text and "+2.50 over the backbone's embedding" in text and "| closed-form-pca |" in text
