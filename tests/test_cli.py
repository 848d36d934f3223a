"""hf-simskip (cli.py): refine round trips and bad files, embed and refine from text, help texts, train/eval/card
wiring, the cache command and --version. What a failed write leaves on disk: test_faults_outputs.py."""

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

import hf_simskip
import hf_simskip.evaluation
from hf_simskip.cli import main

from utils import REPO, SENTENCES, head_only, results_json, tiny_sentences, tiny_simskip

COMMANDS = ["train", "eval", "refine", "embed", "card", "push", "export-st", "cache"]


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory):
    """A head-only SimSkip model for 128-d embeddings of another modality, saved."""
    folder = tmp_path_factory.mktemp("head") / "h"
    model = head_only(128)
    model.save_pretrained(folder)
    return folder, model


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_refine_npy_round_trip(head_dir, tmp_path, capsys):
    folder, model = head_dir
    x = np.random.default_rng(0).normal(size=(50, 128)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run(
        ["refine", "--model", folder, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"], capsys
    )
    assert code == 0, err
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(y, model.refine(x), atol=1e-6)
    assert not np.allclose(y, x)  # the perturbed head is not the identity
    assert "wrote" in out
    assert sorted(os.listdir(tmp_path)) == ["x.npy", "y.npy"]  # no temporary file left behind
    code, _, err = run(
        ["refine", "--model", folder, "--input", tmp_path / "x.npy", "--output", tmp_path / "n.npy", "--normalize"],
        capsys,
    )
    assert code == 0, err
    np.testing.assert_allclose(np.linalg.norm(np.load(tmp_path / "n.npy"), axis=1), 1.0, atol=1e-5)


def test_refine_npz_and_parquet(head_dir, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder, model = head_dir
    x = np.random.default_rng(1).normal(size=(12, 128)).astype(np.float32)
    np.savez(tmp_path / "x.npz", train=x, other=x[:2])
    code, _, err = run(
        ["refine", "--model", folder, "--input", tmp_path / "x.npz", "--output", tmp_path / "y.npz"], capsys
    )
    assert code == 1 and "pass --key" in err and "['train', 'other']" in err
    code, _, err = run(
        ["refine", "--model", folder, "--input", tmp_path / "x.npz", "--key", "train", "--output", tmp_path / "y.npz"],
        capsys,
    )
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["refined"], model.refine(x), atol=1e-6)

    pq.write_table(pa.table({"id": list(range(12)), "emb": [list(r) for r in x]}), tmp_path / "x.parquet")
    code, _, err = run(
        [
            "refine",
            "--model",
            folder,
            "--input",
            tmp_path / "x.parquet",
            "--column",
            "emb",
            "--output",
            tmp_path / "y.parquet",
        ],
        capsys,
    )
    assert code == 0, err
    table = pq.read_table(tmp_path / "y.parquet")
    assert table.column_names == ["id", "emb", "refined"] and table.column("id").to_pylist() == list(range(12))
    np.testing.assert_allclose(np.array(table.column("refined").to_pylist()), model.refine(x), atol=1e-6)


def test_console_script_exit_code_and_stderr(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_simskip.cli",
            "refine",
            "--model",
            str(tmp_path),
            "--input",
            str(tmp_path / "missing.npy"),
            "--output",
            str(tmp_path / "y.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1 and "missing.npy" in res.stderr and "does not exist" in res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_each_help_is_useful(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "examples:" in out and f"hf-simskip {command}" in out


def test_top_level_help_lists_commands(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(c in err for c in COMMANDS)


def test_train_dry_run_and_missing_recipe(tmp_path, capsys):
    recipe = tmp_path / "train_simcse_skip.py"
    recipe.write_text("")
    code, out, _ = run(
        [
            "train",
            "--recipe",
            recipe,
            "--launcher-args=--num_processes 1",
            "--dry-run",
            "--",
            "--learning_rate",
            "3e-4",
        ],
        capsys,
    )
    assert code == 0
    assert "-m accelerate.commands.launch --num_processes 1" in out and out.strip().endswith(
        f"{recipe} --learning_rate 3e-4"
    )
    code, _, err = run(["train", "--recipe", tmp_path / "nope.py", "--dry-run"], capsys)
    assert code == 1 and "training recipe not found" in err and "--recipe" in err


def test_a_failing_recipe_is_its_own_line_and_exit_code(tmp_path, capfd):
    """`hf-simskip train` ran `accelerate launch` as a child, which added a CalledProcessError traceback after the
    recipe's one-line error and turned its exit code into 1. Now: the recipe's line, nothing more, and its code; a
    recipe killed by a signal (it could not say anything) gets one line and the shell's 128 + N."""
    launcher = "--launcher-args=--num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no"
    failing = tmp_path / "failing.py"
    failing.write_text("import sys\nsys.stderr.write('failing.py: error: bad input\\n')\nsys.exit(3)\n")
    capfd.readouterr()
    code = main(["train", "--recipe", str(failing), launcher, "--learning_rate", "3e-4"])
    err = capfd.readouterr().err
    assert code == 3 and err == "failing.py: error: bad input\n", err
    killed = tmp_path / "killed.py"
    killed.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    code = main(["train", "--recipe", str(killed), launcher])
    err = capfd.readouterr().err
    assert code == 137 and err == "hf-simskip train: error: the recipe was killed by signal SIGKILL\n", err


def test_eval_calls_the_evaluator_lazily(tiny_backbone, tmp_path, capsys, monkeypatch):
    tiny_simskip(tiny_backbone).save_pretrained(tmp_path / "m")
    seen = {}

    def fake_evaluate(encode, tasks=None, data_dir=None, mode="full", seed=1111, device="cpu", **kw):
        seen.update(shape=encode(["hello world", "a good movie"]).shape, tasks=tasks, mode=mode, seed=seed)
        return results_json(mode=mode)

    monkeypatch.setattr(hf_simskip.evaluation, "evaluate", fake_evaluate)
    code, out, err = run(
        [
            "eval",
            "--model",
            tmp_path / "m",
            "--tasks",
            "CR",
            "MR",
            "--mode",
            "fast",
            "--output",
            tmp_path / "m" / "eval_results.json",
        ],
        capsys,
    )
    assert code == 0, err
    assert seen == {"shape": (2, 64), "tasks": ["CR", "MR"], "mode": "fast", "seed": 1111}  # [f(x), u]
    saved = json.loads((tmp_path / "m" / "eval_results.json").read_text())
    assert saved["tasks"] == results_json()["tasks"] and saved["protocol"]["model"] == str(tmp_path / "m")
    assert "CR" in out and "81.23" in out
    code, out, err = run(["card", tmp_path / "m", "--repo-id", "org/m"], capsys)
    assert code == 0, err
    assert "| CR | acc | 81.23 |" in (tmp_path / "m" / "README.md").read_text()


@pytest.mark.parametrize(
    "case,needle",
    [
        ("float64_overflow", "values up to 1e+39 do not fit in float32"),
        ("empty_parquet", "holds no rows"),
        ("same_path", "is the input file: refining would replace the raw embeddings"),
        ("no_config", "has no config.json: expected a folder saved by SimSkipModel.save_pretrained"),
        ("truncated_weights", "could not load the weights of"),
    ],
)
def test_refine_refuses_with_one_line_that_says_why(head_dir, tmp_path, capsys, case, needle):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    folder, _ = head_dir
    x = np.random.default_rng(3).normal(size=(4, 128))
    inp, out, model = tmp_path / "x.npy", tmp_path / "y.npy", folder
    np.save(inp, x)
    if case == "float64_overflow":
        x[2, 5] = 1e39
        np.save(inp, x)
    elif case == "empty_parquet":
        inp = tmp_path / "x.parquet"
        pq.write_table(pa.table({"emb": pa.array([], type=pa.list_(pa.float32()))}), inp)
    elif case == "same_path":
        out = inp
    elif case in ("no_config", "truncated_weights"):
        model = tmp_path / "broken"
        shutil.copytree(folder, model)
        if case == "no_config":
            (model / "config.json").unlink()
        else:
            weights = model / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    before = inp.read_bytes()
    code, _, err = run(["refine", "--model", model, "--input", inp, "--output", out], capsys)
    assert code == 1 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err  # one line, no traceback
    assert inp.read_bytes() == before  # the raw embeddings are untouched
    if case == "same_path":  # with --overwrite it is allowed
        code, _, err = run(["refine", "--model", model, "--input", inp, "--output", out, "--overwrite"], capsys)
        assert code == 0, err


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_batch_size_must_be_a_positive_whole_number(head_dir, tmp_path, capsys, value):
    folder, _ = head_dir
    np.save(tmp_path / "x.npy", np.ones((3, 128), dtype=np.float32))
    with pytest.raises(SystemExit) as exit_info:  # argparse: a usage error, exit status 2
        main(
            [
                "refine",
                "--model",
                str(folder),
                "--input",
                str(tmp_path / "x.npy"),
                "--output",
                str(tmp_path / "y.npy"),
                "--batch-size",
                value,
            ]
        )
    assert exit_info.value.code == 2
    assert "expected a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "y.npy").exists()  # nothing written, not even an empty result


def test_refine_takes_stacked_layer_embeddings_for_a_layer_aware_head(tmp_path, capsys):
    """A head-only layer-aware model refines (n, 1 + L, d) stacks (the embedding, then the layers it reads)
    and refuses the embeddings alone with a message that says what it needs."""
    model = head_only(16, layers=[2, 4, 5])
    with torch.no_grad():
        model.head.layer_branch.gate.fill_(0.5)
    model.save_pretrained(tmp_path / "m")
    stacks = np.random.default_rng(4).normal(size=(6, 4, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", stacks)
    code, out, err = run(
        ["refine", "--model", tmp_path / "m", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"], capsys
    )
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.refine(stacks), atol=1e-6)
    assert np.load(tmp_path / "y.npy").shape == (6, 32)
    np.save(tmp_path / "flat.npy", stacks[:, 0])
    code, _, err = run(
        ["refine", "--model", tmp_path / "m", "--input", tmp_path / "flat.npy", "--output", tmp_path / "z.npy"], capsys
    )
    assert code == 1 and "(n, 4, 16)" in err and "reads 3 hidden layers besides the embedding" in err, err
    assert not (tmp_path / "z.npy").exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"hf-simskip {hf_simskip.__version__}\n"


@pytest.mark.parametrize(
    "argv,launcher,recipe_args",
    [
        (["--config", "recipes/configs/noise.yaml"], "", "--config recipes/configs/noise.yaml"),
        (["--output_dir", "out"], "", "--output_dir out"),
        (  # train's own options anywhere, the recipe's in their order, negative numbers as values
            [
                "--output_dir",
                "out",
                "--launcher-args=--num_processes 1",
                "--learning_rate",
                "3e-4",
                "--layer_scale",
                "-1",
            ],
            "--num_processes 1",
            "--output_dir out --learning_rate 3e-4 --layer_scale -1",
        ),
        (["--rec", "x", "--dry"], "", "--rec x --dry"),  # never taken for abbreviations of --recipe / --dry-run
        (["--lr", "1", "--", "--dry-run", "--recipe", "y", "--"], "", "--lr 1 --dry-run --recipe y --"),
    ],
)
def test_train_hands_every_other_argument_to_the_recipe(tmp_path, capsys, argv, launcher, recipe_args):
    recipe = tmp_path / "train_simcse_skip.py"
    recipe.write_text("")
    code, out, err = run(["train", "--recipe", recipe, "--dry-run", *argv], capsys)
    assert code == 0, err
    cmd = f"-m accelerate.commands.launch {launcher} {recipe} {recipe_args}".replace("  ", " ")
    assert out.strip().endswith(cmd), out


def test_every_train_example_of_the_help_runs(tmp_path, capsys):
    """The examples of `hf-simskip train --help`, of the module docstring and of docs/sharing.md parse, as a
    dry run (issue 21: the first of them stopped with 'unrecognized arguments')."""
    recipe = tmp_path / "train_simcse_skip.py"
    recipe.write_text("")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    examples = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("hf-simskip")]
    import hf_simskip.cli as cli

    for text in (cli.__doc__, (REPO / "docs" / "sharing.md").read_text(encoding="utf-8")):
        examples += [line.strip() for line in text.splitlines() if line.strip().startswith("hf-simskip train")]
    assert len(examples) >= 8
    for example in examples:
        words = shlex.split(example.split("#")[0])[1:]
        code, out, err = run(["train", "--dry-run", "--recipe", recipe, *words[1:]], capsys)
        assert code == 0 and str(recipe) in out, (example, err)


def test_other_commands_still_refuse_unknown_options(head_dir, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.ones((2, 128), dtype=np.float32))
    with pytest.raises(SystemExit) as exc:
        main(
            ["refine", "--model", str(head_dir[0]), "--input", str(tmp_path / "x.npy"), "--output", "y.npy", "--bogus"]
        )
    assert exc.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_multi_gpu_config_leaves_the_process_count_to_the_launch():
    """No hard-coded process count: accelerate asks for --num_processes (ClusterConfig's -1) instead of
    starting a count written for another machine, and the file says how to pass it."""
    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    path = REPO / "recipes" / "accelerate" / "multi_gpu.yaml"
    assert "num_processes" not in yaml.safe_load(path.read_text())
    assert ClusterConfig.from_yaml_file(path).num_processes == -1
    assert "--num_processes" in path.read_text()


def test_embed_and_refine_from_text_on_a_layer_aware_model(tiny_backbone, tmp_path, capsys):
    """`embed` writes the head's inputs (n, 1 + L, d); `refine --input` of them, `refine --text-file` and
    SimSkipModel.encode agree."""
    import pyarrow.parquet as pq

    from hf_simskip.training.cache import embed_sentences

    model = tiny_simskip(tiny_backbone)  # layer-aware: x, then hidden states 0 and 1 of the 32-wide backbone
    model.save_pretrained(tmp_path / "m")
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    code, out, err = run(["embed", "--model", tmp_path / "m", "--input", text, "--output", tmp_path / "s.npy"], capsys)
    assert code == 0, err
    stacks = np.load(tmp_path / "s.npy")
    assert stacks.shape == (len(SENTENCES), 3, 32) and "x, then 2 hidden layers" in out
    np.testing.assert_allclose(stacks, embed_sentences(model, SENTENCES).numpy(), atol=1e-5)

    reference = model.encode(SENTENCES)
    for source in (["--input", tmp_path / "s.npy"], ["--text-file", text]):
        code, _, err = run(["refine", "--model", tmp_path / "m", *source, "--output", tmp_path / "r.npy"], capsys)
        assert code == 0, err
        np.testing.assert_allclose(np.load(tmp_path / "r.npy"), reference, atol=1e-5)

    code, _, err = run(
        ["refine", "--model", tmp_path / "m", "--text-file", text, "--output", tmp_path / "r.parquet"], capsys
    )
    assert code == 0, err
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column("sentence").to_pylist() == SENTENCES
    np.testing.assert_allclose(np.array(table.column("refined").to_pylist()), reference, atol=1e-5)
    code, _, err = run(
        ["embed", "--model", tmp_path / "m", "--input", text, "--output", tmp_path / "s.parquet"], capsys
    )
    assert code == 0, err
    code, _, err = run(  # a parquet of stacks refines too
        [
            "refine",
            "--model",
            tmp_path / "m",
            "--input",
            tmp_path / "s.parquet",
            "--column",
            "head_inputs",
            "--output",
            tmp_path / "r2.npy",
        ],
        capsys,
    )
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "r2.npy"), reference, atol=1e-5)


@pytest.mark.parametrize("command", ["refine", "embed"])
def test_text_needs_a_backbone_and_says_so(head_dir, tmp_path, capsys, command):
    (tmp_path / "s.txt").write_text("a sentence\n", encoding="utf-8")
    source = ["--text-file" if command == "refine" else "--input", tmp_path / "s.txt"]
    code, _, err = run([command, "--model", head_dir[0], *source, "--output", tmp_path / "y.npy"], capsys)
    assert code == 1 and "head-only" in err and "refine --input" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "y.npy").exists()


def test_cache_list_and_clear(tiny_backbone, tmp_path, capsys, monkeypatch):
    from hf_simskip.training.cache import build_embedding_cache

    model = tiny_simskip(tiny_backbone)
    root = tmp_path / "caches"
    _, a = build_embedding_cache(model, SENTENCES[:7], cache_dir=root, name="a")
    _, b = build_embedding_cache(model, tiny_sentences(10), cache_dir=root, name="b")
    monkeypatch.setenv("HF_SIMSKIP_CACHE", str(root))  # the default folder, as training resolves it
    code, out, err = run(["cache", "list"], capsys)
    assert code == 0, err
    assert a["key"][:12] in out and b["key"][:12] in out and "7x3x32" in out and "10x3x32" in out
    assert "2 cache(s)" in out and str(root) in out

    code, _, err = run(["cache", "clear", "--cache-dir", root], capsys)
    assert code == 1 and "pass either --all or the KEYs" in err
    code, _, err = run(["cache", "clear", "ffff", "--cache-dir", root], capsys)
    assert code == 1 and "no cache matches KEY 'ffff'" in err
    code, out, err = run(["cache", "clear", a["key"][:8], "--cache-dir", root], capsys)
    assert code == 0, err
    assert not os.path.exists(a["path"]) and os.path.exists(b["path"]) and f"removed {a['path']}" in out
    code, out, err = run(["cache", "clear", "--all"], capsys)
    assert code == 0 and not os.path.exists(b["path"]), err
    code, out, _ = run(["cache", "list", "--cache-dir", root], capsys)
    assert code == 0 and "no embedding caches in" in out
