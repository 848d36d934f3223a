"""hf_simskip.data: the default corpus (train splits only), its record, and the embedding cache."""
import os
from pathlib import Path

import pytest
import torch
from helpers_tiny import tiny_sentences

from hf_simskip import SimSkipModel
from hf_simskip.data import build_embedding_cache, corpus_fingerprint, load_corpus, load_stsb_dev
from hf_simskip.paths import resolve_data_dir

try:
    DATA = resolve_data_dir()
except FileNotFoundError:
    DATA = None
needs_data = pytest.mark.skipif(DATA is None, reason="no SentEval data folder (../shared/data/senteval)")


@needs_data
def test_default_corpus_uses_train_splits_only():
    sentences, record = load_corpus(DATA)
    assert set(record["sources"]) == {"unlabeled/wiki1m_head12k.txt", "SST2:train", "TREC:train", "MRPC:train"}
    assert record["sources"]["SST2:train"] == 67349 and record["sources"]["TREC:train"] == 5452
    assert record["sources"]["MRPC:train"] == 2 * 4076  # both sentences of each training pair
    assert record["unique"] == len(sentences) == len(set(sentences)) and sentences == sorted(sentences)
    assert record["fingerprint_sha256"] == corpus_fingerprint(sentences)
    assert not record["transductive_kfold_tasks"]
    # no dev/test split is read: TREC's test questions are absent unless also in train
    trec_test = {" ".join(line.split(":", 1)[1].split(" ", 1)[1].split()) for line in
                 (DATA / "downstream/TREC/TREC_10.label").read_text(encoding="latin-1").splitlines()}
    trec_train = {" ".join(line.split(":", 1)[1].split(" ", 1)[1].split()) for line in
                  (DATA / "downstream/TREC/train_5500.label").read_text(encoding="latin-1").splitlines()}
    assert not (trec_test - trec_train) & set(sentences)


@needs_data
def test_transductive_kfold_tasks_is_opt_in_and_recorded(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("one sentence\nanother one\n", encoding="utf-8")
    _, plain = load_corpus(DATA, train_file=str(f))
    assert list(plain["sources"]) == [f"file:{f}"]
    sentences, record = load_corpus(DATA, train_file=str(f), transductive_kfold_tasks=True)
    assert {"CR", "MPQA", "MR", "SUBJ"} == {k.split(":")[0] for k in record["sources"] if not k.startswith("file:")}
    assert record["transductive_kfold_tasks"] and record["unique"] > 20000


def test_empty_corpus_and_missing_folder_are_clear_errors(tmp_path, monkeypatch):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="corpus is empty"):
        load_corpus(train_file=str(empty))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(train_file=str(tmp_path / "nope.txt"))
    with pytest.raises(FileNotFoundError, match="data folder"):
        load_corpus(data_dir=tmp_path / "no_such_folder")
    monkeypatch.setenv("HF_SIMSKIP_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="HF_SIMSKIP_DATA"):
        load_corpus()


def test_dataset_corpus_from_disk(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["b b", "a a", "", "b b"]}).save_to_disk(str(tmp_path / "ds"))
    sentences, record = load_corpus(dataset_name=str(tmp_path / "ds"))
    assert sentences == ["a a", "b b"] and record["total"] == 3 and record["unique"] == 2
    with pytest.raises(ValueError, match="text column"):
        load_corpus(dataset_name=str(tmp_path / "ds"), text_column="sentence")


def test_fingerprint_ignores_order_and_duplicates():
    assert corpus_fingerprint(["b", "a", "a"]) == corpus_fingerprint(["a", "b"]) != corpus_fingerprint(["a", "c"])


@needs_data
def test_stsb_dev_reader():
    a, b, gold = load_stsb_dev(DATA)
    assert len(a) == len(b) == len(gold) == 1500 and 0.0 <= min(gold) <= max(gold) <= 5.0


def test_embedding_cache_is_raw_reused_and_atomic(tiny_backbone, tmp_path, caplog):
    model = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean")
    sentences = tiny_sentences(20)
    x, info = build_embedding_cache(model, sentences, tmp_path, batch_size=8)
    assert x.shape == (20, 32) and not info["reused"]
    # raw backbone embeddings, in the input order (zero-init head: refined == raw)
    torch.testing.assert_close(x, model.encode(sentences, convert_to_numpy=False), atol=1e-5, rtol=1e-5)
    assert [p.name for p in Path(tmp_path).iterdir()] == [Path(info["path"]).name]  # no tmp left behind
    model.embed = None  # a second run with the same key must not encode
    x2, info2 = build_embedding_cache(model, sentences, tmp_path, batch_size=8)
    assert info2["reused"] and info2["key"] == info["key"]
    torch.testing.assert_close(x, x2)
    # a different corpus or pooling is a different key
    _, info3 = build_embedding_cache(SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="max"),
                                     sentences, tmp_path)
    assert info3["key"] != info["key"] and len(os.listdir(tmp_path)) == 2
    with pytest.raises(ValueError, match="empty"):
        build_embedding_cache(model, [], tmp_path)


def test_dropout_views_differ_from_the_eval_embedding_and_are_seeded(tiny_backbone):
    from hf_simskip.data import embed_sentences

    model = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean")
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
