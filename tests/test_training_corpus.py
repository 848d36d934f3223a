"""training/corpus.py: the default corpus (train splits only), its record, other sources; and the dev pairs."""

import pytest

from hf_simskip.paths import resolve_data_dir
from hf_simskip.training import corpus_fingerprint, load_corpus, stsb_dev_pairs

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
    trec_test = {
        " ".join(line.split(":", 1)[1].split(" ", 1)[1].split())
        for line in (DATA / "downstream/TREC/TREC_10.label").read_text(encoding="latin-1").splitlines()
    }
    trec_train = {
        " ".join(line.split(":", 1)[1].split(" ", 1)[1].split())
        for line in (DATA / "downstream/TREC/train_5500.label").read_text(encoding="latin-1").splitlines()
    }
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
def test_stsb_dev_pairs_are_the_evaluation_strings():
    a, b, gold = stsb_dev_pairs(DATA)
    assert len(a) == len(b) == len(gold) == 1500 and 0.0 <= min(gold) <= max(gold) <= 5.0
    assert stsb_dev_pairs(DATA, max_pairs=10)[0] == a[:10]
