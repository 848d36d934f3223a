"""Several machines, on this one: the recipe as 2 nodes x 1 process over a localhost rendezvous (two `torchrun
--nnodes 2 --node_rank R` launches side by side, CPU, gloo, the tiny backbone) ends with the head of the same run on
1 node x 2 processes, with one output/cache folder shared by the nodes and with a folder per node.

On a shared disk one process writes the run's checkpoint files; with a disk per node every node writes its own copy
(trainer_state.json, best_head.pt, the latest pointer, accelerate's states, pruning) and can resume from it, while
final/ and the records are the global main process's only. A run killed on both nodes resumes, each node from its own
output_dir, from the newest checkpoint complete on every node. Slow: seven recipe launches of two processes.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from utils import FIXTURES, KILLED_AFTER, SCRIPT, write_corpus

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recipe_args(backbone, corpus, out, cache=None, *extra) -> list[str]:
    """64 sentences, 8 per process: 4 steps an epoch, 12 steps; a checkpoint every 2 steps, the last 2 kept; the
    STS-B dev signal every 4 steps (so best_head.pt moves); a float32 cache (a node's own copy is encoded in other
    batches than the shared one: float16 rounding could differ by one unit). ``cache`` None: $HF_SIMSKIP_CACHE."""
    args = [
        "--model_name_or_path", backbone,
        "--pooling", "mean",
        "--train_file", str(corpus),
        "--data_dir", str(FIXTURES / "senteval"),
        "--output_dir", str(out),
        "--per_device_train_batch_size", "8",
        "--num_train_epochs", "3",
        "--checkpointing_steps", "2",
        "--save_total_limit", "2",
        "--eval_steps", "4",
        "--max_dev_pairs", "100",
        "--cache_dtype", "float32",
        "--report_to", "none",
    ]  # fmt: skip
    return args + (["--cache_dir", str(cache)] if cache is not None else []) + list(extra)


def environment(**extra) -> dict:
    return {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def one_node(args, env) -> subprocess.CompletedProcess:
    """The reference: 1 node x 2 processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def two_nodes(script, node_args, node_envs) -> list[tuple[int, str]]:
    """2 nodes x 1 process: two torchrun launches side by side (node_rank 0 and 1) meeting at 127.0.0.1:<free port>;
    every node gets its own arguments and environment. Returns (exit code, stderr) per node."""
    port = str(free_port())
    nodes = []
    for rank in (0, 1):
        launch = ["--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(rank)]
        cmd = [sys.executable, "-m", "torch.distributed.run", *launch, "--master_addr", "127.0.0.1", "--master_port"]
        cmd += [port, str(script), *node_args[rank]]
        nodes.append(
            subprocess.Popen(cmd, env=node_envs[rank], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    try:
        outputs = [node.communicate(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    return [(node.returncode, err) for node, (_, err) in zip(nodes, outputs)]


def assert_same_head(folder, reference, exact: bool):
    a, b = load_file(Path(reference) / "model.safetensors"), load_file(Path(folder) / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(b[k], a[k]), k
        else:  # the node's own cache copy: the same rows up to float32 rounding of other padding
            torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)


def checkpoint_files(out) -> dict[str, list[str]]:
    root = Path(out) / "checkpoints"
    return {p.name: sorted(f.name for f in p.iterdir()) if p.is_dir() else [] for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def run(tiny_backbone, tmp_path_factory):
    """The corpus and the 1-node x 2-process reference run."""
    tmp = tmp_path_factory.mktemp("multinode")
    corpus = write_corpus(tmp / "c.txt", 64)
    ref = one_node(recipe_args(tiny_backbone, corpus, tmp / "ref", tmp / "ref_cache"), environment())
    assert ref.returncode == 0, ref.stderr[-3000:]
    return {"backbone": tiny_backbone, "corpus": corpus, "ref": tmp / "ref" / "final"}


def test_two_nodes_sharing_one_disk_write_everything_once_and_end_with_the_one_node_head(run, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = recipe_args(run["backbone"], run["corpus"], out, cache)
    nodes = two_nodes(SCRIPT, [args, args], [environment(), environment()])
    for code, err in nodes:
        assert code == 0, err[-3000:]
    assert_same_head(out / "final", run["ref"], exact=True)  # the same shards, the same run
    # one copy of everything, written by process 0: both processes' own RNG files, the run's files once
    files = checkpoint_files(out)
    assert sorted(files) == ["latest", "step_10", "step_12"], files
    step = files["step_12"]
    for name in ("model.safetensors", "optimizer.bin", "trainer_state.json", "best_head.pt"):
        assert name in step, step
    for rank in (0, 1):
        assert f"random_states_{rank}.pkl" in step and f"augmentation_rng_{rank}.pt" in step, step
    assert "is shared by every process: process 0 writes" in nodes[0][1]
    assert "this node's copy" not in nodes[1][1] and "this node's checkpoints only" not in nodes[1][1]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name or ".writer-probe" in p.name or ".write-test" in p.name]
    corpus_caches = [p for p in cache.iterdir() if p.name.startswith("corpus-")]
    assert len(corpus_caches) == 1 and len(list(corpus_caches[0].glob("*.arrow"))) == 2  # one copy, 2 shards


def test_two_nodes_with_their_own_disks_resume_each_from_its_own_output_dir(run, tmp_path):
    """Each node has its own output_dir and cache ($HF_SIMSKIP_CACHE, no --cache_dir: resolved per run). Killed on
    both nodes after step 9 (step_8 the newest checkpoint); node 1 then loses its step_8 as a crash between the
    save and its rename would leave it (step_8.tmp, latest naming step_6): both resume from step_6, and end with the
    head of the uninterrupted 1-node run. Node 1's folder holds its own complete checkpoints, pruned, and no final/."""
    outs = [tmp_path / f"node{r}" / "out" for r in (0, 1)]
    envs = [environment(HF_SIMSKIP_CACHE=str(tmp_path / f"node{r}" / "cache"), KILL_AFTER_STEP="9") for r in (0, 1)]
    killed = tmp_path / "killed.py"
    killed.write_text(KILLED_AFTER)
    nodes = two_nodes(killed, [recipe_args(run["backbone"], run["corpus"], out) for out in outs], envs)
    for code, err in nodes:
        assert code != 0, err[-3000:]
    for out in outs:
        assert sorted(checkpoint_files(out)) == ["latest", "step_6", "step_8"], checkpoint_files(out)
        assert not (out / "final").exists()
    # node 1's step_8 as a crash between the save and the rename leaves it
    node1 = outs[1] / "checkpoints"
    os.replace(node1 / "step_8", node1 / "step_8.tmp")
    (node1 / "step_8.tmp" / "trainer_state.json").unlink()
    (node1 / "latest").write_text("step_6")

    resume = [
        recipe_args(run["backbone"], run["corpus"], out, None, "--resume_from_checkpoint", "latest") for out in outs
    ]
    nodes = two_nodes(SCRIPT, resume, envs)
    for code, err in nodes:
        assert code == 0, err[-3000:]
        assert "resumed from" in err and "step_6 at step 6" in err, err[-3000:]
    assert "checkpoint step_8 is not complete on every node: every process resumes from step_6" in nodes[0][1]
    assert_same_head(outs[0] / "final", run["ref"], exact=False)

    # every node: its own complete copy of the last two checkpoints, with the run's files and its own RNG files
    for rank, out in enumerate(outs):
        files = checkpoint_files(out)
        assert sorted(files) == ["latest", "step_10", "step_12"], files
        assert (out / "checkpoints" / "latest").read_text() == "step_12"
        step = files["step_12"]
        for name in ("model.safetensors", "optimizer.bin", "trainer_state.json", "best_head.pt"):
            assert name in step, (rank, step)
        assert [f for f in step if f.startswith(("random_states_", "augmentation_rng_"))] == [
            f"augmentation_rng_{rank}.pt",
            f"random_states_{rank}.pkl",
        ], step
    a, b = (out / "checkpoints" / "step_12" for out in outs)
    assert (a / "trainer_state.json").read_text() == (b / "trainer_state.json").read_text()
    assert (a / "best_head.pt").read_bytes() == (b / "best_head.pt").read_bytes()
    # the same weights; BatchNorm's running statistics are each process's own on CPU (no SyncBatchNorm), and DDP
    # broadcasts process 0's at every forward, so a node resuming its own is the same run
    weights = [load_file(step / "model.safetensors") for step in (a, b)]
    for k in weights[0]:
        if "running_" not in k:
            assert torch.equal(weights[0][k], weights[1][k]), k
    # final/ and the records: the global main process's output_dir only
    assert (outs[0] / "final" / "model.safetensors").is_file() and (outs[0] / "metrics.json").is_file()
    assert sorted(p.name for p in outs[1].iterdir()) == ["checkpoints"]
    assert "holds this node's checkpoints only" in nodes[1][1]
    assert "not shared by all nodes: each node writes" in nodes[0][1]
    # the caches: a complete copy on each node's disk, in the folder $HF_SIMSKIP_CACHE named for the run
    for rank in (0, 1):
        caches = [p for p in (tmp_path / f"node{rank}" / "cache").iterdir() if p.name.startswith("corpus-")]
        assert len(caches) == 1 and [p.name for p in caches[0].glob("*.arrow")] == ["shard-00000-of-00001.arrow"]
