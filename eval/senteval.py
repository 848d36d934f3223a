"""SentEval-protocol evaluation of a sentence encoder (the same as ``hf-simskip eval``).

    python eval/senteval.py --model minilm --mode fast --output results/minilm.json
    python eval/senteval.py --model path/to/saved_simskip --tasks CR MR TREC
    python eval/senteval.py --model sentence-transformers/all-MiniLM-L6-v2   # needs a network or cache
    python eval/senteval.py --embeddings .cache/senteval_minilm.npz          # precomputed vectors

--model accepts a saved hf_simskip folder (config.json with model_type "simskip"), a
sentence-transformers folder or name, or the word ``minilm`` (the packaged all-MiniLM-L6-v2).
"""

from __future__ import annotations

import sys

from hf_simskip.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
