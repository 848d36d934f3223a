"""Fault injection, checkpoints/resume/overwrite layer: what a run leaves behind when it is killed (SIGKILL, an
exception, one of two processes dying), when a checkpoint is half written or corrupt, when it diverges, when it
resumes from another folder, and when it replaces or is asked to resume a finished run.

The promises (docs/training.md, "What a run promises"): a resumed run ends with the weights of an uninterrupted one,
best head included; a run writes nothing it cannot finish; a finished run is replaced only at the end of a run that
succeeds (--overwrite_output_dir), and never by a resume that has nothing to resume. (Other layers:
test_faults_*.py.)"""

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file
from test_recipe import tiny_args
from test_recipe_resume import run as run_script
from test_training_loop import args, data, head

from hf_simskip.training import train_head
from hf_simskip.training.checkpoint import BEST_FILE, list_checkpoints, resolve_checkpoint

from utils import write_corpus

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def reset():
    AcceleratorState._reset_state(reset_partial_state=True)


# --- the loop: a killed run resumes exactly -------------------------------------------------------------------
KILLED_RUN = textwrap.dedent("""
    import os, signal
    from test_training_loop import head, data, args
    from accelerate import Accelerator
    from hf_simskip.training import train_head

    def kill(step, state):  # a crash right after step {kill} (and its checkpoint, if any)
        if step == {kill}:
            os.kill(os.getpid(), signal.SIGKILL)

    train_head(head(), data(), args({out!r}, per_device_train_batch_size=64, checkpointing_steps={every},
                                    save_total_limit=2),
               Accelerator(cpu=True), step_callback=kill)
""")


def killed_run(out, kill: int, every: int):
    code = KILLED_RUN.format(out=str(out), kill=kill, every=every)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=TESTS)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def resumed_run(out, **kw):
    reset()
    resumed = head()
    m = train_head(
        resumed,
        data(),
        args(out, per_device_train_batch_size=64, resume_from_checkpoint="latest", **kw),
        Accelerator(cpu=True),
    )
    return resumed, m


def reference_run(out):
    ref = head()
    train_head(ref, data(), args(out, per_device_train_batch_size=64), Accelerator(cpu=True))
    return ref


def assert_same_weights(a, b):
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=1e-6, atol=1e-7, msg=k)


def test_exact_resume_after_sigkill_and_crash_during_save(tmp_path):
    ref = reference_run(tmp_path / "ref")
    # 4 batches per epoch: the kill after step 7 resumes from step 6, mid-way through the second epoch
    out = tmp_path / "killed"
    killed_run(out, kill=7, every=2)
    assert [p.name for p in list_checkpoints(out)] == ["step_4", "step_6"]  # save_total_limit=2
    # a crash during the save of step 8: a half-written tmp folder, and a renamed folder without its state
    shutil.copytree(out / "checkpoints/step_6", out / "checkpoints/step_8.tmp")
    (out / "checkpoints/step_8").mkdir()
    (out / "checkpoints/step_8/model.safetensors").write_bytes(b"partial")
    assert resolve_checkpoint("latest", out)[0].name == "step_6"
    resumed, m = resumed_run(out)
    assert m["global_step"] == 8
    assert_same_weights(ref, resumed)
    # and a wrong path is a clear error
    with pytest.raises(ValueError, match="expected 'latest' or a checkpoint folder"):
        resolve_checkpoint(str(tmp_path), out)


def test_exact_resume_from_a_checkpoint_on_an_epoch_boundary(tmp_path):
    """4 batches per epoch, a checkpoint every 4 steps: the kill after step 5 resumes from step 4, the last
    step of the first epoch (the next epoch's loader has not drawn its seed yet)."""
    ref = reference_run(tmp_path / "ref")
    out = tmp_path / "killed"
    killed_run(out, kill=5, every=4)
    assert [p.name for p in list_checkpoints(out)] == ["step_4"]
    resumed, m = resumed_run(out)
    assert m["global_step"] == 8
    assert_same_weights(ref, resumed)


def test_a_checkpoint_belongs_to_its_run(tmp_path):
    """Another configuration cannot resume a run's checkpoints, and pruning keeps other runs' ones."""
    out = tmp_path / "run"
    killed_run(out, kill=5, every=4)
    reset()
    with pytest.raises(ValueError, match=r"another configuration.*learning_rate: 0.01 -> 0.005"):
        train_head(
            head(),
            data(),
            args(out, per_device_train_batch_size=64, learning_rate=5e-3, resume_from_checkpoint="latest"),
            Accelerator(cpu=True),
        )
    with pytest.raises(ValueError, match="another configuration"):
        train_head(
            head(),
            data(),
            args(
                out,
                per_device_train_batch_size=64,
                learning_rate=5e-3,
                resume_from_checkpoint=str(out / "checkpoints" / "step_4"),
            ),
            Accelerator(cpu=True),
        )
    # a fresh run of another configuration in the same folder prunes only its own checkpoints
    reset()
    train_head(
        head(),
        data(),
        args(out, per_device_train_batch_size=32, checkpointing_steps=1, save_total_limit=2, max_steps=4),
        Accelerator(cpu=True),
    )
    names = sorted(p.name for p in list_checkpoints(out))
    assert names == ["step_3", "step_4"]  # step_4 is now the new run's (same step number, replaced)
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_4"


def test_a_corrupt_checkpoint_falls_back_to_the_previous_complete_one(tmp_path, caplog):
    ref = reference_run(tmp_path / "ref")
    out = tmp_path / "killed"
    killed_run(out, kill=7, every=2)  # checkpoints step_4, step_6 (latest)
    weights = out / "checkpoints" / "step_6" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated on disk after it was written
    resumed, m = resumed_run(out)
    assert "step_6 could not be loaded" in caplog.text and "trying the previous one" in caplog.text
    assert m["global_step"] == 8
    assert_same_weights(ref, resumed)  # resumed from step_4: still the uninterrupted run's weights


# --- the loop: the best head travels in the checkpoint ----------------------------------------------------------
def scripted(*scores):
    """A dev signal that returns ``scores`` in the order it is called."""
    it = iter(scores)
    return lambda module: next(it)


def crash_after(step: int):
    def callback(now, state):
        if now == step:
            raise RuntimeError(f"a crash after step {step}")

    return callback


# 4 batches of 64 per epoch, 8 steps, scored at steps 0 (the identity), 2, 4, 6 and the end: step 2 is the best
BEST_AT_2 = (1.0, 5.0, 2.0, 1.5, 1.0)


def best_run_args(out, **kw):
    return args(out, per_device_train_batch_size=64, eval_steps=2, **kw)


def test_resuming_a_checkpoint_of_another_output_dir_ends_with_the_best_head(tmp_path):
    """issue 20 item 4: the best candidate's weights live in every checkpoint (best_head.pt), so a run resumed from
    a checkpoint in another output folder restores the best head, not the last one."""
    ref = head()
    m_ref = train_head(ref, data(), best_run_args(tmp_path / "ref"), Accelerator(cpu=True), dev_fn=scripted(*BEST_AT_2))
    assert (m_ref["best_step"], m_ref["kept"]) == (2, "trained")
    reset()
    with pytest.raises(RuntimeError, match="a crash after step 5"):
        train_head(
            head(),
            data(),
            best_run_args(tmp_path / "a", checkpointing_steps=2),
            Accelerator(cpu=True),
            dev_fn=scripted(*BEST_AT_2[:3]),
            step_callback=crash_after(5),
        )
    step_4 = tmp_path / "a" / "checkpoints" / "step_4"
    assert (step_4 / BEST_FILE).is_file() and not (tmp_path / "a" / BEST_FILE).exists()
    reset()
    resumed = head()
    m = train_head(
        resumed,
        data(),
        best_run_args(tmp_path / "b", resume_from_checkpoint=str(step_4)),  # another output_dir
        Accelerator(cpu=True),
        dev_fn=scripted(*BEST_AT_2[3:]),  # steps 6 and 8: worse than step 2
    )
    assert (m["best_step"], m["kept"], m["best_dev_score"]) == (2, "trained", 5.0)
    assert_same_weights(ref, resumed)  # the head of step 2, as in the uninterrupted run


def test_a_leftover_top_level_best_head_is_never_loaded(tmp_path):
    """issue 20 item 4: a best_head.pt beside the checkpoints (hf_simskip <= 0.2, or another run's) is not read."""
    ref = head()
    train_head(ref, data(), best_run_args(tmp_path / "ref"), Accelerator(cpu=True), dev_fn=scripted(*BEST_AT_2))
    out = tmp_path / "run"
    reset()
    with pytest.raises(RuntimeError, match="a crash after step 5"):
        train_head(
            head(),
            data(),
            best_run_args(out, checkpointing_steps=2),
            Accelerator(cpu=True),
            dev_fn=scripted(*BEST_AT_2[:3]),
            step_callback=crash_after(5),
        )
    stranger = {k: v + 1.0 if v.is_floating_point() else v for k, v in head().state_dict().items()}
    torch.save(stranger, out / BEST_FILE)
    reset()
    resumed = head()
    m = train_head(
        resumed,
        data(),
        best_run_args(out, resume_from_checkpoint="latest"),
        Accelerator(cpu=True),
        dev_fn=scripted(*BEST_AT_2[3:]),
    )
    assert m["best_step"] == 2
    assert_same_weights(ref, resumed)


# --- the loop: a run that fails saves nothing -------------------------------------------------------------------
def test_a_diverging_run_stops_before_it_saves(tmp_path):
    with pytest.raises(FloatingPointError, match="diverged by step 2: the (loss|weights).*NaN or Inf"):
        train_head(
            head(),
            data() * float("1e30") ** 2,
            args(tmp_path, checkpointing_steps=2, logging_steps=2),
            Accelerator(cpu=True),
        )
    assert not list_checkpoints(tmp_path)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0, got inf"):
        train_head(head(), data(), args(tmp_path, learning_rate=float("inf")), Accelerator(cpu=True))


def test_a_failing_step_leaves_no_parameter_frozen(tmp_path):
    from test_training_loop import layer_data, layer_head

    h, x = layer_head(), layer_data()
    with pytest.raises(RuntimeError, match="a crash after step 2"):
        train_head(h, x, args(tmp_path), Accelerator(cpu=True), step_callback=crash_after(2))
    assert all(p.requires_grad for n, p in h.named_parameters() if not n.endswith("gate"))


def test_a_nan_dev_score_stops_the_run(tmp_path):
    from test_training_loop import layer_data, layer_head

    with pytest.raises(FloatingPointError, match="dev score of the identity head at step 0 is nan"):
        train_head(layer_head(), layer_data(), args(tmp_path), Accelerator(cpu=True), dev_fn=lambda _: float("nan"))


# --- the loop: one of two processes dies ------------------------------------------------------------------------
def two_process_worker(out: str, mode: str) -> None:
    """Under torchrun (2 CPU processes): train 8 steps at 32 rows per process, a checkpoint every 2 steps. mode
    "die": process 1 exits abruptly after step 5 (os._exit: no cleanup, no checkpoint of its own); "resume": from
    latest. Process 0 saves the final weights."""
    import logging

    logging.basicConfig(level=logging.INFO)  # the loop's "resumed from ..." line
    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2, acc.num_processes

    def die(step, state):
        if step == 5 and acc.process_index == 1:
            os._exit(3)

    h = head()
    resume = "latest" if mode == "resume" else None
    train_head(
        h,
        data(),
        args(out, per_device_train_batch_size=32, checkpointing_steps=2, resume_from_checkpoint=resume),
        acc,
        step_callback=die if mode == "die" else None,
    )
    if acc.is_main_process:
        torch.save(h.state_dict(), Path(out) / "weights.pt")
    acc.wait_for_everyone()


def torchrun(out, mode):
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, str(out)]
    return subprocess.run([*cmd, mode], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_one_of_two_processes_dies_and_the_resume_matches_an_uninterrupted_run(tmp_path):
    """issue 20: two-process faults. Process 1 dies after step 5 (the launcher then stops process 0); the resume
    from step 4, with two processes again, ends with the weights of an uninterrupted two-process run."""
    ref = torchrun(tmp_path / "ref", "ref")
    assert ref.returncode == 0, ref.stderr[-3000:]
    died = torchrun(tmp_path / "run", "die")
    assert died.returncode != 0 and not (tmp_path / "run" / "weights.pt").exists(), died.stderr[-3000:]
    assert resolve_checkpoint("latest", tmp_path / "run")[0].name == "step_4"
    step = tmp_path / "run" / "checkpoints" / "step_4"
    assert (step / "augmentation_rng_0.pt").is_file() and (step / "augmentation_rng_1.pt").is_file()
    resumed = torchrun(tmp_path / "run", "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "step_4" in resumed.stderr
    a, b = torch.load(tmp_path / "ref" / "weights.pt"), torch.load(tmp_path / "run" / "weights.pt")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=k)


# --- the recipe: overwrite and resume of a finished run ----------------------------------------------------------
@pytest.fixture()
def recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as in test_recipe.py: never see a finished run of the checkout
    import train_simcse_skip

    return train_simcse_skip


def files(folder) -> dict:
    """Every file under ``folder`` (relative path -> bytes): what a failing run must leave as it was."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder) -> list[str]:
    return [p.name for p in Path(folder).iterdir() if p.name.startswith((".run", ".final"))]


def test_a_finished_run_is_not_overwritten_silently(recipe, tiny_backbone, tmp_path):
    """final/ is written as a whole with its card rendered last from this run's records; a second run in the
    same output_dir needs --overwrite_output_dir, and then nothing of the first run survives."""
    from huggingface_hub import ModelCard

    corpus = write_corpus(tmp_path / "c.txt", 64)
    recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--max_steps", "2", "--learning_rate", "0.002"))
    final = tmp_path / "out" / "final"
    card = ModelCard.load(final / "README.md").text
    # (the card's wording belongs to hf_simskip.sharing.model_card: only its values are checked here)
    assert "No training record" not in card and re.search(r"learning.rate\W+0\.002\b", card) and "c.txt" in card
    (final / "eval_results.json").write_text('{"tasks": {"CR": {"acc": 99.0}}, "avg": 99.0}')  # a stale record
    reset()
    with pytest.raises(ValueError, match="already holds a finished run .*--overwrite_output_dir"):
        recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--max_steps", "2", "--learning_rate", "0.003"))
    other = write_corpus(tmp_path / "other.txt", 64, seed=1)
    reset()
    recipe.main(
        tiny_args(
            tiny_backbone,
            other,
            tmp_path,
            "--max_steps",
            "2",
            "--learning_rate",
            "0.003",
            "--overwrite_output_dir",
            "true",
        )
    )
    card = ModelCard.load(final / "README.md").text
    assert re.search(r"learning.rate\W+0\.003\b", card) and "other.txt" in card and "c.txt" not in card
    assert not (final / "eval_results.json").exists() and "99.0" not in card
    assert leftovers(tmp_path / "out") == []  # no temporary left


def test_a_failing_overwrite_leaves_the_finished_run_intact(recipe, tiny_backbone, tmp_path, monkeypatch):
    """issue 20 item 1: --overwrite_output_dir replaces the finished run at the end; a run that fails (a missing
    backbone, an overflowing learning rate, an infinite layer_scale, a run that diverges, a failure while its outputs
    are written) leaves its final/, records and checkpoints as they were."""
    corpus = write_corpus(tmp_path / "c.txt", 64)
    recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--max_steps", "4", "--checkpointing_steps", "2"))
    out = tmp_path / "out"
    before = files(out)
    assert {"final/model.safetensors", "metrics.json", "corpus.json", "training_config.yaml"} <= set(before)
    assert "checkpoints/step_4/trainer_state.json" in before
    failing = [
        (FileNotFoundError, "backbone folder .*nonexistent' does not exist", ["--model_name_or_path", "/nonexistent"]),
        (ValueError, r"learning_rate must be at most 1e3, got 1e\+38", ["--learning_rate", "1e38"]),
        (ValueError, r"layer_scale must be a number in \[0.0, 1000.0\], got inf", ["--layer_scale", "inf"]),
        # NT-Xent at temperature 1e-39 overflows in the first step
        (
            FloatingPointError,
            "diverged by step 1",
            ["--layers", "none", "--temperature", "1e-39", "--logging_steps", "1"],
        ),
    ]
    for error, match, bad in failing:
        reset()
        with pytest.raises(error, match=match):
            recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--overwrite_output_dir", "true", *bad))
        assert files(out) == before, bad
    assert leftovers(out) == []

    # a failure while the outputs are written (here the card): the staged outputs go, nothing was replaced
    def broken_card(model, folder):
        (Path(folder) / "README.md").write_text("half")
        raise ValueError("the card could not be rendered")

    monkeypatch.setattr(recipe, "write_model_card", broken_card)
    reset()
    with pytest.raises(ValueError, match="the card could not be rendered"):
        recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--overwrite_output_dir", "true", "--max_steps", "2"))
    assert files(out) == before and leftovers(out) == []


def test_an_overwrite_removes_the_earlier_runs_checkpoints_only_at_its_end(
    recipe, tiny_backbone, tmp_path, monkeypatch
):
    """issue 20 item 1: the earlier run's checkpoints survive an overwriting run that is killed (it may replace those
    of the same step); the overwriting run resumed to its end keeps its own checkpoints and removes the earlier
    run's others, and the top-level best_head.pt of an old hf_simskip."""
    corpus = write_corpus(tmp_path / "c.txt", 64)
    out = tmp_path / "out"
    keep_all = ("--save_total_limit", "0")
    recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--max_steps", "4", "--checkpointing_steps", "1", *keep_all))
    assert [p.name for p in list_checkpoints(out)] == ["step_1", "step_2", "step_3", "step_4"]
    (out / BEST_FILE).write_bytes(b"hf_simskip 0.2")
    first = files(out)
    new_run = ("--learning_rate", "0.002", "--max_steps", "6", "--checkpointing_steps", "2", *keep_all)
    new_run += ("--overwrite_output_dir",)
    monkeypatch.setattr(recipe, "train_head", lambda *a, **kw: train_head(*a, step_callback=crash_after(3), **kw))
    reset()
    with pytest.raises(RuntimeError, match="a crash after step 3"):
        recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, *new_run, "true"))
    monkeypatch.undo()
    after_crash = files(out)
    kept = {k: v for k, v in first.items() if not k.startswith("checkpoints/step_2/") and k != "checkpoints/latest"}
    assert {k: after_crash.get(k) for k in kept} == kept  # final/, records, step_1, step_3, step_4 as they were
    assert (out / "checkpoints" / "latest").read_text() == "step_2"  # the new run's
    reset()
    metrics = recipe.main(
        tiny_args(tiny_backbone, corpus, tmp_path, *new_run, "true", "--resume_from_checkpoint", "latest")
    )
    assert metrics["global_step"] == 6 and metrics["args"]["learning_rate"] == 0.002
    assert sorted(p.name for p in list_checkpoints(out)) == ["step_2", "step_4", "step_6"]  # all the new run's
    assert all(p.name in ("step_2", "step_4", "step_6", "latest") for p in (out / "checkpoints").iterdir())
    assert not (out / BEST_FILE).exists() and leftovers(out) == []
    assert files(out)["metrics.json"] != first["metrics.json"]
    # a fresh overwriting run without checkpoints: no checkpoints folder is left at all
    reset()
    recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--max_steps", "2", "--overwrite_output_dir", "true"))
    assert not (out / "checkpoints").exists() and (out / "final" / "model.safetensors").is_file()


def test_resume_of_a_finished_run_without_checkpoints_is_refused(recipe, tiny_backbone, tmp_path):
    """issue 20 item 2: --resume_from_checkpoint latest on a finished folder without checkpoints (the default) used
    to start fresh with the new arguments and replace the finished run."""
    import recipe_args

    corpus = write_corpus(tmp_path / "c.txt", 64)
    recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--max_steps", "2"))
    out = tmp_path / "out"
    before = files(out)
    cache = sorted(p.name for p in (tmp_path / "cache").iterdir())
    reset()
    with pytest.raises(ValueError, match=r"already holds a finished run \(final, metrics.json\) and no checkpoint: "):
        recipe.main(
            tiny_args(tiny_backbone, corpus, tmp_path, "--learning_rate", "0.01", "--resume_from_checkpoint", "latest")
        )
    # a checkpoint of another output folder cannot replace it either
    other = tmp_path / "other"
    recipe.main(
        tiny_args(
            tiny_backbone,
            corpus,
            tmp_path,
            "--max_steps",
            "2",
            "--checkpointing_steps",
            "1",
            "--output_dir",
            str(other),
        )
    )
    reset()
    with pytest.raises(ValueError, match="lies outside it: resuming would replace that run"):
        recipe_args.parse_args(
            tiny_args(
                tiny_backbone, corpus, tmp_path, "--resume_from_checkpoint", str(other / "checkpoints" / "step_1")
            )
        )
    assert files(out) == before and sorted(p.name for p in (tmp_path / "cache").iterdir()) == cache
    # --overwrite_output_dir says to replace it: then a resume with nothing to resume starts fresh
    recipe_args.parse_args(
        tiny_args(
            tiny_backbone, corpus, tmp_path, "--resume_from_checkpoint", "latest", "--overwrite_output_dir", "true"
        )
    )


def test_the_recipe_resumed_in_another_output_dir_ends_with_the_best_head(recipe, tiny_backbone, tmp_path, monkeypatch):
    """issue 20 item 4, end to end: a run killed after step 9 and resumed from its step_8 into another output_dir
    writes the final/ and metrics.json of the uninterrupted run: the head kept by the dev selection."""
    corpus = write_corpus(tmp_path / "c.txt", 80)  # 5 batches an epoch, 15 steps
    run = ("--num_train_epochs", "3", "--eval_steps", "2", "--learning_rate", "0.01")
    ref = recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, *run, "--output_dir", str(tmp_path / "ref")))
    monkeypatch.setattr(recipe, "train_head", lambda *a, **kw: train_head(*a, step_callback=crash_after(9), **kw))
    reset()
    with pytest.raises(RuntimeError, match="a crash after step 9"):
        recipe.main(
            tiny_args(
                tiny_backbone, corpus, tmp_path, *run, "--checkpointing_steps", "4", "--output_dir", str(tmp_path / "a")
            )
        )
    monkeypatch.undo()
    reset()
    step_8 = tmp_path / "a" / "checkpoints" / "step_8"
    resumed = recipe.main(
        tiny_args(
            tiny_backbone,
            corpus,
            tmp_path,
            *run,
            "--output_dir",
            str(tmp_path / "b"),
            "--resume_from_checkpoint",
            str(step_8),
        )
    )
    for key in ("best_step", "kept", "best_dev_score", "global_step"):
        assert resumed[key] == ref[key], key
    a, b = (
        load_file(tmp_path / "ref" / "final" / "model.safetensors"),
        load_file(tmp_path / "b" / "final" / "model.safetensors"),
    )
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=k)


def test_bad_folders_fail_before_any_encoding(recipe, tiny_backbone, tmp_path):
    import recipe_args

    corpus = write_corpus(tmp_path / "c.txt", 64)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cache_dir .*a_file/cache' is not writable"):
        recipe_args.parse_args(tiny_args(tiny_backbone, corpus, tmp_path, "--cache_dir", str(blocker / "cache")))
    with pytest.raises(ValueError, match="resume_from_checkpoint=.*expected 'latest' or a checkpoint folder"):
        recipe_args.parse_args(
            tiny_args(tiny_backbone, corpus, tmp_path, "--resume_from_checkpoint", str(tmp_path / "no_such_checkpoint"))
        )
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_the_cache_dir_is_resolved_when_the_run_starts(recipe, tiny_backbone, tmp_path, monkeypatch):
    """--cache_dir defaulted to the folder resolved when recipe_args was imported; None now, resolved per run from
    $HF_SIMSKIP_CACHE (else $HF_HOME/hf_simskip), checked before any work and used by the cache build."""
    import json

    import recipe_args

    corpus = write_corpus(tmp_path / "c.txt", 64)
    argv = tiny_args(tiny_backbone, corpus, tmp_path, "--dev_signal", "none", "--max_steps", "0")
    at = argv.index("--cache_dir")
    argv = argv[:at] + argv[at + 2 :]
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("HF_SIMSKIP_CACHE", str(blocker / "cache"))
    with pytest.raises(ValueError, match="cache_dir .*a_file/cache' is not writable"):
        recipe_args.parse_args(argv)
    monkeypatch.setenv("HF_SIMSKIP_CACHE", str(tmp_path / "env_cache"))
    assert recipe_args.parse_args(argv).data.cache_dir is None
    recipe.main(argv)
    used = Path(json.loads((tmp_path / "out" / "corpus.json").read_text())["embedding_cache"]["path"])
    assert used.parent == tmp_path / "env_cache", used
    helps = {a.dest: a.help for a in recipe_args.build_parser()._actions}
    assert "$HF_SIMSKIP_CACHE" in helps["cache_dir"] and "65504" in helps["cache_dtype"]


def test_the_write_probe_is_unique_across_machines(tmp_path, monkeypatch):
    """check_writable named its probe file by pid only: two machines' processes with the same pid (containers) on one
    shared disk removed each other's probe, and one of them called the folder not writable."""
    from hf_simskip.training import checkpoint

    write_bytes, nested = Path.write_bytes, []

    def meanwhile_on_the_other_machine(self, data):  # the same pid checks the same folder between write and unlink
        written = write_bytes(self, data)
        if not nested:
            nested.append(self.name)
            checkpoint.check_writable(self.parent, "output_dir")
        return written

    monkeypatch.setattr(Path, "write_bytes", meanwhile_on_the_other_machine)
    checkpoint.check_writable(tmp_path / "shared", "output_dir")
    assert nested and not list((tmp_path / "shared").iterdir())


def test_a_resume_agrees_on_the_newest_checkpoint_every_node_has(tmp_path, monkeypatch, caplog):
    """With a disk per node, a node killed between a save and its rename lacks the newest checkpoint: every process
    takes the newest one all have (the processes' lists as two nodes would report them); none in common is one
    line listing what each has."""
    from accelerate import PartialState

    from hf_simskip.training import checkpoint

    PartialState(cpu=True)  # accelerate's logger needs a state

    class TwoNodes:
        num_processes, process_index, is_main_process = 2, 0, True

    node0 = [tmp_path / "checkpoints" / f"step_{n}" for n in (8, 6, 4)]
    views = {"node1": ["step_6", "step_4"]}
    monkeypatch.setattr(checkpoint, "_gather", lambda acc, value: [value, views["node1"]])
    with caplog.at_level("WARNING"):
        assert checkpoint._agreed(TwoNodes(), node0, tmp_path) == node0[1:]
    assert "step_8 is not complete on every node: every process resumes from step_6" in caplog.text
    views["node1"] = []
    with pytest.raises(
        ValueError,
        match=r"no checkpoint .* is complete on every node \(process 0: step_8, step_6, "
        r"step_4; process 1: none\)",
    ):
        checkpoint._agreed(TwoNodes(), node0, tmp_path)
    monkeypatch.setattr(checkpoint, "_gather", lambda acc, value: [[], []])
    assert checkpoint._agreed(TwoNodes(), [], tmp_path) == []  # nothing anywhere: a fresh start


@pytest.mark.slow
def test_recipe_resume_after_sigkill_matches_uninterrupted(tiny_backbone, tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 80)  # 5 batches/epoch, 15 steps: the kill lands mid-epoch 2
    ref = run_script(tiny_backbone, corpus, tmp_path, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    killed = run_script(tiny_backbone, corpus, tmp_path, tmp_path / "run", kill_after=9)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert "reusing the embedding cache" in killed.stderr  # stage 1 ran once for both
    resumed = run_script(tiny_backbone, corpus, tmp_path, tmp_path / "run", "--resume_from_checkpoint", "latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr and "step_8" in resumed.stderr
    a = load_file(tmp_path / "ref" / "final" / "model.safetensors")
    b = load_file(tmp_path / "run" / "final" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=k)


if __name__ == "__main__":
    two_process_worker(sys.argv[1], sys.argv[2])
