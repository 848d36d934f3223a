"""Every command the documentation shows runs (issue 21, "Done when").

The commands are collected from README.md and docs/*.md (code blocks, the indented blocks of docs/training.md
and inline commands), from the examples of every `hf-simskip` sub-command's --help and from the module
docstrings of hf_simskip/cli.py and recipes/train_simcse_skip.py. Each one must be listed in COMMANDS below,
with how it runs here (offline, on a tiny random backbone and the committed SentEval fixture, long jobs with
tiny overrides) or why it does not (the network, a GPU, an interactive prompt, the environment itself, a
fragment of a sentence). A command added to the documentation without an entry here fails
`test_every_documented_command_is_listed`; a listed one that no longer runs fails its own test. The README's
Python snippets run too, on tiny stand-ins (and as written, with the packaged backbone, in the slow tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from utils import FIXTURES, REPO, head_only, results_json, tiny_simskip, write_corpus

FIXTURE_DATA = FIXTURES / "senteval"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PREFIXES = ("hf-simskip", "python ", "accelerate ", "torchrun ", "ACCELERATE_USE_CPU=", "pip ", "bash ", "ruff ")
SHELLS = ("bash", "sh", "shell", "console", "")  # code-block languages whose lines are commands


# --- what the documentation shows ---------------------------------------------------------------
def _lines(code: str) -> list[str]:
    """Shell lines of a code block: continuations joined, comments and blank lines dropped."""
    out, pending = [], ""
    for raw in code.splitlines():
        line = (pending + " " + raw.strip()) if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        line = re.sub(r"(^|\s+)#.*$", "", line).strip()
        if line:
            out.append(" ".join(line.split()))
    return out


def documented_commands() -> dict[str, list[str]]:
    """command -> where it is shown."""
    found: dict[str, list[str]] = {}

    def add(command: str, where: str) -> None:
        found.setdefault(command, []).append(where)

    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        name = doc.relative_to(REPO).as_posix()
        for lang, code in re.findall(r"```([a-z]*)\n(.*?)```", text, flags=re.S):
            if lang in SHELLS:
                for line in _lines(code):
                    add(line, f"{name} (code block)")
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for block in re.findall(r"(?:^|\n\n)((?: {4}.*(?:\n|$))+)", prose):
            for line in _lines(textwrap.dedent(block)):
                if line.startswith(PREFIXES):
                    add(line, f"{name} (indented block)")
        for span in re.findall(r"`([^`]+)`", prose):
            span = " ".join(span.split())
            if span.startswith(PREFIXES):
                add(span, f"{name} (inline)")
    from hf_simskip.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.choices and "eval" in a.choices]
    for command, p in sub.choices.items():
        for line in (p.epilog or "").splitlines()[1:]:
            for cmd in _lines(line):
                add(cmd, f"hf-simskip {command} --help")
    import hf_simskip.cli

    for module, name in ((hf_simskip.cli, "hf_simskip/cli.py docstring"), (_recipe(), "the recipe's docstring")):
        for line in _lines(textwrap.dedent(module.__doc__)):
            if line.startswith(("hf-simskip", "accelerate launch")):
                add(line, name)
    return found


def _recipe():
    import train_simcse_skip

    return train_simcse_skip


@contextlib.contextmanager
def _chdir(path):
    """cd for the duration (contextlib.chdir is Python >= 3.11; the project supports 3.10)."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _first_line(code: str) -> str:
    return code.strip().splitlines()[0].split("  #")[0].strip()


# --- how each command runs here ---------------------------------------------------------------------
@dataclass
class Run:
    """Run the command. ``extra``: tiny overrides appended; ``replace``: placeholders of the documentation and
    what stands for them here; ``slow``: seconds to minutes (the packaged backbone, a launcher, a training run)."""

    extra: tuple = ()
    replace: dict = field(default_factory=dict)
    slow: bool = False
    needs_cuda: bool = False


@dataclass
class Skip:
    """Not run here, for this reason."""

    reason: str


NETWORK = "needs the network"
EVAL_TINY = ("--data-dir", "{data}", "--tasks", "CR", "STSB")  # two tasks of the committed fixture
EVAL = Run(extra=EVAL_TINY)
EVAL_MINILM = Run(extra=EVAL_TINY, slow=True)  # the packaged all-MiniLM-L6-v2: its probe takes ~30 s
RECIPE = Run(extra=("{tiny_recipe}",), slow=True)  # 64 sentences, batch 16, 2 steps (tiny_recipe_args)
RECIPE_CLOSED_FORM = Run(extra=("{tiny_recipe_no_steps}",), slow=True)  # the same, without --max_steps
FRAGMENT = Skip("a fragment of a sentence (a program or a part of a command), not a command")

COMMANDS: dict[str, Run | Skip] = {
    # --- set up, tests, CI -----------------------------------------------------------------------------
    "pip install torch==2.13.0": Skip("installs packages: changes the environment the tests run in"),
    "pip install torch --index-url https://download.pytorch.org/whl/cpu": Skip(f"{NETWORK} (PyTorch's index)"),
    'pip install -e ".[dev]"': Skip("installs packages: changes the environment the tests run in"),
    "python -m pytest -q": Skip("the test suite itself"),
    "python -m pytest -q -m slow": Skip("the test suite itself"),
    "ruff check . && ruff format --check .": Skip("CI's lint step over the whole tree, not a usage example"),
    "bash .ci/run": Skip(f"CI: builds two virtual environments from PyPI ({NETWORK}, minutes)"),
    "python -m hf_simskip.evaluation.download --data-dir DIR": Skip(
        f"{NETWORK} (SentEval's and SimCSE's servers); tests/test_evaluation_download.py runs it against local servers"
    ),
    "python benchmarks/eval_speed.py --mode full": Skip("a benchmark over the whole SentEval data (minutes)"),
    "python benchmarks/job_vs_encode.py": Skip(
        "a benchmark: the main job and an encode of its 91,723 sentences (15 min)"
    ),
    "python benchmarks/encode_throughput.py --n 2000 --rounds 3": Skip(
        "a benchmark: three encoders, 2,000 sentences, 3 rounds (minutes)"
    ),
    # --- training -----------------------------------------------------------------------------------------
    "accelerate launch recipes/train_simcse_skip.py": RECIPE,
    "python recipes/train_simcse_skip.py": RECIPE,
    "accelerate launch recipes/train_simcse_skip.py --method pca": RECIPE_CLOSED_FORM,
    "python recipes/train_simcse_skip.py --help": Run(),
    "accelerate launch recipes/train_simcse_skip.py --train_file my_sentences.txt": RECIPE,
    "accelerate launch recipes/train_simcse_skip.py --dev_file my_dev.tsv": RECIPE,
    "accelerate launch recipes/train_simcse_skip.py --dataset_name my_dataset --text_column sentence": RECIPE,
    "accelerate launch recipes/train_simcse_skip.py --dataset_name Salesforce/wikitext --dataset_config_name "
    "wikitext-103-raw-v1 --text_column text": Skip(f"{NETWORK} (a Hub dataset)"),
    "accelerate launch recipes/train_simcse_skip.py --model_name_or_path princeton-nlp/unsup-simcse-bert-base-uncased "
    "--pooling cls_before_pooler": Skip(f"{NETWORK} (a Hub model)"),
    "accelerate launch recipes/train_simcse_skip.py --config recipes/configs/noise.yaml --learning_rate 3e-4": RECIPE,
    "accelerate launch --config_file recipes/accelerate/single_gpu_bf16.yaml recipes/train_simcse_skip.py --config "
    "recipes/configs/simcse_bert_base.yaml": Skip(f"a GPU with bf16, and {NETWORK} (SimCSE BERT-base from the Hub)"),
    "ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 recipes/train_simcse_skip.py": RECIPE,
    "accelerate config": Skip("an interactive questionnaire"),
    "accelerate launch --multi_gpu --num_machines 2 --num_processes 8 --machine_rank 0 --main_process_ip 10.0.0.1 "
    "--main_process_port 29500 recipes/train_simcse_skip.py --output_dir /data/simskip": Skip(
        "needs 2 machines with GPUs"
    ),
    "accelerate launch --multi_gpu --num_machines 2 --num_processes 8 --machine_rank 1 --main_process_ip 10.0.0.1 "
    "--main_process_port 29500 recipes/train_simcse_skip.py --output_dir /data/simskip": Skip(
        "needs 2 machines with GPUs"
    ),
    "ACCELERATE_USE_CPU=1 torchrun --nnodes 2 --nproc_per_node 1 --node_rank 0 --master_addr 127.0.0.1 --master_port "
    "29500 recipes/train_simcse_skip.py --output_dir out/node0": Skip(
        "two launches at once; tests/test_training_multinode.py runs them"
    ),
    "ACCELERATE_USE_CPU=1 torchrun --nnodes 2 --nproc_per_node 1 --node_rank 1 --master_addr 127.0.0.1 --master_port "
    "29500 recipes/train_simcse_skip.py --output_dir out/node1": Skip(
        "two launches at once; tests/test_training_multinode.py runs them"
    ),
    "accelerate launch --multi_gpu --num_processes 4 recipes/train_simcse_skip.py": Skip("needs 4 GPUs"),
    "accelerate launch --config_file recipes/accelerate/multi_gpu.yaml --num_processes 4 recipes/train_simcse_skip.py": (
        Skip("needs 4 GPUs")
    ),
    "accelerate launch --cpu --num_processes 2": Skip(
        "a fragment: docs/training.md names it as the launch that starts ONE process"
    ),
    "accelerate launch": FRAGMENT,
    "accelerate launch --mixed_precision bf16": FRAGMENT,
    "ACCELERATE_USE_CPU=1": FRAGMENT,
    "hf-simskip train --config recipes/configs/noise.yaml": RECIPE,
    "hf-simskip train --config recipes/configs/noise.yaml --output_dir out": RECIPE,
    "hf-simskip train --config recipes/configs/noise.yaml --learning_rate 3e-4 --output_dir out": RECIPE,
    "hf-simskip train --launcher-args='--num_processes 2' --learning_rate 3e-4": RECIPE,
    "hf-simskip train --dry-run --output_dir out": Run(),
    "hf-simskip train": FRAGMENT,
    "hf-simskip train -- --help": Run(slow=True),
    # --- evaluation ---------------------------------------------------------------------------------------
    "hf-simskip eval --model minilm --mode full --output baseline.json": EVAL_MINILM,
    "hf-simskip eval --model outputs/simskip/final --mode full --output refined.json": EVAL,
    "hf-simskip eval --model outputs/simskip/final --mode full --device cuda --output refined.json": Run(
        extra=EVAL_TINY, needs_cuda=True
    ),
    "python eval/compare.py baseline.json refined.json --output compare.png": Run(),
    "hf-simskip eval --model out/final --mode fast --output out/final/eval_results.json": EVAL,
    "hf-simskip eval --model minilm --mode fast --output out/final/baseline_eval_results.json": EVAL_MINILM,
    "hf-simskip eval --model minilm --tasks CR MR --output baseline_eval_results.json": EVAL_MINILM,
    "hf-simskip eval --embeddings cache.npz --mode full": EVAL,
    "hf-simskip eval": FRAGMENT,
    "hf-simskip eval --output": FRAGMENT,
    # --- refine, embed, caches ----------------------------------------------------------------------------
    "hf-simskip refine --model my-simskip --text-file sentences.txt --output refined.npy": Run(),
    "hf-simskip embed --model my-simskip --input sentences.txt --output stacks.npy": Run(),
    "hf-simskip refine --model my-simskip --input stacks.npy --output refined.npy": Run(),
    "hf-simskip refine --model out/head --input x.npy --output refined.npy": Run(),
    "hf-simskip refine --model out/head --input image_emb.npy --output refined.npy": Run(),
    "hf-simskip refine --model out/head --input emb.npz --key train --output refined.npz": Run(),
    "hf-simskip refine --model out/head --input table.parquet --column embedding --output refined.parquet": Run(),
    "hf-simskip refine --model out/head --input table.parquet --column embedding --output out.parquet": Run(),
    "hf-simskip refine --model out/head --input emb.npz --key train --output emb.npz --overwrite": Run(),
    "hf-simskip refine --model out/final --text-file sentences.txt --output refined.npy": Run(),
    "hf-simskip refine --model out/final --input stacks.npy --output refined.npy": Run(),
    "hf-simskip refine --text-file": FRAGMENT,
    "hf-simskip embed --model out/final --input sentences.txt --output stacks.npy": Run(),
    "hf-simskip embed --model out/final --input sentences.txt --output stacks.parquet --batch-size 64": Run(),
    "hf-simskip cache list": Run(),
    "hf-simskip cache clear 3f2a9c1b": Run(replace={"3f2a9c1b": "{cache_key}"}),
    "hf-simskip cache clear KEY": Run(replace={"KEY": "{other_cache_key}"}),
    "hf-simskip cache clear --all --cache-dir /data/caches": Run(replace={"/data/caches": "{other_caches}"}),
    "hf-simskip cache clear": FRAGMENT,
    # --- cards, the Hub, sentence-transformers ------------------------------------------------------------
    "hf-simskip card out/final --repo-id me/simskip-minilm": Run(),
    "hf-simskip card out/final --results eval.json --baseline-results base.json": Run(),
    "hf-simskip card": FRAGMENT,
    "hf-simskip push out/final --repo-id me/simskip-minilm --private": Skip(
        f"uploads to the Hub ({NETWORK}); tests/test_sharing_hub.py runs it against a fake Hub"
    ),
    "hf-simskip push out/final --repo-id me/simskip-minilm": Skip(f"uploads to the Hub ({NETWORK})"),
    "hf-simskip push out/final --repo-id me/simskip-minilm --revision v2 --create-pr": Skip(
        f"uploads to the Hub ({NETWORK})"
    ),
    "hf-simskip export-st --model out/final --output out/st": Run(),
    "hf-simskip export-st --model out/final --output out/final-st": Run(),
    "hf-simskip export-st": FRAGMENT,
    "hf-simskip --version": Run(),
    "hf-simskip": FRAGMENT,
}


def test_every_documented_command_is_listed():
    """A command shown in the documentation or a --help without an entry in COMMANDS (or an entry that no
    longer appears anywhere) fails here: the documentation cannot gain an example that no test runs."""
    documented = documented_commands()
    missing = {cmd: where for cmd, where in documented.items() if cmd not in COMMANDS}
    assert not missing, f"documented commands without an entry in COMMANDS: {json.dumps(missing, indent=1)}"
    stale = sorted(set(COMMANDS) - set(documented))
    assert not stale, f"COMMANDS lists commands no documentation shows: {stale}"
    assert all(spec.reason.strip() for spec in COMMANDS.values() if isinstance(spec, Skip))


# --- the folder the commands run in ---------------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(tiny_backbone, tmp_path_factory):
    """A folder laid out as the documentation assumes (a repository checkout with a finished run): recipes/ and
    eval/ of the checkout, tiny models where the commands name models, and every input file they read."""
    from hf_simskip.cli import main
    from hf_simskip.training.cache import build_embedding_cache

    ws = tmp_path_factory.mktemp("docs")
    for name in ("recipes", "eval"):
        (ws / name).symlink_to(REPO / name)
    model = tiny_simskip(tiny_backbone)  # layer-aware: hidden states 0, 1 besides x; 64 wide
    for folder in ("my-simskip", "out/final", "outputs/simskip/final"):
        model.save_pretrained(ws / folder)
    head_only(16).save_pretrained(ws / "out" / "head")
    sentences = ["A gripping film.", "Who wrote Hamlet?", "The plot was thin.", "How far is the moon?"]
    (ws / "sentences.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    write_corpus(ws / "my_sentences.txt", 64)
    (ws / "my_dev.tsv").write_text(
        "sentence\tlabel\n" + "".join(f"{s}\t{'question' if '?' in s else 'other'}\n" for s in sentences * 5),
        encoding="utf-8",
    )
    import datasets

    corpus = (ws / "my_sentences.txt").read_text(encoding="utf-8").split()
    datasets.Dataset.from_dict({"sentence": [" ".join(corpus[i : i + 5]) for i in range(0, 320, 5)]}).save_to_disk(
        str(ws / "my_dataset")
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 16)).astype("float32")
    np.save(ws / "image_emb.npy", x)
    np.save(ws / "x.npy", x)
    np.savez(ws / "emb.npz", train=x, test=x[:2])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(6)), "embedding": x.tolist()}), ws / "table.parquet")
    np.save(ws / "stacks.npy", model.map_sentences(sentences, lambda h: h).numpy())  # (4, 3, 32)
    (ws / "eval.json").write_text(json.dumps(results_json(1.0)))
    (ws / "base.json").write_text(json.dumps(results_json(0.97)))
    # precomputed vectors of every sentence of the fixture's CR and STS-B (hf-simskip eval --embeddings)
    seen: list[str] = []

    def record(batch):
        seen.extend(batch)
        return model.encode(batch)

    from hf_simskip.evaluation import evaluate

    evaluate(record, tasks=["CR", "STSB"], data_dir=FIXTURE_DATA, mode="fast")
    unique = sorted(set(seen))
    np.savez(ws / "cache.npz", sentences=np.array(unique), embeddings=model.encode(unique))
    # the inputs of eval/compare.py, scored with the protocol of the documented eval commands (full mode), which
    # rewrite them in whatever order the tests run
    with _chdir(ws):
        for name, folder in (("baseline.json", "my-simskip"), ("refined.json", "out/final")):
            assert main(["eval", "--model", folder, "--output", name, *_fill(EVAL_TINY, {"data": FIXTURE_DATA})]) == 0
    # embedding caches to list and clear: two in the default folder ($HF_SIMSKIP_CACHE), one elsewhere
    keys = [
        str(build_embedding_cache(model, part, cache_dir=ws / "caches")[1]["key"])[:12]
        for part in (sentences, sentences[:3])
    ]
    (ws / "other_caches").mkdir()
    build_embedding_cache(model, sentences[:2], cache_dir=ws / "other_caches")
    return {"path": ws, "backbone": tiny_backbone, "cache_key": keys[0], "other_cache_key": keys[1]}


def _fill(items, values: dict) -> list[str]:
    return [str(values.get(item[1:-1], item)) if item.startswith("{") else item for item in items]


def tiny_recipe_args(ws: Path, backbone: str, name: str, steps: bool = True) -> list[str]:
    """Tiny overrides for a recipe run: the random backbone, the fixture data, 64 sentences, batch 16, 2 steps
    (none for a closed-form method), this run's own output and cache folders."""
    args = ["--model_name_or_path", backbone, "--pooling", "mean", "--data_dir", str(FIXTURE_DATA)]
    args += ["--cache_dir", str(ws / "recipe-cache"), "--output_dir", str(ws / "runs" / name)]
    args += ["--max_train_samples", "64", "--per_device_train_batch_size", "16", "--encode_batch_size", "16"]
    return args + (["--max_steps", "2"] if steps else [])


def _slug(command: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", command.lower()).strip("-")[:80]


def _expand(command: str, spec: Run, ws: dict) -> list[str]:
    """The command's argv here: the documentation's placeholders replaced, tiny overrides appended."""
    values = {
        "cache_key": ws["cache_key"],
        "other_cache_key": ws["other_cache_key"],
        "other_caches": ws["path"] / "other_caches",
        "data": FIXTURE_DATA,
    }
    for placeholder, value in spec.replace.items():
        command = command.replace(placeholder, _fill([value], values)[0])
    extra = []
    for item in spec.extra:
        if item in ("{tiny_recipe}", "{tiny_recipe_no_steps}"):
            extra += tiny_recipe_args(ws["path"], ws["backbone"], _slug(command), item == "{tiny_recipe}")
        else:
            extra += _fill([item], values)
    return shlex.split(command) + extra


def _last_value(argv: list[str], option: str) -> str | None:
    """The value of the last ``option`` in ``argv`` (the one argparse keeps)."""
    spots = [i for i, a in enumerate(argv[:-1]) if a == option]
    return argv[spots[-1] + 1] if spots else None


def _params(slow: bool):
    out = []
    for command, spec in COMMANDS.items():
        if not isinstance(spec, Run) or spec.slow != slow:
            continue
        marks = [pytest.mark.slow] if slow else []
        if spec.needs_cuda:
            marks.append(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))
        out.append(pytest.param(command, marks=marks, id=_slug(command)[:60]))
    return out


def run_command(command: str, ws: dict, capsys) -> None:
    spec = COMMANDS[command]
    argv = _expand(command, spec, ws)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_SIMSKIP_CACHE": str(ws["path"] / "caches")}
    with _chdir(ws["path"]):
        if (
            argv[0] == "hf-simskip"
            and argv[1] != "train"
            or argv[:2] == ["hf-simskip", "train"]
            and "--dry-run" in argv
        ):
            from hf_simskip.cli import main

            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("HF_SIMSKIP_CACHE", env["HF_SIMSKIP_CACHE"])
                try:
                    code = main(argv[1:])
                except SystemExit as exit_:  # --version
                    code = exit_.code
            assert code == 0, capsys.readouterr().err
            return
        if argv[:2] == ["python", "recipes/train_simcse_skip.py"] and argv[2:] == ["--help"]:
            with pytest.raises(SystemExit) as exit_:
                _recipe().main(["--help"])
            assert exit_.value.code == 0
            assert "--method" in capsys.readouterr().out
            return
        # everything else through a real process, as a user's shell runs it
        if argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        elif argv[0] == "accelerate":
            argv = [sys.executable, "-m", "accelerate.commands.launch", *argv[2:]]
        elif argv[0] == "hf-simskip":
            argv = [sys.executable, "-m", "hf_simskip.cli", *argv[1:]]
        elif argv[0].startswith("ACCELERATE_USE_CPU="):
            env["ACCELERATE_USE_CPU"] = "1"
            argv = [sys.executable, "-m", "torch.distributed.run", *argv[2:]]
        env.pop("OMP_NUM_THREADS", None)
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=ws["path"], timeout=600, stdin=subprocess.DEVNULL
        )
        assert proc.returncode == 0, f"{argv}\n{proc.stderr[-4000:]}"


@pytest.mark.parametrize("command", _params(slow=False))
def test_documented_command_runs(command, workspace, capsys):
    run_command(command, workspace, capsys)


@pytest.mark.parametrize("command", _params(slow=True))
def test_documented_long_command_runs(command, workspace, capsys):
    run_command(command, workspace, capsys)
    output_dir = _last_value(_expand(command, COMMANDS[command], workspace), "--output_dir")
    if output_dir is not None:  # a recipe run: a finished run whose final/ is also a sentence-transformers folder
        out = Path(output_dir)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["kept"] in ("identity", "initial", "trained", "last")
        assert {"modules.json", "st_module.py", "README.md"} <= set(os.listdir(out / "final"))
        card = (out / "final" / "README.md").read_text(encoding="utf-8")
        assert "No training record (`metrics.json`)" not in card  # the card says what the run kept


# --- the README's Python ------------------------------------------------------------------------------
def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)


# each Python block of README.md and docs/sharing.md, by its first line: run (True) or why not
PYTHON_BLOCKS = {
    ("README.md", "import numpy as np"): True,
    ("README.md", "from hf_simskip.evaluation import evaluate, format_table"): True,
    ("README.md", 'model.push_to_hub("me/simskip-minilm", private=True)'): f"uploads to the Hub ({NETWORK})",
    ("docs/sharing.md", 'model.push_to_hub("me/simskip-minilm", private=True)'): f"uploads to the Hub ({NETWORK})",
    ("docs/sharing.md", "from transformers import AutoModel"): True,
    ("docs/sharing.md", "from hf_simskip.sharing.st_export import save_sentence_transformers"): True,
}


def test_every_python_block_is_listed():
    shown = {(doc.relative_to(REPO).as_posix(), _first_line(code)) for doc in DOCS for code in python_blocks(doc)}
    assert shown == set(PYTHON_BLOCKS), shown ^ set(PYTHON_BLOCKS)


def _readme_python(tiny: str | None) -> list[str]:
    """README's runnable Python blocks in order; ``tiny``: the packaged backbone replaced by this folder."""
    blocks = [b for b in python_blocks(REPO / "README.md") if PYTHON_BLOCKS[("README.md", _first_line(b))] is True]
    if tiny is not None:
        blocks = [
            b.replace("from_encoder_pretrained()", f"from_encoder_pretrained({tiny!r}, pooling='mean')")
            .replace(
                "from_encoder_pretrained(layers=None)",
                f"from_encoder_pretrained({tiny!r}, pooling='mean', layers=None)",
            )
            .replace("tasks=None", "tasks=['CR', 'STSB']")  # two tasks of the fixture: seconds, not minutes
            for b in blocks
        ]
    return blocks


def _run_blocks(blocks: list[str], cwd: Path, monkeypatch) -> dict:
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HF_SIMSKIP_DATA", str(FIXTURE_DATA))  # data_dir=None: the committed fixture
    scope: dict = {}
    for code in blocks:
        exec(compile(code, "<README>", "exec"), scope)
    return scope


def test_readme_python_runs_on_a_tiny_backbone(tiny_backbone, tmp_path, monkeypatch):
    scope = _run_blocks(_readme_python(tiny_backbone), tmp_path, monkeypatch)
    emb = scope["emb"]
    assert emb.shape == (2, 64) and scope["scores"].shape == (2, 2)
    np.testing.assert_allclose(scope["st"].encode(["A gripping film.", "Who wrote Hamlet?"]), emb, atol=1e-5)
    np.testing.assert_allclose(scope["same"].encode(["A gripping film.", "Who wrote Hamlet?"]), emb, atol=1e-6)
    assert scope["refined"].shape == (5, 384) and scope["results"]["tasks"]


@pytest.mark.slow  # the packaged all-MiniLM-L6-v2, loaded four times; every SentEval task of the fixture
def test_readme_python_runs_as_written(tmp_path, monkeypatch):
    scope = _run_blocks(_readme_python(None), tmp_path, monkeypatch)
    assert scope["emb"].shape == (2, 768) and scope["paper"].config.output_dim == 384
    np.testing.assert_allclose(scope["st"].encode(["A gripping film.", "Who wrote Hamlet?"]), scope["emb"], atol=1e-5)


def test_docs_sharing_python_runs(tiny_backbone, tmp_path, monkeypatch):
    """docs/sharing.md: the loading block (its Hub id: a local folder here) and the export block (``model``: the
    SimSkipModel of the page)."""
    model = tiny_simskip(tiny_backbone)
    model.save_pretrained(tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    for code in python_blocks(REPO / "docs" / "sharing.md"):
        if PYTHON_BLOCKS[("docs/sharing.md", _first_line(code))] is not True:
            continue
        scope = {"model": model}
        exec(compile(code.replace("me/simskip-minilm", str(tmp_path / "repo")), "<docs/sharing.md>", "exec"), scope)
        if "st" in scope:
            np.testing.assert_allclose(
                scope["st"].encode(["A sentence.", "Another one."]),
                model.encode(["A sentence.", "Another one."]),
                atol=1e-5,
            )


# --- words ----------------------------------------------------------------------------------------------
def test_mode_and_probe_mean_one_thing_each():
    """'mode' is the folds (full 10, fast 5), 'probe' is the solver (the batched probe, the sklearn probe):
    "fast probe" or "fast evaluator" mixed the two (issue 21, item 8)."""
    from hf_simskip.cli import build_parser

    texts = {doc.name: doc.read_text(encoding="utf-8") for doc in DOCS}
    (sub,) = [a for a in build_parser()._actions if a.choices and "eval" in a.choices]
    texts["hf-simskip eval --help"] = sub.choices["eval"].format_help()
    for name, text in texts.items():
        flat = " ".join(text.split())
        for wrong in ("fast probe", "fast SentEval", "fast exact", "fast solver", "fast SentEval-protocol evaluator"):
            assert wrong not in flat, (name, wrong)
    assert "a SentEval-protocol evaluator with a batched probe" in " ".join(texts["README.md"].split())
    assert "a fast-mode (5-fold) SentEval evaluation" in " ".join(texts["training.md"].split())
    assert "batched: the batched probe, an exact torch solver" in " ".join(texts["hf-simskip eval --help"].split())
