"""sharing/model_card.py: cards rendered from model_card_template.md, numbers only from the results JSON."""

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hf_simskip.sharing.model_card import TEMPLATE_PATH, collect_records, write_card_for_folder, write_model_card

from utils import head_only, results_json, tiny_simskip

ROOT = Path(__file__).resolve().parents[1]


def table_rows(text: str) -> dict:
    """Evaluation table -> {(task, metric): (baseline or None, refined, delta or None)} as strings."""
    section = text.split("## Evaluation", 1)[1].split("## Citation", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("task", "") or set(cells[0]) <= {"-"}:
            continue
        rows[(cells[0], cells[1])] = (cells[2], cells[3], cells[4]) if len(cells) == 5 else (None, cells[2], None)
    return rows


def test_the_top_level_template_is_the_one_source_and_the_wheel_ships_it(tmp_path):
    """The package's template is a link to the top-level file, and a wheel built from a copy of the
    project (links kept as links) holds its content."""
    import shutil
    import subprocess
    import sys
    import zipfile

    assert TEMPLATE_PATH.is_symlink() and TEMPLATE_PATH.resolve() == (ROOT / "model_card_template.md").resolve()
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "hf_simskip", src / "hf_simskip", symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md", "model_card_template.md"):
        shutil.copyfile(ROOT / name, src / name)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        str(src),
        "-w",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("hf_simskip-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = zf.read("hf_simskip/sharing/model_card_template.md").decode("utf-8")
    assert shipped == (ROOT / "model_card_template.md").read_text(encoding="utf-8")


@pytest.fixture()
def saved(tiny_backbone, tmp_path):
    model = tiny_simskip(tiny_backbone)
    model.config.encoder_name_or_path = "sentence-transformers/all-MiniLM-L6-v2"  # as the packaged default
    model.save_pretrained(tmp_path / "m")
    return model, tmp_path / "m"


def test_card_without_results(saved):
    model, folder = saved
    card = ModelCard.load(folder / "README.md")  # written by save_pretrained
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.license) == ("transformers", "feature-extraction", "apache-2.0")
    assert "simskip" in data.tags
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert data.to_dict()["base_model_relation"] == "adapter"
    assert data.eval_results is None and "model-index" not in data.to_dict()
    assert "No evaluation results" in card.text and "No training record" in card.text
    assert 'AutoModel.from_pretrained("path/to/this-model", trust_remote_code=True)' in card.text
    assert "model.encode(" in card.text
    assert "arXiv:2404.08701" in card.text and "Can Contrastive Learning Refine Embeddings" in card.text
    assert "Liu, Lihui and Kim, Jinha and Bansal, Vidit" in card.text
    assert "Gao, Tianyu and Yao, Xingcheng and Chen, Danqi" in card.text and "EMNLP" in card.text
    assert "| `hidden_dims` | `[16, 32]` |" in card.text  # head config from the config, not typed
    # the default head is layer-aware (the tiny backbone has hidden states 0..2): the card says which it reads
    assert "hidden states 0, 1 (0 = the token embeddings)" in card.text and "Sentence embeddings, 64-d" in card.text
    assert card.text.split("\n# ", 1)[1].startswith("Layer-aware SimSkip refiner of all-MiniLM-L6-v2\n")  # a title
    assert 'SentenceTransformer("path/to/this-model", trust_remote_code=True)' in card.text
    assert "pip install hf_simskip" not in card.text  # not a published name


def test_card_numbers_come_from_the_results_json(saved):
    model, folder = saved
    refined, baseline = results_json(1.0), results_json(0.97)
    (folder / "eval_results.json").write_text(json.dumps(refined))
    (folder / "baseline_eval_results.json").write_text(json.dumps(baseline))
    (folder / "training_args.json").write_text(json.dumps({"learning_rate": 3e-4, "num_train_epochs": 5}))
    (folder / "corpus.json").write_text(
        json.dumps({"datasets": ["sentence-transformers/wikipedia-en-sentences"], "sentences": 100000})
    )
    card = ModelCard.load(write_card_for_folder(folder, repo_id="org/simskip-tiny"))
    data = card.data
    assert data.datasets == ["sentence-transformers/wikipedia-en-sentences"]
    got = {(r.dataset_name.split()[-1], r.metric_type): r.metric_value for r in data.eval_results}
    want_keys = {"acc": "accuracy", "f1": "f1", "spearman": "spearmanr", "pearson": "pearsonr"}
    want = {(t, want_keys[k]): v for t, s in refined["tasks"].items() for k, v in s.items() if k in want_keys}
    assert got == want
    assert all(
        r.metric_args == {"mode": "fast", "kfold": 5, "seed": 1111, "standardize": False} for r in data.eval_results
    )
    rows = table_rows(card.text)
    for task, scores in refined["tasks"].items():
        for key in want_keys:
            if key in scores:
                base = baseline["tasks"][task][key]
                assert rows.pop((task, key)) == (f"{base:.2f}", f"{scores[key]:.2f}", f"{scores[key] - base:+.2f}")
    assert rows.pop(("avg (transfer)", "acc"))[1] == f"{refined['avg']:.2f}"
    assert rows == {}  # nothing in the table that the JSON does not hold
    assert "mode `fast`, 5-fold cross-validation, seed 1111" in card.text
    assert "| learning rate | 0.0003 |" in card.text and "| epochs | 5 |" in card.text
    assert "sentences 100000" in card.text  # a hand-written corpus record: its plain values
    assert card.text.split("\n# ", 1)[1].startswith("simskip-tiny: layer-aware SimSkip refiner of all-MiniLM-L6-v2")
    assert 'AutoModel.from_pretrained("org/simskip-tiny", trust_remote_code=True)' in card.text
    assert "protocol record differs" not in card.text


def test_card_flags_a_baseline_scored_with_another_protocol(saved):
    model, folder = saved
    path = write_model_card(model, folder, results=results_json(), baseline_results=results_json(mode="full"))
    assert "protocol record differs: mode: 'full' vs 'fast'" in path.read_text()


def test_head_only_card_and_local_backbone_has_no_base_model(tiny_backbone, tmp_path):
    head = head_only(128)
    head.save_pretrained(tmp_path / "h")
    card = ModelCard.load(tmp_path / "h" / "README.md")
    assert card.data.base_model is None and "model.refine(" in card.text and "128-d" in card.text
    assert "Layer-aware" not in card.text  # a head-only model reads x alone by default
    layered = head_only(16, layers=[0, 2])
    layered.save_pretrained(tmp_path / "hl")
    text = ModelCard.load(tmp_path / "hl" / "README.md").text
    assert "hidden states 0, 2" in text and "np.random.randn(4, 3, 16)" in text and "(n, 3, 16)" in text
    local = tiny_simskip(tiny_backbone)  # encoder_name_or_path is a local folder: not a Hub id
    local.save_pretrained(tmp_path / "l")
    assert ModelCard.load(tmp_path / "l" / "README.md").data.base_model is None


def test_card_errors_are_clear(saved, tmp_path):
    model, folder = saved
    with pytest.raises(FileNotFoundError, match="no such JSON file"):
        collect_records(results=tmp_path / "missing.json")
    with pytest.raises(ValueError, match="'tasks' dict"):
        collect_records(results={"avg": 1.0})
    with pytest.raises(TypeError, match="unknown card records"):
        collect_records(resultz={})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        collect_records(results=tmp_path / "bad.json")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="expected model_type 'simskip'"):
        write_card_for_folder(tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        write_card_for_folder(tmp_path)
    assert re.search(r"<!-- hf_simskip \d", (folder / "README.md").read_text())


def test_save_pretrained_can_skip_the_card(saved, tmp_path):
    model, _ = saved
    model.save_pretrained(tmp_path / "nocard", model_card=False)
    assert not (tmp_path / "nocard" / "README.md").exists()


def test_run_records_come_from_the_parent_but_results_never_do(tiny_backbone, tmp_path):
    model = tiny_simskip(tiny_backbone)
    (tmp_path / "corpus.json").write_text(
        json.dumps(
            {
                "sentences": 4321,
                "sources": {
                    "dataset:sentence-transformers/wikipedia-en-sentences[train].sentence": 4321,
                    "unlabeled/a.txt": 7,
                },
            }
        )
    )
    (tmp_path / "eval_results.json").write_text(json.dumps(results_json()))  # another model's, one level up
    model.save_pretrained(tmp_path / "final")
    text = (tmp_path / "final" / "README.md").read_text()
    assert "| dataset:sentence-transformers/wikipedia-en-sentences[train].sentence | 4321 |" in text
    assert "No evaluation results" in text
    assert ModelCard.load(tmp_path / "final" / "README.md").data.datasets == [
        "sentence-transformers/wikipedia-en-sentences"
    ]


@pytest.mark.parametrize(
    "bad,key",
    [
        ({"tasks": {"CR": {"acc": "high"}}}, "tasks.CR.acc must be a finite number, got 'high' (str)"),
        ({"tasks": {"STSB": {"spearman": float("nan")}}}, "tasks.STSB.spearman must be a finite number, got nan"),
        ({"tasks": {"MR": {"acc": True}}}, "tasks.MR.acc must be a finite number, got True (bool)"),
        ({"tasks": {"CR": {"acc": 80.0}}, "avg": "n/a"}, "avg must be a finite number, got 'n/a'"),
        ({"tasks": {"CR": 81.2}}, "tasks.CR must be an object of scores"),
    ],
)
def test_a_bad_score_in_a_record_is_one_line_naming_the_file_and_key(saved, tmp_path, capsys, bad, key):
    """issue 20: a card record with "acc": "high" stopped with "Unknown format code 'f'"."""
    from hf_simskip.cli import main
    from hf_simskip.sharing.model_card import eval_rows

    _, folder = saved
    before = (folder / "README.md").read_text()
    path = folder / "eval_results.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError) as info:
        collect_records([folder])
    assert f"results {str(path)!r}: {key}" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="^baseline_results: "):
        eval_rows(results_json(), bad)
    capsys.readouterr()
    assert main(["card", str(folder)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and key in err and str(path) in err
    assert (folder / "README.md").read_text() == before  # the card is not rewritten from a bad record


# --- issue 21, items 3, 7 and 11; issue 20, item 11 -----------------------------------------------------------
def metrics_json(kept: str, **extra) -> dict:
    """A metrics.json as the recipe writes it (the keys the card reads)."""
    scores = {"identity": 80.0, "initial": 80.5, "step 50": 81.25, "step 100": 80.9}
    best = {"identity": ("identity", 0), "initial": ("initial", 0), "trained": ("step 50", 50)}.get(kept)
    out = {"kept": kept, "dev_scores": scores, "global_step": 100, "total_steps": 100}
    if best:
        out.update(best_dev_score=scores[best[0]], best_step=best[1])
    return {**out, **extra}


@pytest.mark.parametrize(
    "kept,method,says",
    [
        (
            "identity",
            "train",
            [
                "**No refined head beat the backbone.**",
                "returns the backbone's embedding padded with zeros: `[x, 0]`, the first 32 columns",
                "| identity (the backbone's embedding) (kept) | 80.00 |",
            ],
        ),
        ("initial", "train", ["**Closed-form, not trained.**", "no trained step beat it (the best scored 81.25)"]),
        ("initial", "pca", ["**Closed-form, not trained.**", "no gradient step was taken (method `pca`)"]),
        ("trained", "train", ["**Trained.** The head of step 50 of 100", "| trained, step 50 (kept) | 81.25 |"]),
        ("last", "train", ["No dev selection: the head after the last step (100) was kept", "No dev selection is"]),
    ],
)
def test_card_says_what_the_training_kept(saved, kept, method, says):
    """issue 21, item 7: a run whose selection kept the untrained head said only "loaded the best head"."""
    model, folder = saved
    text = write_model_card(
        model, folder, metrics=metrics_json(kept), training_args={"method": method, "learning_rate": 1e-3}
    ).read_text()
    outcome = text.split("## Training outcome", 1)[1].split("## Usage", 1)[0]
    for phrase in says:
        assert phrase in text, (phrase, outcome)
    assert "| method | " + method + " |" in text


def test_card_without_metrics_says_the_outcome_is_unknown(saved):
    _, folder = saved
    assert "No training record (`metrics.json`) was found" in (folder / "README.md").read_text()


def test_metrics_come_from_the_run_folder(tiny_backbone, tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(metrics_json("trained")))
    tiny_simskip(tiny_backbone).save_pretrained(tmp_path / "final")
    assert "**Trained.** The head of step 50" in (tmp_path / "final" / "README.md").read_text()


def test_a_stage0_run_is_a_finetune(saved):
    """issue 20, item 11: the backbone fine-tuned by stage 0 was called an adapter, its weights "unchanged"."""
    model, folder = saved
    corpus = {"sources": {"a.txt": 10}, "stage0_simcse": {"stage0": "ab" * 32, "simcse_steps": 100, "seed": 42}}
    card = ModelCard.load(write_model_card(model, folder, corpus=corpus))
    assert card.data.to_dict()["base_model_relation"] == "finetune"
    assert "as fine-tuned (SimCSE stage 0, 100 steps, before the head was trained)" in card.text
    assert "unchanged (frozen during training)" not in card.text


def test_the_card_shows_no_local_path(tiny_backbone, tmp_path):
    """No cache, output or data folder, no backbone folder, no venv path (issue 21, item 11)."""
    import yaml

    from recipe_args import parse_args, to_dict

    model = tiny_simskip(tiny_backbone)  # a local backbone folder
    run = tmp_path / "run"
    args = parse_args(["--output_dir", str(run), "--cache_dir", str(tmp_path / "cache"), "--method", "pca"])
    run.mkdir(exist_ok=True)  # parse_args checks that it is writable (it may create it)
    (run / "training_config.yaml").write_text(yaml.safe_dump(to_dict(*args)))
    corpus = {
        "sources": {f"file:{tmp_path}/corpus/my_sentences.txt": 40, "unlabeled/wiki1m_for_simcse.txt": 60},
        "unique": 100,
        "embedding_cache": {"path": str(tmp_path / "cache" / "corpus-123"), "key": "123"},
    }
    (run / "corpus.json").write_text(json.dumps(corpus))
    (run / "metrics.json").write_text(json.dumps(metrics_json("initial")))
    model.save_pretrained(run / "final")
    text = (run / "final" / "README.md").read_text()
    for local in (str(tmp_path), tiny_backbone, "/root", ".cache", "site-packages"):
        assert local not in text, local
    assert f"`{Path(tiny_backbone).name}`" in text  # the backbone folder, by its name
    assert "| file my_sentences.txt | 40 |" in text and "| method | pca |" in text
    assert ModelCard.load(run / "final" / "README.md").data.datasets == ["princeton-nlp/datasets-for-simcse"]
    assert len(text.split("## Training\n", 1)[1].split("<details>", 1)[0].splitlines()) < 30  # no dump of every value
    saved_config = (run / "final" / "config.json").read_text()
    assert tiny_backbone not in json.loads(saved_config)["encoder_config"]["_name_or_path"]


def test_the_cards_code_runs_when_pasted(tiny_backbone, tmp_path, capsys, monkeypatch):
    """Every code block of the card, the repo id replaced by the local folder: the Python ones in a fresh process
    where hf_simskip cannot be imported (as a Hub user has it), the command line with the package."""
    import os
    import subprocess
    import sys
    import textwrap

    from hf_simskip.cli import main

    from utils import WITHOUT_HF_SIMSKIP

    model = tiny_simskip(tiny_backbone)
    model.save_pretrained(tmp_path / "m")
    folder = str(tmp_path / "m")
    text = write_card_for_folder(folder, repo_id="me/simskip-tiny").read_text()
    blocks = re.findall(r"```(python|bash)\n(.*?)```", text, flags=re.S)
    python = [code.replace("me/simskip-tiny", folder) for kind, code in blocks if kind == "python"]
    bash = [code.replace("me/simskip-tiny", folder) for kind, code in blocks if kind == "bash"]
    assert len(python) == 2 and len(bash) == 1, blocks
    script = WITHOUT_HF_SIMSKIP + "".join(
        f"\nprint('BLOCK {i}')\nexec({textwrap.dedent(code)!r})\n" for i, code in enumerate(python)
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    res = subprocess.run(
        [sys.executable, "-c", script],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "BLOCK 1" in res.stdout and "tensor(" in res.stdout
    (tmp_path / "sentences.txt").write_text("A gripping film.\nWho wrote Hamlet?\n")
    (command,) = [line.split("#")[0].split() for line in bash[0].splitlines() if line.strip()]
    assert command[0] == "hf-simskip"
    monkeypatch.chdir(tmp_path)
    assert main(command[1:]) == 0, capsys.readouterr().err
    import numpy as np

    assert np.load(tmp_path / "refined.npy").shape == (2, 64)


def test_a_head_only_cards_code_runs(tmp_path):
    head = head_only(16, layers=[0, 2])
    head.save_pretrained(tmp_path / "h")
    text = (tmp_path / "h" / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    scope = {}
    exec(code.replace("path/to/this-model", str(tmp_path / "h")), scope)
    assert scope["refined"].shape == (4, 32)
