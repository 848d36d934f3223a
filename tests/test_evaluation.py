"""SentEval-protocol evaluation: loaders on the real files, protocol parity with the sklearn
re-statement of SentEval on small slices, synthetic data, JSON schema, bad input."""

import json
import zlib

import numpy as np
import pytest

from hf_simskip.evaluation import TASKS, evaluate, format_table, load_task, lookup_encoder, unique_sentences
from hf_simskip.evaluation.tasks import TASK_FILES, as_sentence


def hash_encode(sentences, dim=16):
    """Deterministic pseudo-embeddings: the same sentence always gets the same vector."""
    return np.stack([np.random.default_rng(zlib.crc32(s.encode())).normal(size=dim) for s in sentences])


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, senteval_data):
    """A SentEval-layout folder with the first lines of every real file (headers kept)."""
    root = tmp_path_factory.mktemp("senteval_small")
    for files in TASK_FILES.values():
        for rel in files:
            src, dst = senteval_data / "downstream" / rel, root / "downstream" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            lines = src.read_bytes().split(b"\n")
            dst.write_bytes(b"\n".join(lines[:301]) + b"\n")
    return root


# SentEval splits binary files with str.splitlines(), which also breaks on latin-1 \x85 (NEL): MR and
# SUBJ yield 23 and 21 more "sentences" than `wc -l` counts. The original does the same, so we keep it.
EXPECTED = {
    "CR": {"all": 2407 + 1368},
    "MPQA": {"all": 3312 + 7294},
    "MR": {"all": 5331 + 5331 + 23},
    "SUBJ": {"all": 5000 + 5000 + 21},
    "TREC": {"train": 5452, "test": 500},
    "SST2": {"train": 67349, "dev": 872, "test": 1821},
    "MRPC": {"train": 4076, "test": 1725},
    "STSB": {"train": 5749, "dev": 1500, "test": 1379},
    "SICKR": {"train": 4500, "dev": 500, "test": 4927},
}


@pytest.mark.parametrize("name", TASKS)
def test_loaders_row_counts(name, senteval_data):
    task = load_task(name, senteval_data)
    assert {k: len(v) for k, v in task.splits.items()} == EXPECTED[name]
    for split in task.splits.values():
        sents = split.all_sentences()
        assert all(isinstance(s, str) and s and s == s.strip() and "  " not in s for s in sents)


@pytest.mark.parametrize("name", TASKS)
def test_loaders_read_every_format_of_the_tiny_fixture(name, tiny_senteval):
    """The committed synthetic folder: every file and format, balanced labels (runs without the data)."""
    task = load_task(name, tiny_senteval)
    assert all(len(split) >= 12 for split in task.splits.values())
    for split in task.splits.values():
        assert all(isinstance(s, str) and s and s == s.strip() for s in split.all_sentences())
    if task.kind != "sts":
        labels = np.concatenate([split.labels for split in task.splits.values()])
        assert len(set(np.bincount(labels.astype(int)).tolist())) == 1  # balanced classes


def test_loader_details(senteval_data):
    DATA = senteval_data
    trec = load_task("TREC", DATA)
    assert set(trec.splits["train"].labels) == set(range(6))
    assert "How did serfdom develop in and then leave Russia ?" in trec.splits["train"].sentences
    mrpc = load_task("MRPC", DATA)
    assert mrpc.splits["train"].labels.sum() == 2753  # 2753 paraphrases of 4076 in MRPC train
    sst = load_task("SST2", DATA)
    assert "it 's a charming and often affecting journey ." in sst.splits["dev"].sentences
    cr = load_task("CR", DATA)  # SentEval order: sorted by (number of tokens, label)
    lengths = [len(s.split()) for s in cr.splits["all"].sentences]
    assert lengths == sorted(lengths)
    assert as_sentence([]) == "." and as_sentence(["a", "b"]) == "a b"


def test_missing_file_and_unknown_task(tmp_path, tiny_senteval):
    with pytest.raises(FileNotFoundError, match=r"custrev.pos.*hf_simskip.evaluation.download"):
        load_task("CR", tmp_path)
    with pytest.raises(ValueError, match=r"unknown task.*'XX'.*valid names.*CR"):
        evaluate(hash_encode, tasks=["CR", "XX"], data_dir=tiny_senteval)


def test_encode_once_sorted_unique(tiny_senteval):
    small_data = tiny_senteval
    calls = []

    def enc(sentences):
        calls.append(list(sentences))
        return hash_encode(sentences)

    evaluate(enc, tasks=["CR", "MR", "STSB"], data_dir=small_data, mode="fast", show_progress_bar=False)
    assert len(calls) == 1
    assert calls[0] == sorted(set(calls[0]))
    tasks = [load_task(t, small_data) for t in ["CR", "MR", "STSB"]]
    assert calls[0] == unique_sentences(tasks)


@pytest.mark.parametrize(
    "bad, err, match",
    [
        (lambda s: hash_encode(s)[:-1], ValueError, "rows for"),
        (lambda s: np.full((len(s), 4), np.nan), ValueError, "NaN"),
        (lambda s: hash_encode(s)[:, 0], ValueError, "2-D"),
        (lambda s: "nope", TypeError, "numeric"),
    ],
)
def test_bad_encode(tiny_senteval, bad, err, match):
    with pytest.raises(err, match=match):
        evaluate(bad, tasks=["CR"], data_dir=tiny_senteval, mode="fast", show_progress_bar=False)


def test_bad_mode_and_encode_type(tiny_senteval):
    with pytest.raises(ValueError, match="mode"):
        evaluate(hash_encode, tasks=["CR"], data_dir=tiny_senteval, mode="quick")
    with pytest.raises(TypeError, match="callable"):
        evaluate("not callable", tasks=["CR"], data_dir=tiny_senteval)


@pytest.mark.parametrize("names", [["CR", "MRPC"], pytest.param(["TREC", "SST2"], marks=pytest.mark.slow)])
def test_protocol_matches_sklearn_senteval_on_slices(small_data, names):
    """The batched probe against the sklearn probe (SentEval's own solver, hf_simskip.evaluation.reference)."""
    res = evaluate(hash_encode, tasks=names, data_dir=small_data, mode="fast", show_progress_bar=False)
    sk = evaluate(hash_encode, tasks=names, data_dir=small_data, mode="fast", probe="sklearn", show_progress_bar=False)
    for name in names:
        ref = sk["tasks"][name]
        assert abs(res["tasks"][name]["acc"] - ref["acc"]) <= 0.5, (name, res["tasks"][name], ref)
        if name == "MRPC":
            assert abs(res["tasks"][name]["f1"] - ref["f1"]) <= 1.0
    assert res["protocol"]["probe"]["converged"]
    assert (res["protocol"]["probe"]["name"], sk["protocol"]["probe"]["name"]) == ("batched", "sklearn")


def test_synthetic_separable_near_100(small_data):
    names = ["CR", "TREC"]
    table = {}
    for name in names:
        task = load_task(name, small_data)
        for split in task.splits.values():
            for s, y in zip(split.sentences, split.labels):
                v = 0.05 * hash_encode([s], dim=8)[0]
                v[int(y)] += 1.0
                table.setdefault(s, v)
    enc = lookup_encoder((list(table), np.stack(list(table.values()))))
    res = evaluate(enc, tasks=names, data_dir=small_data, mode="fast", show_progress_bar=False)
    for name in names:
        assert res["tasks"][name]["acc"] >= 97.0, (name, res["tasks"][name])


def test_json_schema_and_table(tiny_senteval, tmp_path):
    res = evaluate(
        hash_encode, tasks=["CR", "MRPC", "STSB", "SICKR"], data_dir=tiny_senteval, mode="fast", show_progress_bar=False
    )
    res = json.loads(json.dumps(res))  # JSON-serialisable
    assert set(res) == {"tasks", "protocol", "avg"}
    assert {"acc", "n", "ndev", "ntest"} <= set(res["tasks"]["CR"])
    assert {"acc", "f1", "ntrain", "ntest"} <= set(res["tasks"]["MRPC"])
    assert {"spearman", "pearson", "ntest"} <= set(res["tasks"]["STSB"]) and "acc" not in res["tasks"]["STSB"]
    assert res["avg"] == round((res["tasks"]["CR"]["acc"] + res["tasks"]["MRPC"]["acc"]) / 2, 2)
    p = res["protocol"]
    assert p["mode"] == "fast" and p["kfold"] == 5 and p["seed"] == 1111 and p["standardize"] is False
    assert p["probe"]["name"] == "batched"
    assert p["probe"]["grid_inner_kfold"] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert p["probe"]["grid_kfold"] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert len(p["data_fingerprint"]["sha256"]) == 64 and "CR/custrev.pos" in p["data_fingerprint"]["files"]
    assert p["versions"]["torch"] and p["versions"]["scikit-learn"]
    table = format_table(res)
    assert "CR" in table and "Avg" in table and "STSB" in table


def test_lookup_encoder_errors(tmp_path):
    enc = lookup_encoder((["a", "b"], np.eye(2)))
    assert enc(["b", "a"]).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(KeyError, match="'c'"):
        enc(["c"])
    np.savez(tmp_path / "c.npz", sentences=np.array(["x"]), embeddings=np.ones((1, 3), np.float32))
    assert lookup_encoder(tmp_path / "c.npz")(["x"]).shape == (1, 3)
    with pytest.raises(FileNotFoundError):
        lookup_encoder(tmp_path / "missing.npz")


@pytest.mark.slow
def test_scripts_end_to_end(tiny_senteval, tmp_path):
    small_data = tiny_senteval
    import subprocess
    import sys

    tasks = [load_task(t, small_data) for t in ["CR", "STSB"]]
    sents = unique_sentences(tasks)
    np.savez(tmp_path / "e.npz", sentences=np.array(sents), embeddings=hash_encode(sents).astype(np.float32))
    out = tmp_path / "r.json"
    run = subprocess.run(
        [
            sys.executable,
            "eval/senteval.py",
            "--embeddings",
            str(tmp_path / "e.npz"),
            "--tasks",
            "CR",
            "STSB",
            "--mode",
            "fast",
            "--data-dir",
            str(small_data),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "CR" in run.stdout and "Avg" in run.stdout
    assert json.loads(out.read_text())["protocol"]["mode"] == "fast"
    png = tmp_path / "c.png"
    subprocess.run(
        [sys.executable, "eval/compare.py", str(out), str(out), "--labels", "a", "b", "--output", str(png)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert png.stat().st_size > 1000


def test_senteval_script_scores_a_saved_simskip_folder(tiny_senteval, tiny_backbone, tmp_path):
    small_data = tiny_senteval
    """eval/senteval.py --model on a saved hf_simskip folder: loads it through AutoModel and encodes."""
    import subprocess
    import sys

    from hf_simskip import SimSkipModel

    SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean").save_pretrained(tmp_path / "m")
    out = tmp_path / "r.json"
    run = subprocess.run(
        [
            sys.executable,
            "eval/senteval.py",
            "--model",
            str(tmp_path / "m"),
            "--tasks",
            "STSB",
            "--mode",
            "fast",
            "--data-dir",
            str(small_data),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["tasks"]) == {"STSB"} and -100 <= result["tasks"]["STSB"]["spearman"] <= 100


def test_load_encoder_trusts_an_export_st_folder_and_says_so(tiny_backbone, tmp_path, caplog):
    """`hf-simskip eval --model` on the project's own export-st folder (custom module code beside
    modules.json): loaded with trust_remote_code=True, with a log line saying so (issue 21, item 4)."""
    from hf_simskip.evaluation import load_encoder
    from hf_simskip.sharing.st_export import save_sentence_transformers

    from utils import SENTENCES, tiny_simskip

    model = tiny_simskip(tiny_backbone)
    folder = save_sentence_transformers(model, tmp_path / "st")
    with caplog.at_level("INFO", logger="hf_simskip.evaluation.encoders"):
        encode = load_encoder(str(folder), batch_size=4)
    assert "trust_remote_code=True" in caplog.text and "st_module.SimSkipModule" in caplog.text
    np.testing.assert_allclose(encode(SENTENCES), model.encode(SENTENCES), atol=1e-5)
    caplog.clear()
    load_encoder(str(tiny_backbone))  # a plain transformers folder: no custom code, nothing trusted
    assert "trust_remote_code" not in caplog.text


@pytest.mark.parametrize("kind", ["simskip", "sentence-transformers"])
def test_eval_on_truncated_weights_is_one_line(tiny_backbone, tiny_senteval, tmp_path, capsys, kind):
    """issue 20: `eval` on a folder with truncated weights printed a 23-line traceback."""
    from hf_simskip.cli import main as cli_main
    from hf_simskip.evaluation import load_encoder
    from hf_simskip.sharing.st_export import save_sentence_transformers

    from utils import tiny_simskip

    model = tiny_simskip(tiny_backbone)
    folder = tmp_path / "m"
    if kind == "simskip":
        model.save_pretrained(folder)
    else:
        save_sentence_transformers(model, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"could not load the .*weights|truncated or corrupt") as err:
        load_encoder(str(folder))
    assert "\n" not in str(err.value) and str(folder) in str(err.value)
    assert cli_main(["eval", "--model", str(folder), "--tasks", "CR", "--data-dir", str(tiny_senteval)]) == 1
    stderr = capsys.readouterr().err.strip().splitlines()
    assert [line for line in stderr if line.startswith("hf-simskip eval: error:")] == stderr[-1:]
    assert "Traceback" not in "\n".join(stderr)
