"""Bar chart of several evaluate() result files, one group of bars per task.

python eval/compare.py results/minilm.json results/simskip.json --output compare.png [--labels a b]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hf_simskip.evaluation import STS_TASKS, TRANSFER_TASKS, format_table, load_results


def score(entry: dict) -> float:
    return entry["acc"] if "acc" in entry else entry["spearman"]


def draw(results: list[dict], labels: list[str], output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in TRANSFER_TASKS + STS_TASKS if any(t in r["tasks"] for r in results)]
    has_avg = any(r.get("avg") is not None for r in results)
    names = tasks + (["Avg"] if has_avg else [])
    x = np.arange(len(names))
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(names)), 4.5))
    for i, (res, label) in enumerate(zip(results, labels)):
        vals = [score(res["tasks"][t]) if t in res["tasks"] else np.nan for t in tasks]
        if has_avg:
            vals.append(res.get("avg") if res.get("avg") is not None else np.nan)
        bars = ax.bar(x + (i - (len(results) - 1) / 2) * width, vals, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, rotation=90, padding=2)
    finite = [score(r["tasks"][t]) for r in results for t in tasks if t in r["tasks"]]
    ax.set_ylim(max(0, min(finite) - 10), min(100, max(finite) + 8))
    ax.set_xticks(x, names)
    ax.set_ylabel("accuracy (%), STS: Spearman x100")
    modes = sorted({r["protocol"]["mode"] for r in results})
    ax.set_title(f"SentEval protocol ({'/'.join(modes)} mode)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="result JSON files written by eval/senteval.py")
    parser.add_argument("--labels", nargs="+", default=None)
    parser.add_argument("--output", default="compare.png")
    args = parser.parse_args(argv)
    labels = args.labels or [Path(p).stem for p in args.results]
    if len(labels) != len(args.results):
        raise ValueError(f"expected {len(args.results)} labels (one per file), got {len(labels)}")
    results = [load_results(p) for p in args.results]
    for label, res in zip(labels, results):
        print(f"== {label}\n{format_table(res)}")
    print(f"wrote {draw(results, labels, Path(args.output))}")


if __name__ == "__main__":
    main()
