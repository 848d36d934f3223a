"""Time SentEval's CPU way against hf_simskip's evaluator on the same cached embeddings.

    python benchmarks/eval_speed.py --embeddings .cache/senteval_minilm.npz [--mode full]

"SentEval way": evaluate(..., probe="sklearn"), one sklearn LogisticRegression per fold and grid value
(senteval/tools/validation.py with usepytorch=False, re-stated in hf_simskip.evaluation.reference).
"hf_simskip": evaluate() with the default batched probe. Both read the same loaders and the same
embeddings; encoding is not timed (the lookup is). Prints both times, the ratio, and each task's
accuracy difference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hf_simskip.evaluation import TRANSFER_TASKS, evaluate, lookup_encoder
from hf_simskip.paths import resolve_data_dir

REFERENCE = {"CR": 82.91, "MPQA": 87.50, "MR": 76.74, "SUBJ": 92.02, "TREC": 90.60, "SST2": 81.55, "MRPC": 71.59}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--embeddings", default=str(Path(__file__).resolve().parent.parent / ".cache" / "senteval_minilm.npz")
    )
    parser.add_argument("--tasks", nargs="+", default=TRANSFER_TASKS)
    parser.add_argument("--mode", choices=["fast", "full"], default="full")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-reference", action="store_true", help="time only hf_simskip")
    parser.add_argument(
        "--reference-tasks",
        nargs="+",
        default=None,
        help="run the slow sklearn way on these tasks only (ratio over them)",
    )
    parser.add_argument("--output", default=None, help="write both results as JSON")
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data_dir)
    encode = lookup_encoder(args.embeddings)

    t0 = time.perf_counter()
    ours = evaluate(encode, tasks=args.tasks, data_dir=data_dir, mode=args.mode, device=args.device)
    t_ours = time.perf_counter() - t0
    for name in args.tasks:
        print(
            f"hf_simskip {name}: acc {ours['tasks'][name]['acc']:.2f} in {ours['tasks'][name]['seconds']:.1f} s",
            flush=True,
        )
    ref, ref_protocol, t_ref = {}, {}, float("nan")
    if not args.skip_reference:
        t0 = time.perf_counter()
        sk = evaluate(
            encode, tasks=args.reference_tasks or args.tasks, data_dir=data_dir, mode=args.mode, probe="sklearn"
        )
        t_ref = time.perf_counter() - t0
        ref, ref_protocol = sk["tasks"], sk["protocol"]
        for name, r in ref.items():
            print(f"sklearn {name}: acc {r['acc']:.2f} in {r['seconds']:.1f} s", flush=True)

    print(f"{'task':6} {'hf_simskip':>10} {'sklearn':>8} {'diff':>6} {'SentEval ref':>12} {'t_ours':>7} {'t_sk':>7}")
    for name in args.tasks:
        a = ours["tasks"][name]["acc"]
        b = ref.get(name, {}).get("acc", float("nan"))
        print(
            f"{name:6} {a:10.2f} {b:8.2f} {a - b:+6.2f} {REFERENCE.get(name, float('nan')):12.2f} "
            f"{ours['tasks'][name]['seconds']:7.1f} {ref.get(name, {}).get('seconds', float('nan')):7.1f}"
        )
    # compare like with like: the per-task probe times of both sides on the tasks the sklearn way ran
    # (each evaluate call also loads, looks up and fingerprints once; that is in the totals, not the ratio)
    t_ours_same = sum(ours["tasks"][n]["seconds"] for n in ref) if ref else t_ours
    t_ref_same = sum(r["seconds"] for r in ref.values()) if ref else float("nan")
    print(
        f"hf_simskip evaluator: {t_ours:.1f} s all tasks ({t_ours_same:.1f} s on {list(ref) or args.tasks})   "
        f"SentEval way (sklearn): {t_ref:.1f} s ({t_ref_same:.1f} s on the same)   "
        f"ratio: {t_ref_same / t_ours_same:.1f}x   "
        f"probe converged: {ours['protocol']['probe']['converged']}"
    )
    if ref_protocol:
        print(
            f"sklearn lbfgs ConvergenceWarnings (SentEval's own early stops): {ref_protocol['probe']['convergence_warnings']}"
        )
    print(
        f"max |diff| vs sklearn: {max((abs(ours['tasks'][n]['acc'] - ref[n]['acc']) for n in ref), default=np.nan):.2f}"
    )
    if args.output:
        with open(args.output, "w") as f:
            json.dump(
                {
                    "hf_simskip": ours,
                    "sklearn": {"tasks": ref, "protocol": ref_protocol},
                    "seconds": {"hf_simskip": t_ours, "sklearn": t_ref},
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
