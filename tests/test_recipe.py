"""recipes/train_simcse_skip.py: arguments (YAML < CLI, validation) and a real `accelerate launch` smoke run."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hf_simskip.training import HeadTrainingArguments

from utils import FIXTURES, REPO, SCRIPT, write_corpus

RECIPES = REPO / "recipes"
FIXTURE_DATA = FIXTURES / "senteval"


@pytest.fixture()
def recipe(tmp_path, monkeypatch):
    # the default output_dir is relative: run from an empty folder, so that a finished run of the main job
    # in the checkout (README order: set up, main job, tests) is never seen, nor touched
    monkeypatch.chdir(tmp_path)
    import train_simcse_skip  # recipes/ is on the test path (pyproject), as the script's own folder is for python

    return train_simcse_skip


def test_recipe_arguments_are_derived_from_their_owners(recipe):
    from hf_simskip import SimSkipConfig
    from hf_simskip.models.simskip.configuration_simskip import BACKBONE_FIELDS

    import recipe_args

    model_fields = {f.name: f for f in dataclasses.fields(recipe_args.ModelArguments)}
    assert set(model_fields) == {"model_name_or_path", "revision"} | (
        set(SimSkipConfig.field_names()) - set(BACKBONE_FIELDS)
    )
    assert all(f.default is None for f in model_fields.values())  # None: SimSkipConfig decides
    assert model_fields["dropout"].metadata["help"].startswith("dropout of the refiner's two layers")  # FIELD_HELP
    assert recipe_args.DATACLASSES[2] is HeadTrainingArguments  # the training owner itself, not a copy
    m, d, t, s, r = recipe_args.parse_args([])
    assert t == HeadTrainingArguments()  # no implicit YAML: the defaults are the owners' defaults
    assert recipe_args.config_kwargs(m) == {}
    m = recipe_args.parse_args(["--zero_init", "false", "--hidden_dims", "8", "32", "--max_seq_length", "64"]).model
    assert recipe_args.config_kwargs(m) == {"zero_init": False, "hidden_dims": [8, 32], "max_seq_length": 64}
    # --layers: hidden-state indices, or none for the paper's head on x alone (the view configs say so)
    assert recipe_args.config_kwargs(recipe_args.parse_args(["--layers", "0", "2"])[0]) == {"layers": [0, 2]}
    assert recipe_args.config_kwargs(recipe_args.parse_args(["--layers", "none"])[0]) == {"layers": None}
    mask = recipe_args.parse_args(["--config", str(RECIPES / "configs/mask.yaml")])[0]
    assert recipe_args.config_kwargs(mask)["layers"] is None
    with pytest.raises(ValueError, match="--layers takes hidden-state indices .* or the word none, got"):
        recipe_args.config_kwargs(recipe_args.parse_args(["--layers", "x"])[0])


def test_every_config_parses_and_cli_overrides_yaml(recipe):
    import recipe_args

    for cfg in sorted((RECIPES / "configs").glob("*.yaml")):
        recipe_args.parse_args(["--config", str(cfg)])
    m, d, t, s, r = recipe_args.parse_args(["--config", str(RECIPES / "configs/noise.yaml"), "--noise_variance", "0.5"])
    assert t.augmentation == "noise" and t.noise_variance == 0.5
    m, d, t, s, r = recipe_args.parse_args(["--config", str(RECIPES / "configs/simcse_bert_base.yaml")])
    assert (m.pooling, m.embedding_dim, m.max_seq_length) == ("cls_before_pooler", 768, 32)
    for name in ("cpu_2proc", "single_gpu_bf16", "multi_gpu"):  # launch configs hold no hyper-parameters
        launch = yaml.safe_load((RECIPES / "accelerate" / f"{name}.yaml").read_text())
        assert "distributed_type" in launch and "learning_rate" not in launch


def test_bad_arguments_fail_before_any_work(recipe, tmp_path, monkeypatch):
    import recipe_args

    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\nlerning_rate: 0.2\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lerning_rate'\]"):
        recipe_args.parse_args(["--config", str(bad)])
    with pytest.raises(ValueError, match=r"not used by the HfArgumentParser: \['--lerning_rate'"):
        recipe_args.parse_args(["--lerning_rate", "0.2"])
    with pytest.raises(FileNotFoundError, match="given as an argument"):
        recipe_args.parse_args(["--data_dir", str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        recipe_args.parse_args(["--mixed_precision", "fp8"])
    with pytest.raises(ValueError, match="push_to_hub needs hub_model_id"):
        recipe_args.parse_args(["--push_to_hub", "true"])
    with pytest.raises(ValueError, match="expected an existing YAML"):
        recipe_args.parse_args(["--config", str(tmp_path / "nope.yaml")])


def tiny_args(backbone, corpus, tmp_path, *extra):
    """A tiny run: the random backbone, a small corpus file, the committed SentEval fixture (STS-B dev)."""
    args = {
        "--model_name_or_path": backbone,
        "--pooling": "mean",
        "--train_file": str(corpus),
        "--data_dir": str(FIXTURE_DATA),
        "--cache_dir": str(tmp_path / "cache"),
        "--output_dir": str(tmp_path / "out"),
        "--per_device_train_batch_size": "16",
        "--report_to": "none",
    }
    return [item for pair in args.items() for item in pair] + list(extra)


def test_bad_corpus_and_dimension_errors(recipe, tiny_backbone, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="corpus is empty"):
        recipe.main(tiny_args(tiny_backbone, empty, tmp_path, "--dev_signal", "none"))
    small = write_corpus(tmp_path / "small.txt", 10)
    with pytest.raises(ValueError, match="10 unique sentences, fewer than one batch of 16"):
        recipe.main(tiny_args(tiny_backbone, small, tmp_path, "--dev_signal", "none"))
    assert not list((tmp_path / "cache").iterdir())  # nothing was encoded
    corpus = write_corpus(tmp_path / "c.txt", 64)
    with pytest.raises(ValueError, match="embedding_dim=384 does not fit the backbone, whose hidden_size is 32"):
        recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--dev_signal", "none", "--embedding_dim", "384"))


def test_dropout_positives_cache_a_dropout_view_beside_the_clean_one(recipe, tiny_backbone, tmp_path):
    import json

    corpus = write_corpus(tmp_path / "c.txt", 64)
    metrics = recipe.main(
        tiny_args(
            tiny_backbone,
            corpus,
            tmp_path,
            "--dev_signal",
            "none",
            "--max_steps",
            "3",
            "--positives",
            "dropout",
            "--augmentation",
            "none",
        )
    )
    assert metrics["global_step"] == 3 and metrics["args"]["positives"] == "dropout"
    record = json.loads((tmp_path / "out" / "corpus.json").read_text())
    clean, dropout = Path(record["embedding_cache"]["path"]), Path(record["dropout_cache"]["path"])
    assert clean.parent == dropout.parent and dropout.name.startswith("corpus-dropout-")
    assert record["dropout_cache"]["key"] != record["embedding_cache"]["key"]
    again = recipe.main(
        tiny_args(
            tiny_backbone,
            corpus,
            tmp_path,
            "--dev_signal",
            "none",
            "--max_steps",
            "3",
            "--positives",
            "dropout",
            "--augmentation",
            "none",
            "--output_dir",
            str(tmp_path / "out2"),
        )
    )
    assert again["corpus"]["dropout_cache"]["reused"] and again["train_loss"] == metrics["train_loss"]


def test_accelerate_launch_smoke(tiny_backbone, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 64)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(SCRIPT),
        *tiny_args(
            tiny_backbone,
            corpus,
            tmp_path,
            "--num_train_epochs",
            "2",
            "--eval_steps",
            "2",
            "--checkpointing_steps",
            "3",
            "--report_to",
            "tensorboard",
        ),
    ]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # as a user's shell without it
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**env, "HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "***** Running training *****" in proc.stderr and "Total optimization steps = 8" in proc.stderr
    out = tmp_path / "out"
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 8 and metrics["best_dev_score"] is not None  # STS-B dev Spearman
    if metrics["cpu_threads"] is not None:  # a CPU run: the launcher's OMP_NUM_THREADS=1 did not stick
        assert metrics["cpu_threads"] == len(os.sched_getaffinity(0)) and metrics["mixed_precision"] == "no"
    corpus_record = json.loads((out / "corpus.json").read_text())
    assert corpus_record["unique"] == 64 and len(corpus_record["fingerprint_sha256"]) == 64
    assert yaml.safe_load((out / "training_config.yaml").read_text())["pooling"] == "mean"
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_6"
    assert list((out / "simskip").glob("events.out.tfevents.*")) or list(out.rglob("events.out.tfevents.*"))
    from transformers import AutoModel

    import hf_simskip  # noqa: F401  (registers simskip with AutoModel)

    model = AutoModel.from_pretrained(out / "final")
    emb = model.encode(["the movie was good", "what is a film"])
    # the default head reads the backbone's hidden states 0..n-1 (here 0, 1); the dev selection kept one of the
    # identity (u = 0, the gate closed), the closed form or a trained step, and the model and the log say which
    assert model.config.layers == [0, 1] and metrics["kept"] in ("identity", "initial", "trained")
    assert model.head.layer_branch.is_open == (metrics["kept"] != "identity") == bool(np.abs(emb[:, 32:]).any())
    assert emb.shape == (2, 64) and model.head.feature_std.abs().sum() > 0
    assert f"kept the {'trained head' if metrics['kept'] == 'trained' else metrics['kept']}" in proc.stderr
    assert model.config.encoder_name_or_path == tiny_backbone
    assert yaml.safe_load((out / "training_config.yaml").read_text())["augmentation"] == "mask+noise"


@pytest.fixture()
def fresh_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_the_launchers_mixed_precision_reaches_the_accelerator(
    recipe, tiny_backbone, tmp_path, monkeypatch, fresh_state
):
    """--mixed_precision defaults to None, so ACCELERATE_MIXED_PRECISION (what `accelerate launch
    --mixed_precision bf16` or a launch config sets) decides; bf16 autocast works on CPU too."""
    corpus = write_corpus(tmp_path / "c.txt", 64)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    metrics = recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--dev_signal", "none", "--max_steps", "2"))
    assert metrics["mixed_precision"] == "bf16" and metrics["args"]["output_dir"] == str(tmp_path / "out")


def test_without_a_data_folder_the_main_job_trains_on_the_embedded_corpus(
    recipe, tiny_backbone, tmp_path, monkeypatch, caplog, fresh_state
):
    """A fresh clone: no data folder anywhere. The corpus shipped with the package is used, the log says so,
    and the STS-B dev signal is turned off with a warning instead of failing."""
    monkeypatch.delenv("HF_SIMSKIP_DATA", raising=False)
    monkeypatch.setattr("hf_simskip.paths.default_data_candidates", lambda: [tmp_path / "nowhere"])
    args = [
        "--model_name_or_path",
        tiny_backbone,
        "--pooling",
        "mean",
        "--cache_dir",
        str(tmp_path / "cache"),
        "--output_dir",
        str(tmp_path / "out"),
        "--report_to",
        "none",
        "--max_steps",
        "2",
    ]
    metrics = recipe.main(args)
    assert list(metrics["corpus"]["sources"]) == ["embedded:default_corpus.txt"] and metrics["best_dev_score"] is None
    assert "no SentEval data folder: dev_signal turned off" in caplog.text
    assert "training on the corpus shipped with hf_simskip" in caplog.text
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--learning_rate", "1e38"], "learning_rate must be at most 1e3, got 1e+38"),  # before any work
        (["--model_name_or_path", "/nonexistent"], "backbone folder '/nonexistent' does not exist"),
        # a run that diverges in its first steps, with its progress bar open
        (["--layers", "none", "--temperature", "1e-39", "--max_steps", "2"], "training diverged by step 2"),
    ],
)
def test_the_script_reports_an_expected_error_in_one_line(tiny_backbone, tmp_path, bad, message):
    """issue 20: bad input is one line on stderr (`train_simcse_skip.py: error: ...`, exit code 1), no traceback;
    an error before any work is the only line."""
    corpus = write_corpus(tmp_path / "c.txt", 64)
    cmd = [sys.executable, str(SCRIPT), *tiny_args(tiny_backbone, corpus, tmp_path, "--dev_signal", "none", *bad)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    errors = [line for line in lines if "error:" in line]
    assert errors == [lines[-1]] and errors[0].startswith(f"train_simcse_skip.py: error: {message}"), lines[-3:]
    if bad[0] == "--learning_rate":
        assert lines == errors
    assert not (tmp_path / "out" / "final").exists()


def test_a_stage0_run_records_that_its_backbone_was_fine_tuned(recipe, tiny_backbone, tmp_path, fresh_state):
    """issue 20 item 11: after stage 0 the saved backbone differs from the one named as its base. The run says so in
    corpus.json["stage0_simcse"] (stage 0's settings; absent without stage 0), where the card reads it."""
    import json

    from safetensors.torch import load_file

    corpus = write_corpus(tmp_path / "c.txt", 64)
    base = load_file(Path(tiny_backbone) / "model.safetensors")

    def run(out, *extra):
        recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--dev_signal", "none", "--max_steps", "1", *extra))
        saved = load_file(tmp_path / out / "final" / "model.safetensors")
        changed = [k for k in base if not torch.equal(saved[f"encoder.{k}"], base[k])]
        return json.loads((tmp_path / out / "corpus.json").read_text()), changed

    record, changed = run("out", "--simcse_steps", "2", "--simcse_batch_size", "8")
    assert record["stage0_simcse"]["simcse_steps"] == 2 and changed  # a fine-tune, not an adapter
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    record, changed = run("plain", "--output_dir", str(tmp_path / "plain"))
    assert "stage0_simcse" not in record and not changed  # the backbone ships unchanged


@pytest.mark.parametrize("method", ["pca", "residual_pca"])
def test_a_closed_form_refiner_is_fitted_saved_and_loaded_like_any_head(
    recipe, tiny_backbone, tmp_path, fresh_state, method
):
    """issue 18: --method pca / residual_pca fits the layer branch on the corpus with no gradient step; final/ loads
    with AutoModel (with and without hf_simskip) and with sentence-transformers, and its card says it was not
    trained."""
    import json

    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from utils import WITHOUT_HF_SIMSKIP

    corpus = write_corpus(tmp_path / "c.txt", 64)
    metrics = recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--method", method, "--dev_signal", "none"))
    assert metrics["global_step"] == 0 and metrics["kept"] == "last"
    final = tmp_path / "out" / "final"
    model = AutoModel.from_pretrained(final)
    assert model.config.layer_closed_form == method and model.config.layer_hidden_dim == 0
    assert model.head.layer_branch.is_open and model.head.layer_branch.net is None
    sentences = ["the movie was good", "what is a film", "hello world"]
    emb = model.encode(sentences)
    assert np.abs(emb[:, 32:]).min() >= 0 and np.abs(emb[:, 32:]).any()  # u is on: the closed form is the model
    st = SentenceTransformer(str(final), trust_remote_code=True, device="cpu")
    np.testing.assert_allclose(st.encode(sentences), emb, atol=1e-5)
    np.save(tmp_path / "ref.npy", emb)
    code = WITHOUT_HF_SIMSKIP + (
        "import numpy as np, sys\nfrom transformers import AutoModel\n"
        "m = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "np.testing.assert_allclose(m.encode(sys.argv[3:]), np.load(sys.argv[2]), atol=1e-5)\nprint('OK')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(final), str(tmp_path / "ref.npy"), *sentences],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-2000:]
    card = (final / "README.md").read_text()
    assert "Closed-form, not trained" in card and json.loads((tmp_path / "out" / "metrics.json").read_text())["kept"]


@pytest.mark.parametrize("hidden, layers", [(32, 2), (48, 3)])
def test_the_default_follows_the_backbone_not_minilm(recipe, tmp_path, fresh_state, hidden, layers):
    """issue 18: layers, widths and the weight of u follow the backbone's config and the dev signal: the no-argument
    default on two tiny backbones of other depths and widths."""
    from transformers import AutoModel

    from utils import make_tiny_backbone

    backbone = make_tiny_backbone(tmp_path / "bb", hidden=hidden, layers=layers, seed=1)
    corpus = write_corpus(tmp_path / "c.txt", 64)
    metrics = recipe.main(tiny_args(backbone, corpus, tmp_path, "--max_steps", "4", "--eval_steps", "2"))
    model = AutoModel.from_pretrained(tmp_path / "out" / "final")
    c = model.config
    assert c.layers == list(range(layers)) and c.layer_dim == hidden and c.layer_hidden_dim == 4 * hidden
    assert c.layer_closed_form == "pca" and model.encode("a film").shape == (2 * hidden,)
    assert metrics["kept"] in ("identity", "initial", "trained") and set(metrics["dev_details"]) >= {"identity"}
    if metrics["kept"] != "identity":  # the weight the dev signal chose is the saved one
        assert (
            c.layer_scale
            == metrics["layer_scale"]
            == metrics["dev_details"]["initial" if metrics["kept"] == "initial" else f"step {metrics['best_step']}"][
                "layer_scale"
            ]
        )
