"""Tiny SimSkip models for the hub/card/CLI/export tests (the backbone comes from tiny_backbone.py)."""
from __future__ import annotations

import torch

SENTENCES = ["A gripping story with great actors.", "The plot was terrible and the film too long.",
             "What is the capital of France?", "hello world", "Refining embeddings with contrastive learning.",
             "The movie is good, not great.", "How far is the moon?"] * 2


def perturb(model, seed: int = 0):
    """Move the head away from the zero-init identity and BatchNorm defaults, so round trips test something."""
    gen = torch.Generator().manual_seed(seed)
    d = model.config.embedding_dim
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    model.train()
    model.head(torch.randn(8, d, generator=gen))
    model.fit_statistics(torch.randn(20, d, generator=gen) * 2 + 0.5)
    return model.eval()


def tiny_simskip(backbone: str, **config_kwargs):
    from hf_simskip import SimSkipModel

    config_kwargs.setdefault("max_length", 16)
    return perturb(SimSkipModel.from_encoder_pretrained(backbone, pooling="mean", **config_kwargs))


def head_only(dim: int = 128, **config_kwargs):
    from hf_simskip import SimSkipConfig, SimSkipModel

    return perturb(SimSkipModel(SimSkipConfig(embedding_dim=dim, **config_kwargs)))


def results_json(scale: float = 1.0, mode: str = "fast") -> dict:
    """A results dict in hf_simskip.evaluation.evaluate's format (numbers made up for the test)."""
    return {"tasks": {"CR": {"acc": 81.234 * scale, "n": 3775}, "MR": {"acc": 75.5 * scale},
                      "MRPC": {"acc": 70.12 * scale, "f1": 80.87 * scale},
                      "STSB": {"spearman": 78.9 * scale, "pearson": 77.7 * scale}},
            "protocol": {"mode": mode, "kfold": 5 if mode == "fast" else 10, "seed": 1111, "standardize": False},
            "avg": round(76.0 * scale, 2)}


# Preamble for a fresh `python -c` process in which hf_simskip must NOT be importable (the Hub /
# trust_remote_code path): a meta-path finder refuses it, and the process checks that it did.
WITHOUT_HF_SIMSKIP = '''
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
'''
