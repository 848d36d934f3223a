"""Fault injection for the embedding cache (training/cache.py): a crash at any point leaves nothing a later
run trusts and the rerun gives the rows of an uninterrupted run; damaged files, values a float16 cache cannot
hold and racing builds give one-line errors or a safe outcome. Two-process faults run under torchrun."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_simskip import SimSkipModel
from hf_simskip.training import build_embedding_cache, embed_sentences
from hf_simskip.training import cache as cache_module
from hf_simskip.training.cache import clear_caches, list_caches

from utils import tiny_sentences

ENV = {
    **os.environ,
    "ACCELERATE_USE_CPU": "1",
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
}


def mean_model(backbone):
    return SimSkipModel.from_encoder_pretrained(backbone, pooling="mean", layers=None)


def dying_after(model, batches: int, die):
    """Make ``model``'s encoding stream call ``die()`` after ``batches`` batches."""
    stream = model.iter_head_inputs

    def iter_head_inputs(*args, **kwargs):
        for i, item in enumerate(stream(*args, **kwargs)):
            if i == batches:
                die()
            yield item

    model.iter_head_inputs = iter_head_inputs
    return model


def visible(folder: Path) -> list[str]:
    """What a later run could find: the non-hidden entries (temporary folders are hidden)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --- one process ---------------------------------------------------------------------------------------
def test_an_exception_during_the_build_leaves_nothing_and_the_rerun_gives_the_same_rows(tiny_backbone, tmp_path):
    sentences = tiny_sentences(20)

    def fail():
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the encode

    with pytest.raises(KeyboardInterrupt):
        build_embedding_cache(dying_after(mean_model(tiny_backbone), 2, fail), sentences, tmp_path, batch_size=4)
    assert list(tmp_path.iterdir()) == []  # not even the temporary folder
    table, info = build_embedding_cache(mean_model(tiny_backbone), sentences, tmp_path, batch_size=4, dtype="float32")
    assert not info["reused"]
    torch.testing.assert_close(table[:], embed_sentences(mean_model(tiny_backbone), sentences), atol=1e-5, rtol=1e-5)


def test_a_killed_build_leaves_only_an_untrusted_temporary_folder(tiny_backbone, tmp_path):
    """os._exit in the middle of the encode (no cleanup runs): the half-written shard stays in a hidden
    temporary folder that no run reads; the rerun builds the cache; clear_caches removes the leftover."""
    script = f"""
import os
from test_faults_cache import dying_after, mean_model
from hf_simskip.training import build_embedding_cache
from utils import tiny_sentences
model = dying_after(mean_model({tiny_backbone!r}), 2, lambda: os._exit(3))
build_embedding_cache(model, tiny_sentences(20), {str(tmp_path)!r}, batch_size=4, dtype="float32")
"""
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    leftovers = list(tmp_path.iterdir())
    assert visible(tmp_path) == [] and len(leftovers) == 1 and ".tmp-" in leftovers[0].name
    assert list_caches(tmp_path) == []
    sentences = tiny_sentences(20)
    table, info = build_embedding_cache(mean_model(tiny_backbone), sentences, tmp_path, batch_size=4, dtype="float32")
    assert not info["reused"] and visible(tmp_path) == [Path(info["path"]).name]
    torch.testing.assert_close(table[:], embed_sentences(mean_model(tiny_backbone), sentences), atol=1e-5, rtol=1e-5)
    assert clear_caches(tmp_path, keys=[info["key"]]) == [info["path"]] and leftovers[0].exists()  # still fresh
    old = 2 * cache_module.STALE_TMP_SECONDS
    for f in (leftovers[0], *leftovers[0].iterdir()):
        os.utime(f, (os.stat(f).st_atime - old, os.stat(f).st_mtime - old))
    assert clear_caches(tmp_path) == [str(leftovers[0])] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "no_meta", "meta_fields", "missing_shard"])
def test_a_damaged_cache_is_a_one_line_error_naming_the_folder_to_delete(tiny_backbone, tmp_path, damage):
    model = mean_model(tiny_backbone)
    sentences = tiny_sentences(12)
    _, info = build_embedding_cache(model, sentences, tmp_path, batch_size=4)
    folder = Path(info["path"])
    shard = folder / "shard-00000-of-00001.arrow"
    if damage == "truncated":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    elif damage == "zeroed":
        shard.write_bytes(bytes(shard.stat().st_size))
    elif damage == "no_meta":
        (folder / "simskip_cache.json").unlink()
    elif damage == "meta_fields":
        (folder / "simskip_cache.json").write_text('{"format": 3, "rows": 12, "shape": [12, 32]}')
    else:
        shard.unlink()
    with pytest.raises(ValueError, match="delete the folder") as err:
        build_embedding_cache(model, sentences, tmp_path, batch_size=4)
    assert str(folder) in one_line(err)
    with pytest.raises(ValueError, match="damaged"):
        cache_module.load_feature_table(folder)
    clear_caches(tmp_path)  # what the message asks for, through the helper: then the build works again
    table, again = build_embedding_cache(model, sentences, tmp_path, batch_size=4)
    assert not again["reused"] and table.shape == (12, 32)


def test_a_shard_zeroed_after_its_header_is_caught_by_its_row_count(tiny_backbone, tmp_path):
    """The same size, the schema intact, the record batches zeroed: an Arrow stream reader reads zeros as its
    end, so the file looks like an empty shard; the meta's row count refuses it."""
    model = mean_model(tiny_backbone)
    _, info = build_embedding_cache(model, tiny_sentences(12), tmp_path, batch_size=4)
    shard = Path(info["path"]) / "shard-00000-of-00001.arrow"
    data = bytearray(shard.read_bytes())
    batch = data.index(b"\xff\xff\xff\xff", 8)  # the second message (the record batch) starts here
    data[batch:] = bytes(len(data) - batch)
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="holds 0 rows.*delete the folder") as err:
        build_embedding_cache(model, tiny_sentences(12), tmp_path, batch_size=4)
    one_line(err)


def test_values_beyond_float16_stop_the_build_with_advice_and_leave_no_cache(tiny_backbone, tmp_path):
    """Issue 20 item 8: activations above 65504 became inf in a float16 cache, and the run then blamed the
    learning rate. The range is checked per batch before anything is written."""
    model = mean_model(tiny_backbone)
    with torch.no_grad():
        model.encoder.encoder.layer[-1].output.LayerNorm.bias.fill_(1e5)  # every output near 1e5
    with pytest.raises(ValueError, match=r"float16.*--cache_dtype float32") as err:
        build_embedding_cache(model, tiny_sentences(12), tmp_path, batch_size=4)
    one_line(err)
    assert list(tmp_path.iterdir()) == []
    table, _ = build_embedding_cache(model, tiny_sentences(12), tmp_path, batch_size=4, dtype="float32")
    assert torch.isfinite(table[:]).all() and table[:].abs().max() > 65504
    with torch.no_grad():
        model.encoder.encoder.layer[-1].output.LayerNorm.bias[0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or Inf for \d+ sentence\(s\) of 'corpus'") as err:
        build_embedding_cache(model, tiny_sentences(12), tmp_path, batch_size=4, dtype="float32")
    one_line(err)
    assert len(list(tmp_path.iterdir())) == 1  # only the good float32 cache of before


def test_a_build_racing_another_on_the_same_key_keeps_the_first_finished_copy(tiny_backbone, tmp_path):
    """While this run encodes, another run finishes the same key: the rename cannot replace it, so this
    run drops its copy and reads the other's; nothing is left behind."""
    sentences = tiny_sentences(20)
    other = {}

    def finish_the_other_run():
        other["table"], other["info"] = build_embedding_cache(
            mean_model(tiny_backbone), sentences, tmp_path, batch_size=4, dtype="float32"
        )

    model = dying_after(mean_model(tiny_backbone), 1, finish_the_other_run)
    table, info = build_embedding_cache(model, sentences, tmp_path, batch_size=4, dtype="float32")
    assert info["key"] == other["info"]["key"] and visible(tmp_path) == [Path(info["path"]).name]
    assert list(tmp_path.iterdir()) == [Path(info["path"])]
    torch.testing.assert_close(table[:], other["table"][:])


# --- two processes -------------------------------------------------------------------------------------------
def torchrun(tmp_path, fault: str, port: int, tiny_backbone: str):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    env = {**ENV, "FAULT": fault, "TINY_BACKBONE": tiny_backbone}
    return subprocess.run([*cmd, __file__, str(tmp_path)], env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow  # two torchrun launches of 2 processes: about 30 s on 2 cores
def test_one_of_two_processes_dying_during_the_build_leaves_nothing_trusted(tiny_backbone, tmp_path):
    """Rank 1 dies (os._exit) in the middle of its shard; torchrun stops rank 0. Nothing is trusted; the rerun
    (also showing that a ValueError on one process is raised on both and cleans up) ends with the rows of
    an uninterrupted one-process build."""
    died = torchrun(tmp_path, "die", 29551, tiny_backbone)
    assert died.returncode != 0
    cache = tmp_path / "cache"
    assert visible(cache) == [] and list_caches(cache) == []
    assert any(".tmp-" in p.name for p in cache.iterdir())  # the dead build's leftovers, hidden
    rerun = torchrun(tmp_path, "raise_then_build", 29552, tiny_backbone)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for r in (0, 1):
        assert "failed on process 1: ValueError: injected failure" in got[r]["error"] or "injected" in got[r]["error"]
        assert got[r]["hidden_after"] == got[r]["hidden_before"]  # the failed build's folder was removed
        torch.testing.assert_close(got[r]["rows"], got[0]["rows"], atol=0, rtol=0)
    sentences = tiny_sentences(11)
    reference, _ = build_embedding_cache(mean_model(tiny_backbone), sentences, tmp_path / "ref", batch_size=4)
    torch.testing.assert_close(got[0]["rows"], reference[:], atol=1e-3, rtol=1e-3)  # float16 rows
    assert len(list_caches(cache)) == 1 and list_caches(cache)[0]["key"] == got[0]["info"]["key"]


def worker(out: Path) -> None:
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    fault, rank = os.environ["FAULT"], acc.process_index
    sentences = tiny_sentences(11)
    model = mean_model(os.environ["TINY_BACKBONE"])
    if fault == "die":
        if rank == 1:
            dying_after(model, 1, lambda: os._exit(7))
        build_embedding_cache(model, sentences, out / "cache", acc, batch_size=2)
        return
    result = {}
    if rank == 1:

        def fail():
            raise ValueError("injected failure")

        dying_after(model, 1, fail)
    hidden = lambda: sorted(p.name for p in (out / "cache").iterdir() if p.name.startswith("."))  # noqa: E731
    result["hidden_before"] = hidden()
    try:
        build_embedding_cache(model, sentences, out / "cache", acc, batch_size=2)
    except ValueError as err:
        result["error"] = str(err)
    acc.wait_for_everyone()
    result["hidden_after"] = hidden()
    model = mean_model(os.environ["TINY_BACKBONE"])
    table, result["info"] = build_embedding_cache(model, sentences, out / "cache", acc, batch_size=2)
    result["rows"] = table[:]
    torch.save(result, out / f"rank{rank}.pt")
    acc.wait_for_everyone()


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
