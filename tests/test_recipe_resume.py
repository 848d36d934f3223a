"""The recipe end to end as a script: stage 0 (SimCSE) feeds the cache key, two CPU processes; `run` runs it,
optionally SIGKILLed after step k (the resume after SIGKILL is in test_faults_checkpoints.py). Slow: full script
runs."""

import os
import subprocess
import sys

import pytest

from utils import FIXTURES, KILLED_AFTER, SCRIPT, write_corpus

pytestmark = pytest.mark.slow


def run(backbone, corpus, tmp_path, out, *extra, kill_after: int | None = None):
    launch = [str(SCRIPT)] if kill_after is None else ["-c", KILLED_AFTER]
    cmd = [
        sys.executable,
        *launch,
        "--model_name_or_path",
        backbone,
        "--pooling",
        "mean",
        "--train_file",
        str(corpus),
        "--data_dir",
        str(FIXTURES / "senteval"),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--output_dir",
        str(out),
        "--per_device_train_batch_size",
        "16",
        "--num_train_epochs",
        "3",
        "--dev_signal",
        "none",
        "--report_to",
        "none",
        "--checkpointing_steps",
        "2",
        *extra,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(SCRIPT.parent), "KILL_AFTER_STEP": str(kill_after)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_stage0_simcse_changes_the_cache_key(tiny_backbone, tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 32)
    proc = run(
        tiny_backbone,
        corpus,
        tmp_path,
        tmp_path / "s0",
        "--simcse_steps",
        "3",
        "--simcse_batch_size",
        "8",
        "--checkpointing_steps",
        "0",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    record = json.loads((tmp_path / "s0" / "corpus.json").read_text())
    assert record["stage0_simcse"]["simcse_steps"] == 3 and not record["embedding_cache"]["reused"]
    assert "SimCSE step 3/3" in proc.stderr


def test_recipe_with_two_cpu_processes(tiny_backbone, tmp_path):
    """The script under torchrun (2 CPU processes, gloo): sharded stage 1, DDP head, per-rank RNG files."""
    corpus = write_corpus(tmp_path / "c.txt", 64)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29547",
        str(SCRIPT),
        "--model_name_or_path",
        tiny_backbone,
        "--pooling",
        "mean",
        "--train_file",
        str(corpus),
        "--data_dir",
        str(FIXTURES / "senteval"),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--output_dir",
        str(tmp_path / "out"),
        "--per_device_train_batch_size",
        "8",
        "--num_train_epochs",
        "2",
        "--checkpointing_steps",
        "3",
        "--max_dev_pairs",
        "100",
        "--report_to",
        "none",
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Total train batch size (w. parallel & accumulation) = 16" in proc.stderr
    step = tmp_path / "out" / "checkpoints" / "step_6"
    assert (step / "augmentation_rng_0.pt").is_file() and (step / "augmentation_rng_1.pt").is_file()
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()
