"""training/cache.py: the embedding cache (raw, reused, atomic) and dropout views."""

import os
from pathlib import Path

import pytest
import torch

from hf_simskip import SimSkipModel
from hf_simskip.training import build_embedding_cache, embed_sentences
from hf_simskip.training.cache import FeatureTable

from utils import tiny_sentences


def test_embedding_cache_is_raw_reused_and_atomic(tiny_backbone, tmp_path, caplog):
    model = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", layers=None)
    sentences = tiny_sentences(20)
    x, info = build_embedding_cache(model, sentences, tmp_path, batch_size=8, dtype="float32")
    assert x.shape == (20, 32) and not info["reused"] and isinstance(x, FeatureTable)
    # raw backbone embeddings, in the input order (zero-init head: refined == raw)
    torch.testing.assert_close(x[:], model.encode(sentences, convert_to_numpy=False), atol=1e-5, rtol=1e-5)
    assert [p.name for p in Path(tmp_path).iterdir()] == [Path(info["path"]).name]  # no tmp left behind
    model.map_sentences = None  # a second run with the same key must not encode
    x2, info2 = build_embedding_cache(model, sentences, tmp_path, batch_size=8, dtype="float32")
    assert info2["reused"] and info2["key"] == info["key"]
    torch.testing.assert_close(x[:], x2[:])
    # a different corpus or pooling is a different key
    _, info3 = build_embedding_cache(
        SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="max", layers=None), sentences, tmp_path
    )
    assert info3["key"] != info["key"] and len(os.listdir(tmp_path)) == 2
    with pytest.raises(ValueError, match="empty"):
        build_embedding_cache(model, [], tmp_path)


def test_dropout_views_differ_from_the_eval_embedding_and_are_seeded(tiny_backbone):
    model = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", layers=None)
    sentences = tiny_sentences(12)
    clean = embed_sentences(model, sentences)
    a = embed_sentences(model, sentences, dropout=True, seed=3)
    b = embed_sentences(model, sentences, dropout=True, seed=3)
    c = embed_sentences(model, sentences, dropout=True, seed=4)
    torch.testing.assert_close(a, b)  # the same seed: the same view
    assert not torch.allclose(a, clean, atol=1e-4) and not torch.allclose(a, c, atol=1e-4)
    # the backbone is back in eval mode: plain encoding is deterministic and unchanged
    assert not model.encoder.training
    torch.testing.assert_close(embed_sentences(model, sentences), clean)
    with pytest.raises(ValueError, match="dropout views need a backbone"):
        head_only = SimSkipModel(model.config.__class__(embedding_dim=32))
        head_only.tokenizer = model.tokenizer
        embed_sentences(head_only, sentences, dropout=True)


def test_a_layer_aware_cache_holds_every_layer_from_one_pass_in_float16(tiny_backbone, tmp_path):
    """The stacks (x, then the chosen pooled hidden layers) are stored in float16, memory-mapped, and equal
    what the model's own loop computes, to float16's precision; the layers are part of the key."""
    model = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", layers=[0, 1])
    sentences = tiny_sentences(40)
    calls = []
    forward = model.encoder.forward
    model.encoder.forward = lambda *a, **k: calls.append(k.get("output_hidden_states")) or forward(*a, **k)
    table, info = build_embedding_cache(model, sentences, tmp_path, batch_size=16)
    assert calls == [True, True, True]  # one backbone pass per batch gives x and every layer
    assert table.shape == (40, 3, 32) and table[0:1].dtype == torch.float32
    stored = table.dataset.features["features"]
    assert stored.dtype == "float16" and table.dataset.cache_files  # on disk, memory-mapped
    exact = embed_sentences(model, sentences)
    torch.testing.assert_close(table[:], exact, atol=2e-3, rtol=1e-3)  # float16 rounding only
    torch.testing.assert_close(table[[5, 3]], table[:][[5, 3]])
    other = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", layers=[1])
    _, info2 = build_embedding_cache(other, sentences, tmp_path, batch_size=16)
    assert info2["key"] != info["key"]
