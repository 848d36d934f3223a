"""Tables and JSON for evaluation results."""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_json
from .tasks import STS_TASKS, TRANSFER_TASKS


def format_table(results: dict) -> str:
    """The usual SentEval table: CR MPQA MR MRPC SST2 SUBJ TREC Avg (plus STSB/SICKR Spearman)."""
    if not isinstance(results, dict) or "tasks" not in results:
        raise ValueError("expected an evaluate() result: a dict with a 'tasks' entry")
    tasks = results["tasks"]
    cols = [t for t in TRANSFER_TASKS if t in tasks]
    heads, cells = [], []
    for t in cols:
        heads.append(t)
        cells.append(f"{tasks[t]['acc']:.2f}")
    if cols:
        heads.append("Avg")
        cells.append(f"{results['avg']:.2f}" if results.get("avg") is not None else "-")
    for t in STS_TASKS:
        if t in tasks:
            heads.append(f"{t}(sp)")
            cells.append(f"{tasks[t]['spearman']:.2f}")
    widths = [max(len(h), len(c)) for h, c in zip(heads, cells)]
    line = lambda xs: " | ".join(x.rjust(w) for x, w in zip(xs, widths))  # noqa: E731
    return "\n".join([line(heads), "-+-".join("-" * w for w in widths), line(cells)])


def save_results(results: dict, path) -> Path:
    """Write results as JSON atomically (tmp file + os.replace)."""
    return write_json(path, results)


def load_results(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {str(path)!r} does not exist")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "tasks" not in data:
        raise ValueError(
            f"{path}: expected evaluate() JSON with a 'tasks' entry, got keys "
            f"{list(data) if isinstance(data, dict) else type(data).__name__}"
        )
    return data
