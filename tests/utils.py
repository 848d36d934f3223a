"""Tiny offline models and corpora for the tests (one module): a random BERT backbone (hidden 32,
2 layers) with a real WordPiece tokenizer, SimSkip models built on it or head-only, sentences, and the
preamble of a process in which hf_simskip cannot be imported."""

from __future__ import annotations

import random
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "recipes" / "train_simcse_skip.py"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
WORDS = (
    "the a an is was good bad movie film great terrible plot actor story question what who where "
    "when why how embeddings refine contrastive learning sentence hello world this that and or not"
).split()
SENTENCES = [
    "A gripping story with great actors.",
    "The plot was terrible and the film too long.",
    "What is the capital of France?",
    "hello world",
    "Refining embeddings with contrastive learning.",
    "The movie is good, not great.",
    "How far is the moon?",
] * 2


def make_tiny_backbone(path, hidden: int = 32, layers: int = 2, seed: int = 0) -> str:
    """A random BERT (hidden 32, 2 layers) + WordPiece tokenizer saved to ``path``. It is not a
    sentence-transformers folder, so pass ``pooling="mean"`` (``--pooling mean``)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(".,!?'-0123456789")
    vocab = specials + list(WORDS) + chars + ["##" + c for c in chars]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=64)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def tiny_sentences(n: int = 64, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = set()
    while len(out) < n:
        out.add(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))))
    return sorted(out)


def write_corpus(path, n: int = 64, seed: int = 0) -> str:
    Path(path).write_text("\n".join(tiny_sentences(n, seed)) + "\n", encoding="utf-8")
    return str(path)


def perturb(model, seed: int = 0):
    """Move the head away from the zero-init identity and BatchNorm defaults, so round trips test something."""
    gen = torch.Generator().manual_seed(seed)
    shape = model.head.input_shape  # (d,), or (1 + layers, d) for a layer-aware head
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    model.train()
    model.head(torch.randn(8, *shape, generator=gen))
    model.fit_statistics(torch.randn(20, *shape, generator=gen) * 2 + 0.5)
    return model.eval()


def tiny_simskip(backbone: str, **config_kwargs):
    from hf_simskip import SimSkipModel

    config_kwargs.setdefault("max_seq_length", 16)
    return perturb(SimSkipModel.from_encoder_pretrained(backbone, pooling="mean", **config_kwargs))


def head_only(dim: int = 128, **config_kwargs):
    from hf_simskip import SimSkipConfig, SimSkipModel

    return perturb(SimSkipModel(SimSkipConfig(embedding_dim=dim, **config_kwargs)))


def results_json(scale: float = 1.0, mode: str = "fast") -> dict:
    """A results dict in hf_simskip.evaluation.evaluate's format (numbers made up for the test)."""
    return {
        "tasks": {
            "CR": {"acc": 81.234 * scale, "n": 3775},
            "MR": {"acc": 75.5 * scale},
            "MRPC": {"acc": 70.12 * scale, "f1": 80.87 * scale},
            "STSB": {"spearman": 78.9 * scale, "pearson": 77.7 * scale},
        },
        "protocol": {"mode": mode, "kfold": 5 if mode == "fast" else 10, "seed": 1111, "standardize": False},
        "avg": round(76.0 * scale, 2),
    }


# Preamble for a fresh `python -c` process in which hf_simskip must NOT be importable (the Hub /
# trust_remote_code path): a meta-path finder refuses it, and the process checks that it did.
# the recipe as a script (`python -c KILLED_AFTER ARGS`, recipes/ on PYTHONPATH), its train_head wrapped so that every
# process SIGKILLs itself right after step $KILL_AFTER_STEP
KILLED_AFTER = """
import os, signal, sys
import train_simcse_skip as recipe
from hf_simskip.training import train_head

def kill_after(step, state):
    if step == int(os.environ["KILL_AFTER_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)

recipe.train_head = lambda *args, **kwargs: train_head(*args, step_callback=kill_after, **kwargs)
sys.exit(recipe.run_script(sys.argv[1:]))
"""

WITHOUT_HF_SIMSKIP = """
import sys
class _BlockHfSimskip:
    def find_spec(self, name, path=None, target=None):
        if name == "hf_simskip" or name.startswith("hf_simskip."):
            raise ImportError("hf_simskip is blocked in this process")
sys.meta_path.insert(0, _BlockHfSimskip())
try:
    import hf_simskip
    sys.exit("hf_simskip was importable")
except ImportError:
    pass
"""
