"""Tiny offline fixtures for the recipe/training tests: a random BERT backbone and a small corpus.

make_tiny_backbone(path) -> str: a random BERT (hidden 32, 2 layers) + WordPiece tokenizer saved to
``path``; it is not a sentence-transformers folder, so pass ``pooling="mean"`` (``--pooling mean``).
"""
from __future__ import annotations

import random
from pathlib import Path

from tiny_backbone import WORDS
from tiny_backbone import make_tiny_backbone as _make

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "recipes" / "train_simcse_skip.py"


def make_tiny_backbone(path, hidden: int = 32, layers: int = 2, seed: int = 0) -> str:
    """Random BERT, hidden 32, 2 layers, with a tokenizer; use it with pooling="mean"."""
    return _make(path, hidden=hidden, layers=layers, seed=seed)


def tiny_sentences(n: int = 64, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = set()
    while len(out) < n:
        out.add(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))))
    return sorted(out)


def write_corpus(path, n: int = 64, seed: int = 0) -> str:
    Path(path).write_text("\n".join(tiny_sentences(n, seed)) + "\n", encoding="utf-8")
    return str(path)
