"""training/corpus.py: the default corpus (train splits only), its record, other sources; and the dev pairs."""

import pytest

from hf_simskip.training import corpus_fingerprint, load_corpus, stsb_dev_pairs
from hf_simskip.training.corpus import EMBEDDED_CORPUS


def test_default_corpus_uses_train_splits_only(senteval_data):
    DATA = senteval_data
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


def test_transductive_kfold_tasks_is_opt_in_and_recorded(tmp_path, tiny_senteval):
    DATA = tiny_senteval
    f = tmp_path / "c.txt"
    f.write_text("one sentence\nanother one\n", encoding="utf-8")
    _, plain = load_corpus(DATA, train_file=str(f))
    assert list(plain["sources"]) == [f"file:{f}"]
    sentences, record = load_corpus(DATA, train_file=str(f), transductive_kfold_tasks=True)
    assert {"CR", "MPQA", "MR", "SUBJ"} == {k.split(":")[0] for k in record["sources"] if not k.startswith("file:")}
    assert record["transductive_kfold_tasks"] and record["unique"] > 2 + 100  # 4 tasks x 32 rows


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


def test_stsb_dev_pairs_are_the_evaluation_strings(senteval_data, tiny_senteval):
    a, b, gold = stsb_dev_pairs(senteval_data)
    assert len(a) == len(b) == len(gold) == 1500 and 0.0 <= min(gold) <= max(gold) <= 5.0
    assert stsb_dev_pairs(senteval_data, max_pairs=10)[0] == a[:10]
    assert len(stsb_dev_pairs(tiny_senteval)[0]) == 12


def test_without_any_data_folder_the_embedded_corpus_is_used(tmp_path, monkeypatch, caplog):
    """No data_dir, no $HF_SIMSKIP_DATA, nothing at the default places: the corpus shipped with the package."""
    monkeypatch.delenv("HF_SIMSKIP_DATA", raising=False)
    monkeypatch.setattr("hf_simskip.paths.default_data_candidates", lambda: [tmp_path / "nowhere"])
    sentences, record = load_corpus()
    assert list(record["sources"]) == ["embedded:default_corpus.txt"] and "Apache-2.0" in record["license"]
    assert record["unique"] == len(sentences) == len(set(EMBEDDED_CORPUS.read_text().splitlines())) >= 1900
    assert "training on the corpus shipped with hf_simskip" in caplog.text
    monkeypatch.setenv("HF_SIMSKIP_DATA", str(tmp_path / "missing"))  # a named folder must exist
    with pytest.raises(FileNotFoundError, match="HF_SIMSKIP_DATA"):
        load_corpus()


def test_text_files_that_are_not_utf8_text_are_named(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.txt' is not UTF-8 \(byte 0xe9 at offset 3\)"):
        load_corpus(train_file=str(latin))
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\x00\x01\x02abc")
    with pytest.raises(ValueError, match="weights.bin' holds a NUL byte at offset 0"):
        load_corpus(train_file=str(binary))
