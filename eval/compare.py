"""Bar chart of several evaluate() result files, one group of bars per task.

python eval/compare.py results/minilm.json results/simskip.json --output compare.png [--labels a b]

The files must come from the same protocol (mode and folds, seed, standardize, probe, and the same
data files): numbers of different protocols are not comparable (fast mode alone moves CR by 0.46), so
a mismatch is an error listing the differences. ``--allow-protocol-mismatch`` draws the chart anyway,
with the differences in its title.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from hf_simskip.evaluation import STS_TASKS, TRANSFER_TASKS, format_table, load_results

# protocol fields that change the numbers; the data files are compared by their sha256 (data_fingerprint)
PROTOCOL_KEYS = ("mode", "kfold", "seed", "standardize", "probe")


def score(entry: dict) -> float:
    return entry["acc"] if "acc" in entry else entry["spearman"]


def _protocol_value(protocol: dict, key: str):
    value = protocol.get(key, "not recorded")
    if key == "probe" and isinstance(value, dict):  # the record of what ran: its name says which probe
        value = value.get("name", "not recorded")
    return value


def protocol_differences(results: list[dict], labels: list[str]) -> list[str]:
    """Each protocol field whose value differs between the result files, as 'field: label=value, ...'."""
    protocols = [r.get("protocol") or {} for r in results]
    out = []
    for key in PROTOCOL_KEYS:
        values = [_protocol_value(p, key) for p in protocols]
        if any(v != values[0] for v in values[1:]):
            out.append(f"{key}: " + ", ".join(f"{label}={v}" for label, v in zip(labels, values)))
    files = [(p.get("data_fingerprint") or {}).get("files") for p in protocols]
    if any(f is None for f in files) and not all(f is None for f in files):
        missing = [label for label, f in zip(labels, files) if f is None]
        out.append(f"data: no data fingerprint recorded in {', '.join(missing)}")
    elif files and files[0] is not None:
        shared = set.intersection(*(set(f) for f in files))
        differ = sorted(name for name in shared if len({f[name] for f in files}) > 1)
        if differ:
            out.append(f"data: {', '.join(differ)} differ (sha256)")
    return out


def y_limits(values) -> tuple[float, float]:
    """A floor a little below the lowest bar (a multiple of 5, 0 only when the data is near it, below 0
    for a negative Spearman) and a top with room for the bar labels: no bar is cut, none starts at 0
    for nothing."""
    lo, hi = float(np.min(values)), float(np.max(values))
    span = max(hi - lo, 1.0)
    low = 5.0 * math.floor((lo - max(2.0, 0.15 * span)) / 5.0)
    if lo >= 0:
        low = max(low, 0.0)
    return low, hi + 0.2 * (hi - low) + 1.0


def _title(results: list[dict], differences: list[str]) -> str:
    p = results[0].get("protocol") or {}
    title = (
        f"SentEval protocol: {p.get('mode', '?')} mode ({p.get('kfold', '?')} folds), "
        f"{_protocol_value(p, 'probe')} probe, seed {p.get('seed', '?')}"
        + (", standardized" if p.get("standardize") else "")
    )
    if differences:
        title = "WARNING, protocols differ (not comparable): " + "; ".join(differences)
    return title


def draw(results: list[dict], labels: list[str], output: Path, differences: list[str] = ()) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in TRANSFER_TASKS + STS_TASKS if any(t in r["tasks"] for r in results)]
    has_avg = any(r.get("avg") is not None for r in results)
    names = tasks + (["Avg"] if has_avg else [])
    x = np.arange(len(names))
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(names)), 4.5))
    shown = []
    for i, (res, label) in enumerate(zip(results, labels)):
        vals = [score(res["tasks"][t]) if t in res["tasks"] else np.nan for t in tasks]
        if has_avg:
            vals.append(res.get("avg") if res.get("avg") is not None else np.nan)
        shown += [v for v in vals if np.isfinite(v)]
        bars = ax.bar(x + (i - (len(results) - 1) / 2) * width, vals, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, rotation=90, padding=2)
    low, high = y_limits(shown)
    ax.set_ylim(low, high)
    if low < 0:
        ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, names)
    ax.set_ylabel(f"accuracy (%), STS: Spearman x100\n(axis starts at {low:g})")
    title = _title(results, list(differences))
    ax.set_title(title, fontsize=9, color="red" if differences else "black", wrap=True)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="result JSON files written by eval/senteval.py")
    parser.add_argument("--labels", nargs="+", default=None)
    parser.add_argument("--output", default="compare.png")
    parser.add_argument(
        "--allow-protocol-mismatch",
        action="store_true",
        help="draw results of different protocols anyway (the differences go into the title, in red)",
    )
    args = parser.parse_args(argv)
    try:
        labels = args.labels or [Path(p).stem for p in args.results]
        if len(labels) != len(args.results):
            raise ValueError(f"expected {len(args.results)} labels (one per file), got {len(labels)}")
        results = [load_results(p) for p in args.results]
        differences = protocol_differences(results, labels)
        if differences and not args.allow_protocol_mismatch:
            raise ValueError(
                "the results come from different protocols and are not comparable: "
                + "; ".join(differences)
                + ". Evaluate them the same way, or pass --allow-protocol-mismatch"
            )
        for label, res in zip(labels, results):
            print(f"== {label}\n{format_table(res)}")
        if differences:
            sys.stderr.write("WARNING: protocols differ: " + "; ".join(differences) + "\n")
        print(f"wrote {draw(results, labels, Path(args.output), differences)}")
    except (ValueError, FileNotFoundError) as err:
        sys.stderr.write(f"compare.py: error: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
