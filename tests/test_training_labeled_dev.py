"""training/dev.py: a labeled dev set of the user's own task (the recipe's --dev_file) as the transfer signal."""

import json

import numpy as np
import pytest
import torch
from test_training_dev import ScriptedGeometry, layer_head

from hf_simskip import SimSkipConfig, SimSkipHead
from hf_simskip.training import DevSignal, LabeledDev, read_labeled_dev

D = 8


class ScriptedAccuracy:
    """What DevSignal asks of a labeled dev set, with accuracies scripted by the weight of u (u off: 60)."""

    def __init__(self, by_weight):
        self.by_weight = by_weight

    def accuracy(self, head, device=None):
        branch = head.layer_branch
        return self.by_weight[branch.scale] if branch.is_open else 60.0


def test_the_best_accuracy_among_the_weights_that_keep_the_geometry_wins():
    signal = ScriptedGeometry({"stsb": 2.0, "sickr": 1.0}, tolerance=1.0, scales=[0.3, 0.5, 0.7, 1.0])
    # the geometry holds up to w = 0.5; the accuracy peaks at 0.7, which breaks it, so 0.3 (72) beats 0.5 (70)
    signal.labeled = ScriptedAccuracy({0.3: 72.0, 0.5: 70.0, 0.7: 90.0, 1.0: 85.0})
    head = layer_head()
    identity = signal(head)
    assert identity.key == (60.0, 75.0) and identity.value == 60.0
    assert identity.details == {"layer_scale": None, "stsb": 80.0, "sickr": 70.0, "labeled_dev_accuracy": 60.0}
    head.layer_branch.open()
    score = signal(head)
    assert score.key == (72.0, pytest.approx(74.55)) and head.layer_branch.scale == 0.3 == head.config.layer_scale
    assert score.details["labeled_dev_accuracy"] == 72.0 and score.key > identity.key
    # the same accuracy at two weights: the larger weight
    signal.labeled = ScriptedAccuracy({0.3: 72.0, 0.5: 72.0, 0.7: 90.0, 1.0: 85.0})
    assert signal(head).details["layer_scale"] == 0.5
    # no weight keeps the geometry: below the identity whatever the accuracy, and no probe was fitted for it
    steep = ScriptedGeometry({"stsb": 10.0, "sickr": 1.0}, tolerance=1.0, scales=[0.3, 0.5])
    steep.labeled = ScriptedAccuracy({0.3: 99.0, 0.5: 99.0})
    head = layer_head()
    steep(head)
    head.layer_branch.open()
    below = steep(head)
    assert below.key[0] == -1.0 and below.details["labeled_dev_accuracy"] is None and below.key < (60.0, 75.0)


def separable_by_the_layers(n=200, seed=0):
    """x carries nothing of the label; hidden layer 0 carries it along one direction."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, D, generator=g)
    l0 = torch.randn(n, D, generator=g) * 0.3
    l0[:, 0] += (2 * y - 1).float() * 3.0
    l1 = torch.randn(n, D, generator=g)
    return torch.stack([x, l0, l1], dim=1), ["pos" if v else "neg" for v in y.tolist()]


def test_the_probe_accuracy_sees_what_the_layers_add_and_the_identity_lacks():
    h, labels = separable_by_the_layers()
    head = SimSkipHead(SimSkipConfig(embedding_dim=D, layers=[0, 1], layer_hidden_dim=0, layer_closed_form="pca"))
    head.fit_statistics(h)
    labeled = LabeledDev(h, labels)
    assert labeled.classes == ["neg", "pos"] and labeled.k == 5
    head.eval()
    with torch.no_grad():
        identity = labeled.accuracy(head)  # u off: x alone, which holds no label
        head.layer_branch.open()
        head.set_layer_scale(1.0)
        layers = labeled.accuracy(head)
    assert identity < 70.0 and layers > 85.0, (identity, layers)
    # the same through DevSignal with no STS split (the recipe's --dev_signal none --dev_file F): the open branch wins
    signal = DevSignal({}, tolerance=0.3, layer_scales=[0.5, 1.0], labeled=LabeledDev(h, labels))
    head.layer_branch.close()
    with torch.no_grad():
        first = signal(head)
        head.layer_branch.open()
        second = signal(head)
    assert first.key[0] == pytest.approx(identity) and second.key > first.key and second.value > 85.0


def test_a_labeled_dev_set_needs_two_classes_and_enough_rows_per_fold():
    h, labels = separable_by_the_layers(20)
    with pytest.raises(ValueError, match=r"at least 2 classes with at least 5 sentences each .*got \{'neg': 10\}"):
        LabeledDev(h[::2], labels[::2])
    with pytest.raises(ValueError, match=r"got \{'neg': 10, 'pos': 4\}"):
        LabeledDev.check_labels(["neg"] * 10 + ["pos"] * 4)
    with pytest.raises(ValueError, match="one label per row, got 20 rows and 19 labels"):
        LabeledDev(h, labels[:19])
    with pytest.raises(ValueError, match="at least one split of pairs .* or a labeled dev set"):
        DevSignal({}, tolerance=0.3, layer_scales=[0.5])


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".txt"])
def test_read_labeled_dev_reads_every_format(tmp_path, suffix):
    rows = [("A gripping film, with a twist.", "pos"), ('He said "no", twice.', "neg"), ("Dull.", "1")]
    path = tmp_path / f"dev{suffix}"
    if suffix == ".csv":
        path.write_text('label,sentence\npos,"A gripping film, with a twist."\nneg,"He said ""no"", twice."\n1,Dull.\n')
    elif suffix == ".tsv":
        path.write_text("text\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    elif suffix == ".jsonl":
        path.write_text(
            "".join(json.dumps({"sentence": s, "label": int(y) if y == "1" else y}) + "\n" for s, y in rows)
        )
    else:
        path.write_text("".join(f"{y}\t{s}\n" for s, y in rows) + "\n")
    sentences, labels = read_labeled_dev(path)
    assert sentences == [s for s, _ in rows] and labels == [y for _, y in rows]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("dev.csv", "sentence,class\na,b\n", r"a header with a 'sentence' \(or 'text'\) and a 'label' column"),
        ("dev.csv", "sentence,label\na,\n", "line 2: expected a sentence and a label"),
        ("dev.jsonl", '{"sentence": "a"}\n', 'line 1: expected an object with "sentence"'),
        ("dev.jsonl", "not json\n", 'line 1: expected an object with "sentence"'),
        ("dev.txt", "pos a good film\n", "line 1: expected 'label<TAB>sentence'"),
        ("dev.txt", "\n\n", "the file holds none"),
    ],
)
def test_a_malformed_dev_file_is_named_with_its_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_labeled_dev(path)
    with pytest.raises(ValueError, match="expected an existing file"):
        read_labeled_dev(tmp_path / "missing.tsv")
    (tmp_path / "bad.txt").write_bytes(b"pos\t\xff\xfe\n")
    with pytest.raises(ValueError, match="expected UTF-8 text"):
        read_labeled_dev(tmp_path / "bad.txt")


def test_the_recipe_selects_on_a_labeled_dev_file(tiny_backbone, tmp_path, monkeypatch):
    """--dev_file: its sentences are cached like the dev pairs, every candidate's accuracy is recorded, the card says
    what the dev scores are; a malformed file stops before any encoding."""
    from accelerate.state import AcceleratorState
    from test_recipe import tiny_args

    from utils import write_corpus

    monkeypatch.chdir(tmp_path)
    import train_simcse_skip

    corpus = write_corpus(tmp_path / "c.txt", 64)
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    dev = tmp_path / "dev.tsv"
    dev.write_text(
        "sentence\tlabel\n"
        + "".join(f"a {w} film number {i}\t{'pos' if w in words[:3] else 'neg'}\n" for i in range(6) for w in words)
    )
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\n" + "only one class\tpos\n" * 6)
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(ValueError, match=r"at least 2 classes .*got \{'pos': 6\}"):
        train_simcse_skip.main(tiny_args(tiny_backbone, corpus, tmp_path, "--dev_file", str(bad)))
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing was encoded
    AcceleratorState._reset_state(reset_partial_state=True)
    metrics = train_simcse_skip.main(
        tiny_args(tiny_backbone, corpus, tmp_path, "--dev_file", str(dev), "--max_steps", "4", "--eval_steps", "2")
    )
    AcceleratorState._reset_state(reset_partial_state=True)
    details = metrics["dev_details"]
    assert {"identity", "initial", "step 2", "step 4"} <= set(details)
    assert all(0.0 <= (d["labeled_dev_accuracy"] or 0.0) <= 100.0 for d in details.values())
    assert details["identity"]["labeled_dev_accuracy"] is not None and {"stsb", "sickr"} <= set(details["identity"])
    assert metrics["dev_scores"]["identity"] == details["identity"]["labeled_dev_accuracy"]
    assert metrics["kept"] in ("identity", "initial", "trained")
    card = (tmp_path / "out" / "final" / "README.md").read_text()
    assert "cross-validated accuracy of a logistic probe on the trainer's own labeled dev sentences" in card
    assert np.isfinite(metrics["best_dev_score"])
