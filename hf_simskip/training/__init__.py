"""Training the SimSkip head: the loop, its arguments, checkpoints, the corpus, the embedding cache,
the dev signal and the optional stage 0 (SimCSE fine-tuning of the backbone)."""

from .arguments import HeadTrainingArguments
from .cache import (
    DEFAULT_CACHE_DIR,
    build_embedding_cache,
    cache_key,
    clear_caches,
    default_cache_dir,
    embed_sentences,
    list_caches,
)
from .corpus import corpus_fingerprint, load_corpus
from .dev import DevScore, DevSignal, LabeledDev, dev_pairs, read_labeled_dev, stsb_dev_fn, stsb_dev_pairs
from .loop import EpochPermutation, train_head

__all__ = [
    "HeadTrainingArguments",
    "train_head",
    "EpochPermutation",
    "load_corpus",
    "corpus_fingerprint",
    "build_embedding_cache",
    "embed_sentences",
    "cache_key",
    "DEFAULT_CACHE_DIR",
    "default_cache_dir",
    "list_caches",
    "clear_caches",
    "stsb_dev_pairs",
    "dev_pairs",
    "DevSignal",
    "DevScore",
    "stsb_dev_fn",
    "LabeledDev",
    "read_labeled_dev",
]
