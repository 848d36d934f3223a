"""evaluate(..., probe="sklearn"): the original SentEval's sklearn path, on tiny synthetic tasks written
here in the SentEval layout (no data folder needed). Checked against SentEval's procedure written out
by hand with sklearn, and against the batched probe's result schema."""

import json
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from hf_simskip.evaluation import evaluate, load_task, lookup_encoder

TASKS = ["CR", "TREC", "SST2", "MRPC", "STSB"]
DIM = 6


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """(data_dir, encode): a few dozen sentences per task, embeddings that carry the label plus noise."""
    root = tmp_path_factory.mktemp("senteval_synthetic")
    rng = np.random.default_rng(0)
    table, count = {}, [0]

    def sentence(signal):
        count[0] += 1
        s = " ".join([f"s{count[0]}"] + [f"w{i}" for i in rng.integers(0, 50, rng.integers(2, 7))])
        table[s] = rng.normal(size=DIM) + signal
        return s

    def write(rel, lines):
        path = root / "downstream" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def binary(y):
        return 0.8 * (2 * y - 1) * np.eye(DIM)[0]

    write("CR/custrev.pos", [sentence(binary(1)) for _ in range(50)])
    write("CR/custrev.neg", [sentence(binary(0)) for _ in range(40)])
    trec = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    write("TREC/train_5500.label", [f"{trec[y]}:x {sentence(1.5 * np.eye(DIM)[y])}" for y in rng.integers(0, 6, 120)])
    write("TREC/TREC_10.label", [f"{trec[y]}:x {sentence(1.5 * np.eye(DIM)[y])}" for y in rng.integers(0, 6, 40)])
    for split, n in [("train", 80), ("dev", 30), ("test", 30)]:
        write(f"SST/binary/sentiment-{split}", [f"{sentence(binary(y))}\t{y}" for y in rng.integers(0, 2, n)])

    def pair(y):
        a = sentence(0.0)
        b = sentence(0.0)
        if y:  # a paraphrase: b's vector close to a's
            table[b] = table[a] + 0.5 * rng.normal(size=DIM)
        return a, b

    for split, n in [("train", 80), ("test", 40)]:
        rows = [(y, *pair(y)) for y in rng.integers(0, 2, n)]
        write(f"MRPC/msr_paraphrase_{split}.txt", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"])
        with open(root / "downstream" / f"MRPC/msr_paraphrase_{split}.txt", "a", encoding="utf-8") as f:
            f.writelines(f"{y}\t{i}\t{i}\t{a}\t{b}\n" for i, (y, a, b) in enumerate(rows))
    for split in ["train", "dev", "test"]:
        rows = [(y, *pair(y > 2.5)) for y in rng.uniform(0, 5, 20)]
        write(
            f"STS/STSBenchmark/sts-{split}.csv",
            [f"g\tf\t2012\t{i}\t{y:.2f}\t{a}\t{b}" for i, (y, a, b) in enumerate(rows)],
        )
    return root, lookup_encoder((list(table), np.stack(list(table.values()))))


def _lr(C):
    return LogisticRegression(C=C, random_state=1111)


def _by_hand(name, data_dir, encode, k):
    """SentEval's senteval/tools/validation.py (usepytorch=False), written out again for this check."""
    s = load_task(name, data_dir).splits
    skf = lambda: StratifiedKFold(n_splits=k, shuffle=True, random_state=1111)  # noqa: E731
    if name == "CR":
        X, y = encode(s["all"].sentences), s["all"].labels
        dev, test, chosen = [], [], []
        for tr, te in skf().split(X, y):
            scores = []
            for C in [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]:
                fold = [_lr(C).fit(X[tr][a], y[tr][a]).score(X[tr][b], y[tr][b]) for a, b in skf().split(X[tr], y[tr])]
                scores.append(round(100 * np.mean(fold), 2))
            chosen.append([0.25, 0.5, 1.0, 2.0, 4.0, 8.0][np.argmax(scores)])
            dev.append(np.max(scores))
            test.append(round(100 * _lr(chosen[-1]).fit(X[tr], y[tr]).score(X[te], y[te]), 2))
        return {"acc": round(np.mean(test), 2), "devacc": round(np.mean(dev), 2), "C": chosen, "fold_acc": test}
    if name == "SST2":
        X = {key: encode(v.sentences) for key, v in s.items()}
        y = {key: v.labels for key, v in s.items()}
        grid = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
        scores = [round(100 * _lr(C).fit(X["train"], y["train"]).score(X["dev"], y["dev"]), 2) for C in grid]
        clf = _lr(grid[np.argmax(scores)]).fit(X["train"], y["train"])
        return {"acc": round(100 * clf.score(X["test"], y["test"]), 2), "devacc": max(scores), "C": clf.C}
    if name == "TREC":
        X = {key: encode(v.sentences) for key, v in s.items()}
    else:  # MRPC: [|u-v|, u*v]
        uv = {key: (encode(v.pairs[0]), encode(v.pairs[1])) for key, v in s.items()}
        X = {key: np.c_[np.abs(u - v), u * v] for key, (u, v) in uv.items()}
    y = {key: v.labels for key, v in s.items()}
    grid = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    scores = []
    for C in grid:
        scan = [
            _lr(C).fit(X["train"][a], y["train"][a]).score(X["train"][b], y["train"][b])
            for a, b in skf().split(X["train"], y["train"])
        ]
        scores.append(round(100 * np.mean(scan), 2))
    clf = _lr(grid[np.argmax(scores)]).fit(X["train"], y["train"])
    out = {"acc": round(100 * clf.score(X["test"], y["test"]), 2), "devacc": max(scores), "C": clf.C}
    if name == "MRPC":
        out["f1"] = round(100 * f1_score(y["test"], clf.predict(X["test"])), 2)
    return out


@pytest.fixture(scope="module")
def both(synthetic):
    data_dir, encode = synthetic
    run = lambda probe: evaluate(  # noqa: E731
        encode, tasks=TASKS, data_dir=data_dir, mode="fast", probe=probe, show_progress_bar=False
    )
    return run("sklearn"), run("batched")


@pytest.mark.parametrize("name", ["CR", "TREC", "SST2", "MRPC"])
def test_sklearn_probe_is_senteval_by_hand(synthetic, both, name):
    data_dir, encode = synthetic
    got = both[0]["tasks"][name]
    want = _by_hand(name, data_dir, encode, k=5)
    assert {key: got[key] for key in want} == want


def test_same_schema_as_batched_and_protocol_record(both):
    sk, batched = json.loads(json.dumps(both[0])), json.loads(json.dumps(both[1]))
    assert set(sk) == set(batched)
    for name in TASKS:
        assert set(sk["tasks"][name]) == set(batched["tasks"][name]), name
    assert sk["tasks"]["STSB"] == {**batched["tasks"]["STSB"], "seconds": sk["tasks"]["STSB"]["seconds"]}
    assert set(sk["protocol"]) == set(batched["protocol"])
    p, q = sk["protocol"]["probe"], batched["protocol"]["probe"]
    assert set(p) - set(q) == {"convergence_warnings"} and set(q) <= set(p)
    assert p["name"] == "sklearn" and q["name"] == "batched"
    assert (p["solver"].split()[:2], p["tol"], p["max_iter"]) == (["sklearn", "lbfgs"], 1e-4, 100)
    assert p["grid_inner_kfold"] == q["grid_inner_kfold"] and p["grid_kfold"] == q["grid_kfold"]
    fits = {f["fit"]: f["problems"] for f in p["fits"]}
    assert fits["CR/inner"] == 5 * 5 * 6 and fits["CR/outer"] == 5  # k outer x k inner x 6 C, then k refits
    assert fits["TREC/kfold"] == 5 * 7 and fits["SST2/split"] == 6 and fits["SST2/final"] == 1
    assert p["unconverged_problems"] == sum(f["unconverged"] for f in p["fits"])


def test_convergence_warnings_counted_not_shown(synthetic):
    """Badly scaled features make lbfgs stop at max_iter=100 (as in SentEval): counted in the protocol, not warned."""
    data_dir, encode = synthetic
    big = lambda sents: encode(sents) * np.logspace(-2, 2, DIM) + 1000  # noqa: E731
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = evaluate(big, tasks=["SST2"], data_dir=data_dir, mode="fast", probe="sklearn", show_progress_bar=False)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    p = res["protocol"]["probe"]
    assert p["convergence_warnings"] > 0 and p["unconverged_problems"] > 0 and p["converged"] is False
    assert max(f["lbfgs_iterations"] for f in p["fits"]) == 100


def test_standardize_applies_to_sklearn_probe(synthetic):
    data_dir, encode = synthetic
    out = {}
    for scale in [1.0, 64.0]:  # a power of two: the rescaled, standardized features are bit-identical
        enc = lambda sents, scale=scale: scale * encode(sents)  # noqa: E731
        res = evaluate(
            enc,
            tasks=["SST2"],
            data_dir=data_dir,
            mode="fast",
            probe="sklearn",
            standardize=True,
            show_progress_bar=False,
        )
        assert res["protocol"]["standardize"] is True
        out[scale] = res["tasks"]["SST2"]
    assert {k: v for k, v in out[1.0].items() if k != "seconds"} == {
        k: v for k, v in out[64.0].items() if k != "seconds"
    }


def test_progress_bar(synthetic, capsys):
    data_dir, encode = synthetic
    evaluate(encode, tasks=["SST2"], data_dir=data_dir, mode="fast", probe="sklearn", show_progress_bar=False)
    assert "sklearn fits" not in capsys.readouterr().err
    evaluate(encode, tasks=["SST2"], data_dir=data_dir, mode="fast", probe="sklearn")
    assert "sklearn fits" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["SKLEARN", "torch", None, ["sklearn"]])
def test_bad_probe(synthetic, bad):
    data_dir, encode = synthetic
    with pytest.raises(ValueError, match=r"probe must be one of \['batched', 'sklearn'\]"):
        evaluate(encode, tasks=["CR"], data_dir=data_dir, probe=bad)
