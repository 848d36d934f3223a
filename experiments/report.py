"""Summaries of the experiment result files: results/summary.json (the machine-readable contract),
summary.md, deltas.png and the results block of experiments/README.md, all regenerated from
results/runs/*.json."""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from hf_simskip.evaluation.tasks import STS_TASKS, TRANSFER_TASKS
from hf_simskip.files import atomic_path, write_text

BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _score(task_result: dict) -> float:
    return task_result["acc"] if "acc" in task_result else task_result["spearman"]


def summarize(run_dir: Path, default: str | None = None) -> list[dict]:
    """One row per run name (mean and sd over its seeds). ``default``: the name of the row the recipe
    trains without arguments (the grid says which); None: the rows' own records say."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(run_dir.glob("*.json")):
        record = json.loads(path.read_text())
        groups[record["run"]["name"]].append(record)
    rows = []
    for name, records in groups.items():
        spec = records[0]["run"]["spec"]
        tasks = [t for t in TRANSFER_TASKS + STS_TASKS if t in records[0]["tasks"]]
        scores = {t: [_score(r["tasks"][t]) for r in records] for t in tasks}
        avgs = [float(np.mean([_score(r["tasks"][t]) for t in TRANSFER_TASKS if t in r["tasks"]])) for r in records]
        modes = {r["protocol"]["mode"] for r in records}
        rows.append(
            {
                "name": name,
                "default": name == default if default is not None else bool(spec.get("default")),
                "backbone": records[0]["run"].get("backbone", BACKBONE),
                "seeds": sorted(r["run"]["seed"] for r in records),
                "mode": modes.pop() if len(modes) == 1 else sorted(modes),
                "mean": {t: round(float(np.mean(v)), 2) for t, v in scores.items()},
                "sd": {t: round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 2) for t, v in scores.items()},
                "avg": round(float(np.mean(avgs)), 2),
                "avg_sd": round(float(np.std(avgs, ddof=1)) if len(avgs) > 1 else 0.0, 2),
                "kind": "control" if spec.get("control") else "simskip",
                "corpus": spec.get("corpus", "default"),
                "kfold": records[0]["protocol"].get("kfold"),
                "spec": spec,
            }
        )
    order = {"control": 0, "simskip": 1}
    return sorted(rows, key=lambda r: (order[r["kind"]], r["name"] != "identity", r["name"]))


def widths(run_dir: Path) -> dict[str, int]:
    """The output width of every run name (what the probe saw), from the result files."""
    out = {}
    for path in sorted(run_dir.glob("*.json")):
        record = json.loads(path.read_text())
        out[record["run"]["name"]] = record["protocol"].get("embedding_dim")
    return out


def markdown(rows: list[dict], width: dict[str, int] | None = None) -> str:
    base = next((r for r in rows if r["name"] == "identity"), None)
    tasks = [t for t in TRANSFER_TASKS + STS_TASKS if rows and t in rows[0]["mean"]]
    width = width or {}
    head = "| run | kind | corpus | width | seeds | " + " | ".join(tasks) + " | Avg (7) | Δ Avg | worst Δ |"
    lines = [head, "|" + "---|" * (len(tasks) + 8)]
    for r in rows:
        cells = []
        for t in tasks:
            sd = f" ± {r['sd'][t]:.2f}" if len(r["seeds"]) > 1 else ""
            cells.append(f"{r['mean'][t]:.2f}{sd}")
        if base:
            deltas = [r["mean"][t] - base["mean"][t] for t in TRANSFER_TASKS if t in r["mean"]]
            d_avg, worst = f"{r['avg'] - base['avg']:+.2f}", f"{min(deltas):+.2f}"
        else:
            d_avg = worst = "n/a"
        name = f"**{r['name']}** (default)" if r["default"] else r["name"]
        corpus = "transductive" if r["corpus"] == "transductive" else "default"
        lines.append(
            f"| {name} | {r['kind']} | {corpus} | {width.get(r['name']) or ''} | {len(r['seeds'])} | "
            + " | ".join(cells)
            + f" | {r['avg']:.2f} | {d_avg} | {worst} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = next(r for r in rows if r["name"] == "identity")
    others = [r for r in rows if r["name"] != "identity"]
    tasks = [t for t in TRANSFER_TASKS + STS_TASKS if t in base["mean"]]
    width = 0.8 / max(1, len(others))
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(tasks)), 4.5))
    colors = plt.get_cmap("tab20").colors  # one distinct colour per row (tab10 repeats after 10 rows)
    for i, r in enumerate(others):
        xs = np.arange(len(tasks)) + (i - (len(others) - 1) / 2) * width
        ax.bar(
            xs,
            [r["mean"][t] - base["mean"][t] for t in tasks],
            width,
            yerr=[r["sd"][t] for t in tasks],
            capsize=2,
            color=colors[i % len(colors)],
            hatch="//" if i >= len(colors) else None,
            label=r["name"] + (" (default)" if r["default"] else ""),
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axhline(-0.3, color="red", linewidth=0.6, linestyle="--")
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.set_ylabel("Δ vs backbone (acc / Spearman x100)")
    ax.set_title(f"Refinement of {base['backbone']}: delta per task, mean ± sd over seeds")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_report(out: Path, readme: Path | None, default: str | None = None) -> list[dict]:
    rows = summarize(out / "runs", default)
    if not rows:
        raise FileNotFoundError(f"no result files under {out / 'runs'}: run `experiments/runner.py run` first")
    if sum(r["default"] for r in rows) > 1:
        raise ValueError("more than one row is marked default")
    write_text(out / "summary.json", json.dumps(rows, indent=2) + "\n")
    table = markdown(rows, widths(out / "runs"))
    protocol = _protocol_line(out, rows)
    write_text(out / "summary.md", f"{protocol}\n\n{table}\n")
    if any(r["name"] == "identity" for r in rows):
        plot(rows, out / "deltas.png")
    if readme is not None and readme.is_file():
        text = readme.read_text(encoding="utf-8")
        image = Path(os.path.relpath(out / "deltas.png", readme.resolve().parent)).as_posix()
        block = f"{START}\n{protocol}\n\n{table}\n\n![per-task deltas]({image})\n{END}"
        if START in text and END in text:
            write_text(readme, re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))
    return rows


def _protocol_line(out: Path, rows: list[dict]) -> str:
    one = json.loads(next((out / "runs").glob("*.json")).read_text())
    p = one["protocol"]
    return (
        f"Protocol: mode `{p['mode']}` ({p['kfold']}-fold), SentEval seed {p['seed']}, probe: "
        f"{p['probe']['type'].split('(')[0].strip()} (C grids: inner k-fold {p['probe'].get('grid_inner_kfold')}, "
        f"TREC/MRPC k-fold {p['probe'].get('grid_kfold')}, SST2 dev {p['probe'].get('grid_split')}); training seeds per "
        f"SimSkip row as listed; backbone {rows[0]['backbone']}; STS-B/SICK-R: Spearman x100 of cosine on test. "
        f"Generated by `python experiments/runner.py report` from `{out.name}/runs/*.json`."
    )
