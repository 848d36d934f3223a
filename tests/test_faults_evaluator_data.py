"""Fault injection, evaluator data: damaged SentEval task files are refused with one line naming the
file (and the line, where one is at fault) and what to do, never scored (issue 20: an empty
custrev.neg scored CR 100.00, a `nan` gold score gave `nan`, random bytes only warned).

Each case copies the synthetic fixture folder, damages one file, and checks the message."""

import shutil
import zlib

import numpy as np
import pytest

from hf_simskip.cli import main as cli_main
from hf_simskip.evaluation import evaluate, load_task


def hash_encode(sentences, dim=8):
    return np.stack([np.random.default_rng(zlib.crc32(s.encode())).normal(size=dim) for s in sentences])


@pytest.fixture()
def data(tmp_path, tiny_senteval):
    """A writable copy of the synthetic SentEval folder; ``data / rel`` is a file under downstream/."""
    root = tmp_path / "senteval"
    shutil.copytree(tiny_senteval, root)
    return root


def damage(root, rel: str, lineno: int | None = None, line: bytes | None = None, whole: bytes | None = None):
    """Replace line ``lineno`` (1-based) of downstream/rel with ``line``, or the whole file with ``whole``."""
    path = root / "downstream" / rel
    if whole is not None:
        path.write_bytes(whole)
    else:
        lines = path.read_bytes().split(b"\n")
        lines[lineno - 1] = line
        path.write_bytes(b"\n".join(lines))
    return path


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_empty_class_file_is_refused_not_scored_100(data):
    damage(data, "CR/custrev.neg", whole=b"")
    with pytest.raises(ValueError) as err:
        evaluate(hash_encode, tasks=["CR"], data_dir=data, mode="fast", show_progress_bar=False)
    message = one_line(err)
    assert "custrev.neg" in message and "class 0 has no rows" in message and "--tasks CR --force" in message


def test_nan_gold_score_names_file_and_line(data):
    path = damage(data, "STS/STSBenchmark/sts-test.csv", 3, b"g\tf\t2012\t3\tnan\ta man\ta woman")
    with pytest.raises(ValueError, match=rf"{path}:3: expected a finite gold score in \[0, 5\], got 'nan'") as err:
        evaluate(hash_encode, tasks=["STSB"], data_dir=data, mode="fast", show_progress_bar=False)
    one_line(err)


@pytest.mark.parametrize("name,rel", [("CR", "CR/custrev.pos"), ("SST2", "SST/binary/sentiment-train")])
def test_random_bytes_are_not_text(data, name, rel):
    path = damage(data, rel, whole=np.random.default_rng(0).bytes(4000))
    with pytest.raises(ValueError, match=rf"{path}: expected a text file .* got binary content") as err:
        load_task(name, data)
    one_line(err)


@pytest.mark.parametrize(
    "name,rel,lineno,line,match",
    [
        ("SST2", "SST/binary/sentiment-train", 2, b"a line without its label", "expected 2 tab-separated columns"),
        ("SST2", "SST/binary/sentiment-dev", 1, b"a good film\t2", r"expected a label in \[0, 1\], got '2'"),
        ("MRPC", "MRPC/msr_paraphrase_train.txt", 5, b"1\t11\t12\tonly one sentence", "expected 5 tab-separated"),
        ("MRPC", "MRPC/msr_paraphrase_test.txt", 2, b"yes\t1\t2\ta b\tc d", r"expected a label in \[0, 1\], got 'yes'"),
        ("TREC", "TREC/TREC_10.label", 4, b"DESC What is a colon ?", "expected 'COARSE:fine question', got no ':'"),
        (
            "TREC",
            "TREC/train_5500.label",
            7,
            b"HUM:ind",
            "expected .COARSE:fine question., got no question after the label",
        ),
        ("TREC", "TREC/train_5500.label", 1, b"WHO:ind Who ?", "expected a coarse label in"),
        ("STSB", "STS/STSBenchmark/sts-dev.csv", 2, b"g\tf\t2012\t2\thigh\ta b\tc d", "expected a numeric gold score"),
        (
            "STSB",
            "STS/STSBenchmark/sts-train.csv",
            6,
            b"g\tf\t2012\t2\t7.5\ta b\tc d",
            r"expected a finite gold score in \[0, 5\], got '7.5'",
        ),
        ("STSB", "STS/STSBenchmark/sts-test.csv", 1, b"g\tf\t2012\t1\t3.0\tno second", "expected 7 tab-separated"),
        (
            "SICKR",
            "SICK/SICK_trial.txt",
            3,
            b"9\ta b\tc d\tinf\tNEUTRAL",
            r"expected a finite gold score in \[1, 5\], got 'inf'",
        ),
        ("SICKR", "SICK/SICK_train.txt", 2, b"1\tonly a\t", "expected 4 tab-separated columns"),
    ],
)
def test_malformed_line_names_file_and_line(data, name, rel, lineno, line, match):
    path = damage(data, rel, lineno, line)
    with pytest.raises(ValueError, match=rf"^{path}:{lineno}: {match}") as err:
        load_task(name, data)
    assert "re-download" in one_line(err)


@pytest.mark.parametrize(
    "name,rel,lineno",
    [
        ("SST2", "SST/binary/sentiment-dev", 3),
        ("MRPC", "MRPC/msr_paraphrase_train.txt", 4),
        ("SICKR", "SICK/SICK_test_annotated.txt", 5),
    ],
)
def test_bad_utf8_names_file_and_line(data, name, rel, lineno):
    path = data / "downstream" / rel
    lines = path.read_bytes().split(b"\n")
    lines[lineno - 1] = lines[lineno - 1].replace(b" ", b" \xff\xfe ", 1)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=rf"^{path}:{lineno}: expected utf-8 text, got the byte 0xff") as err:
        load_task(name, data)
    one_line(err)


def test_class_missing_from_a_split(data):
    path = data / "downstream" / "TREC" / "TREC_10.label"
    path.write_text("".join(line for line in path.read_text().splitlines(True) if not line.startswith("ABBR")))
    with pytest.raises(ValueError, match=r"TREC .*TREC_10.label: class 0 has no rows in the test split"):
        load_task("TREC", data)
    sst = data / "downstream" / "SST" / "binary" / "sentiment-test"
    sst.write_text("".join(line for line in sst.read_text().splitlines(True) if line.rstrip().endswith("1")))
    with pytest.raises(ValueError, match=r"sentiment-test: class 0 has no rows in the test split"):
        load_task("SST2", data)


def test_too_few_rows_for_the_folds(data):
    """A truncated file keeps both classes but too few rows for 10 nested folds: refused before encoding."""
    path = data / "downstream" / "CR" / "custrev.neg"
    from hf_simskip.evaluation.tasks import check_folds, min_rows_per_class

    path.write_text("".join(path.read_text().splitlines(True)[:10]))  # 10 rows; 10 nested folds need 12
    assert min_rows_per_class("binary", 10) == 12 and min_rows_per_class("binary", 5) == 7
    assert min_rows_per_class("kfold", 10) == 10

    def never(sentences):
        raise AssertionError("encode must not run on damaged data")

    with pytest.raises(ValueError, match=r"custrev.neg: class 0 has 10 rows .* needs at least 12 per class") as err:
        evaluate(never, tasks=["CR"], data_dir=data, mode="full", show_progress_bar=False)
    one_line(err)
    check_folds(load_task("CR", data), 5)  # enough for fast mode
    trec = data / "downstream" / "TREC" / "train_5500.label"
    lines = trec.read_text().splitlines(True)
    trec.write_text(
        "".join([x for x in lines if not x.startswith("NUM")] + [x for x in lines if x.startswith("NUM")][:4])
    )
    with pytest.raises(ValueError, match=r"train_5500.label: class 5 has 4 rows .* 5-fold .* needs at least 5"):
        evaluate(never, tasks=["TREC"], data_dir=data, mode="fast", show_progress_bar=False)


def test_sts_test_split_needs_pairs_to_correlate(data):
    path = data / "downstream" / "STS" / "STSBenchmark" / "sts-test.csv"
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    path.write_text("".join("\t".join(r[:4] + ["2.5"] + r[5:]) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"sts-test.csv: expected at least 3 test pairs with differing gold scores"):
        load_task("STSB", data)


def test_constant_embeddings_give_no_nan_score(tiny_senteval):
    with pytest.raises(ValueError, match=r"STSB: undefined score\(s\) .*spearman"):
        evaluate(lambda s: np.ones((len(s), 4)), tasks=["STSB"], data_dir=tiny_senteval, show_progress_bar=False)


def test_cli_prints_one_line_for_damaged_data(data, tmp_path, capsys):
    from hf_simskip.evaluation import unique_sentences

    sents = unique_sentences([load_task("SST2", data)])
    np.savez(tmp_path / "e.npz", sentences=np.array(sents), embeddings=hash_encode(sents).astype(np.float32))
    damage(data, "SST/binary/sentiment-test", 2, b"no tab here")
    rc = cli_main(["eval", "--embeddings", str(tmp_path / "e.npz"), "--tasks", "SST2", "--data-dir", str(data)])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "sentiment-test:2: expected 2 tab-separated columns (sentence<TAB>label), got 1: 'no tab here'" in err


def test_valid_files_load_as_before(tiny_senteval):
    """The checks refuse nothing valid: the fixture's every task loads and has enough rows for 10 folds."""
    from hf_simskip.evaluation import TASKS
    from hf_simskip.evaluation.tasks import check_folds

    for name in TASKS:
        check_folds(load_task(name, tiny_senteval), 10)
