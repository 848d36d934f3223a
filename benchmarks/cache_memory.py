"""Peak memory and wall time of the embedding-cache build: the streaming cache against the old in-memory path.

    python benchmarks/cache_memory.py                                  # 10k, 100k, 1M sentences; 1 and 2 processes
    python benchmarks/cache_memory.py --sizes 10000 100000 --processes 1

A small random BERT (hidden 64, 4 layers, sequences of at most 16 tokens) and synthetic sentences keep a
million sentences to minutes on 2 cores; the head reads x and hidden states 0..3 (rows of 5 x 64, float16
on disk), as the layer-aware default does. Each (processes, size, path) runs in a fresh process (torchrun
for 2 processes, gloo on CPU) that generates its sentences, loads the backbone, builds the cache and
reports its peak RSS (``resource.getrusage``: the whole process, imports and the sentence list included)
and the build's wall time; with 2 processes the larger of the two is shown.

"stream" is ``hf_simskip.training.build_embedding_cache``. "old" is the code it replaced (issue 19), inlined
here: every row in one float32 tensor, copied once more to float16 for ``datasets``, gathered onto every
process (``gather_for_metrics``) with 2 processes, then written by the main process with ``save_to_disk``;
it runs only for sizes up to ``--old-max``. Target: peak RSS at 1M within 1.5x of 10k (stream).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, LAYERS, MAX_TOKENS = 64, 4, 16
WORDS = (
    "the a an is was good bad movie film great terrible plot actor story question what who where when why how "
    "embeddings refine contrastive learning sentence hello world this that and or not very quite long short "
    "funny sad music song book page reader writer city river mountain night day light dark cold warm"
).split()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_backbone(path: Path) -> None:
    """A random BERT (hidden 64, 4 layers) and a WordPiece tokenizer over WORDS and single characters."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(".,!?'-0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *("##" + c for c in chars)]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=64)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        intermediate_size=4 * HIDDEN,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def synthetic_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{i} " + " ".join(rng.choices(WORDS, k=rng.randint(3, 10))) for i in range(n)]  # unique, varied lengths


def old_build(model, sentences, cache_dir: Path, accelerator, batch_size: int, dtype: str = "float16") -> None:
    """The cache build before the streaming one (hf_simskip 0.2.0), inlined: see the module docstring."""
    import datasets
    import torch

    def embed(shard):
        with torch.no_grad():
            return model.map_sentences(shard, lambda x: x.float().cpu(), batch_size)  # (n, 1 + L, d) float32

    if accelerator.num_processes == 1:
        x = embed(sentences)
    else:
        with accelerator.split_between_processes(list(sentences), apply_padding=True) as shard:
            local = embed(shard)
        x = accelerator.gather_for_metrics(local.to(accelerator.device)).cpu()[: len(sentences)]
    if accelerator.is_main_process:
        row = tuple(x.shape[1:])
        feature = datasets.Array2D(shape=row, dtype=dtype)
        array = x.numpy().astype(dtype)
        table = datasets.Dataset.from_dict({"features": array}, features=datasets.Features({"features": feature}))
        table.save_to_disk(str(cache_dir / "old"))
    accelerator.wait_for_everyone()


def worker(args) -> None:
    import torch
    from accelerate import Accelerator

    from hf_simskip import SimSkipModel
    from hf_simskip.training import build_embedding_cache

    accelerator = Accelerator(cpu=True)
    sentences = synthetic_sentences(args.size)
    model = SimSkipModel.from_encoder_pretrained(
        args.backbone, pooling="mean", max_seq_length=MAX_TOKENS, layers=list(range(LAYERS))
    )
    before = peak_rss_mib()
    start = time.perf_counter()
    if args.path == "stream":
        table, _ = build_embedding_cache(model, sentences, args.cache_dir, accelerator, batch_size=args.batch_size)
        rows = len(table)
    else:
        old_build(model, sentences, Path(args.cache_dir), accelerator, args.batch_size)
        rows = len(sentences)
    seconds = time.perf_counter() - start
    record = {
        "rank": accelerator.process_index,
        "rows": rows,
        "rss_before_mib": before,
        "peak_rss_mib": peak_rss_mib(),
        "seconds": seconds,
        "threads": torch.get_num_threads(),
    }
    Path(args.out, f"rank{accelerator.process_index}.json").write_text(json.dumps(record))


def run_one(script: Path, backbone: Path, size: int, path: str, processes: int, batch_size: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        worker_args = ["--worker", "--size", str(size), "--path", path, "--backbone", str(backbone)]
        worker_args += ["--cache-dir", str(Path(tmp) / "cache"), "--out", tmp, "--batch-size", str(batch_size)]
        env = {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        env["OMP_NUM_THREADS"] = str(threads)
        if processes == 1:
            cmd = [sys.executable, str(script), *worker_args]
        else:
            launch = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", "29561"]
            cmd = [sys.executable, *launch, str(script), *worker_args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{path} {size} x{processes} failed:\n{proc.stderr[-3000:]}")
        records = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("rank*.json"))]
    return {
        "peak_rss_mib": max(r["peak_rss_mib"] for r in records),
        "rss_before_mib": max(r["rss_before_mib"] for r in records),
        "seconds": max(r["seconds"] for r in records),
        "threads": records[0]["threads"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--old-max", type=int, default=1_000_000, help="largest size for the old path")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (1: steady on a shared CPU)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=["stream", "old"], help=argparse.SUPPRESS)
    parser.add_argument("--backbone", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import torch

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; backbone: "
        f"random BERT hidden {HIDDEN}, {LAYERS} layers, <= {MAX_TOKENS} tokens, rows (1 + {LAYERS}, {HIDDEN}); "
        f"batch {args.batch_size}, {args.threads} thread(s) per process",
        flush=True,
    )
    print("| processes | sentences | path | peak RSS (MiB) | x stream at smallest | RSS before build | build s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        backbone = Path(tmp) / "backbone"
        make_backbone(backbone)
        for processes in args.processes:
            base = None
            for size in args.sizes:
                for path in ("stream", "old"):
                    if path == "old" and size > args.old_max:
                        continue
                    got = run_one(
                        Path(__file__).resolve(), backbone, size, path, processes, args.batch_size, args.threads
                    )
                    base = base or got["peak_rss_mib"]
                    print(
                        f"| {processes} | {size:,} | {path} | {got['peak_rss_mib']:,.0f} | "
                        f"{got['peak_rss_mib'] / base:.2f} | {got['rss_before_mib']:,.0f} | {got['seconds']:.1f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
