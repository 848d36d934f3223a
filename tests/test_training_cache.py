"""training/cache.py: the embedding cache (raw, streamed, reused, keyed on what decides the rows), dropout
views, mixed precision, the cache folder's location and its list/clear helpers. Faults (crashes, damaged
files, overflow, races, a dying process) are in test_faults_cache.py."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_simskip import SimSkipModel
from hf_simskip.training import HeadTrainingArguments, build_embedding_cache, embed_sentences, train_head
from hf_simskip.training import cache as cache_module
from hf_simskip.training.cache import FeatureTable, clear_caches, default_cache_dir, list_caches, weights_fingerprint

from utils import make_tiny_backbone, tiny_sentences


def mean_model(backbone, **kwargs):
    kwargs.setdefault("layers", None)
    kwargs.setdefault("pooling", "mean")
    return SimSkipModel.from_encoder_pretrained(backbone, **kwargs)


def test_embedding_cache_is_raw_reused_and_atomic(tiny_backbone, tmp_path):
    model = mean_model(tiny_backbone)
    sentences = tiny_sentences(20)
    x, info = build_embedding_cache(model, sentences, tmp_path, batch_size=8, dtype="float32")
    assert x.shape == (20, 32) and not info["reused"] and isinstance(x, FeatureTable)
    # raw backbone embeddings, in the input order (zero-init head: refined == raw)
    torch.testing.assert_close(x[:], model.encode(sentences, convert_to_numpy=False), atol=1e-5, rtol=1e-5)
    assert [p.name for p in Path(tmp_path).iterdir()] == [Path(info["path"]).name]  # no tmp left behind
    assert sorted(p.name for p in Path(info["path"]).iterdir()) == ["shard-00000-of-00001.arrow", "simskip_cache.json"]
    model.iter_head_inputs = None  # a second run with the same key must not encode
    x2, info2 = build_embedding_cache(model, sentences, tmp_path, batch_size=8, dtype="float32")
    assert info2["reused"] and info2["key"] == info["key"]
    torch.testing.assert_close(x[:], x2[:])
    # a different corpus or pooling is a different key
    _, info3 = build_embedding_cache(mean_model(tiny_backbone, pooling="max"), sentences, tmp_path)
    assert info3["key"] != info["key"] and len(os.listdir(tmp_path)) == 2
    with pytest.raises(ValueError, match="empty"):
        build_embedding_cache(model, [], tmp_path)
    with pytest.raises(TypeError, match=r"sentences\[1\] must be a str"):
        build_embedding_cache(model, ["a", 3], tmp_path)


def test_the_build_streams_batches_and_the_table_reads_rows_in_input_order(tiny_backbone, tmp_path, monkeypatch):
    """No whole-corpus tensor: the rows come from iter_head_inputs batch by batch (map_sentences, which fills
    one tensor, is never called) and go to disk in small record batches; the table maps them back."""
    monkeypatch.setattr(cache_module, "_WRITE_BYTES", 5 * 32 * 4)  # record batches of 5 rows: many chunks
    model = mean_model(tiny_backbone)
    model.map_sentences = None
    seen = []
    stream = model.iter_head_inputs
    model.iter_head_inputs = lambda *a, **k: (seen.append(len(p)) or (p, x) for p, x in stream(*a, **k))
    sentences = tiny_sentences(23)
    table, info = build_embedding_cache(model, sentences, tmp_path, batch_size=4, dtype="float32")
    assert seen == [4] * 5 + [3]
    meta = json.loads((Path(info["path"]) / "simskip_cache.json").read_text())
    assert meta["rows"] == 23 and meta["shape"] == [23, 32] and meta["shards"][0]["rows"] == 23
    assert len(table._starts) - 1 == 5  # 23 rows in record batches of 5
    del model.iter_head_inputs, model.map_sentences
    exact = embed_sentences(model, sentences)
    torch.testing.assert_close(table[:], exact, atol=1e-5, rtol=1e-5)
    # the tensor-like indexing API: ints (negative too), slices with steps, lists, arrays, tensors, 2-D
    torch.testing.assert_close(table[3], exact[3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(table[-1], exact[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(table[20:2:-3], exact[list(range(20, 2, -3))], atol=1e-5, rtol=1e-5)
    rows = [7, 0, 22, 7, -2]
    for index in (rows, np.array(rows), torch.tensor(rows)):
        torch.testing.assert_close(table[index], exact[rows], atol=1e-5, rtol=1e-5)
    assert table[torch.tensor([[1, 2], [3, 4]])].shape == (2, 2, 32) and table[[]].shape == (0, 32)
    with pytest.raises(IndexError, match="out of range"):
        table[[23]]
    with pytest.raises(TypeError, match="integer"):
        table[[0.5]]
    assert len(table) == 23 and table.dtype == "float32" and "shape=(23, 32)" in repr(table)


def test_a_layer_aware_cache_holds_every_layer_from_one_pass_in_float16(tiny_backbone, tmp_path):
    """The stacks (x, then the chosen pooled hidden layers) are stored in float16, memory-mapped, and equal
    what the model's own loop computes, to float16's precision; the layers are part of the key."""
    model = mean_model(tiny_backbone, layers=[0, 1])
    sentences = tiny_sentences(40)
    calls = []
    forward = model.encoder.forward
    model.encoder.forward = lambda *a, **k: calls.append(k.get("output_hidden_states")) or forward(*a, **k)
    table, info = build_embedding_cache(model, sentences, tmp_path, batch_size=16)
    assert calls == [True, True, True]  # one backbone pass per batch gives x and every layer
    assert table.shape == (40, 3, 32) and table[0:1].dtype == torch.float32 and table.dtype == "float16"
    assert not table._files[0].flags.owndata and not table._files[0].flags.writeable  # the mapped file itself
    exact = embed_sentences(model, sentences)
    torch.testing.assert_close(table[:], exact, atol=2e-3, rtol=1e-3)  # float16 rounding only
    torch.testing.assert_close(table[[5, 3]], table[:][[5, 3]])
    _, info2 = build_embedding_cache(mean_model(tiny_backbone, layers=[1]), sentences, tmp_path, batch_size=16)
    assert info2["key"] != info["key"]
    import datasets  # a shard is a datasets Arrow file

    assert datasets.Dataset.from_file(str(next(Path(info["path"]).glob("*.arrow")))).num_rows == 40


def test_dropout_views_differ_from_the_eval_embedding_and_are_seeded(tiny_backbone):
    model = mean_model(tiny_backbone)
    sentences = tiny_sentences(12)
    clean = embed_sentences(model, sentences)
    a = embed_sentences(model, sentences, dropout=True, seed=3)
    b = embed_sentences(model, sentences, dropout=True, seed=3)
    c = embed_sentences(model, sentences, dropout=True, seed=4)
    torch.testing.assert_close(a, b)  # the same seed: the same view
    assert not torch.allclose(a, clean, atol=1e-4) and not torch.allclose(a, c, atol=1e-4)
    # the backbone is back in eval mode: plain encoding is deterministic and unchanged
    assert not model.encoder.training
    torch.testing.assert_close(embed_sentences(model, sentences), clean)
    with pytest.raises(ValueError, match="dropout views need a backbone"):
        head_only = SimSkipModel(model.config.__class__(embedding_dim=32))
        head_only.tokenizer = model.tokenizer
        embed_sentences(head_only, sentences, dropout=True)


# --- the key: what decides the rows (issue 17 item 1, issue 20 item 9) ----------------------------------
def test_changed_backbone_weights_are_a_new_cache_not_a_stale_one(tiny_backbone, tmp_path):
    """The stale-cache bug: the key hashed the backbone's name, not its weights, so weights changed in place
    (a stage-0 fine-tune) or a local folder retrained in place reused the old rows."""
    sentences = tiny_sentences(12)
    model = mean_model(tiny_backbone)
    before, a = build_embedding_cache(model, sentences, tmp_path / "c", batch_size=4, dtype="float32")
    with torch.no_grad():
        model.encoder.embeddings.word_embeddings.weight.mul_(2.0)  # e.g. stage 0 trained the backbone
    after, b = build_embedding_cache(model, sentences, tmp_path / "c", batch_size=4, dtype="float32")
    assert not b["reused"] and b["key"] != a["key"]
    torch.testing.assert_close(after[:], embed_sentences(model, sentences), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(after[:], before[:], atol=1e-3)
    # a local backbone folder saved again with other weights, same path and name
    folder = make_tiny_backbone(tmp_path / "bb", seed=0)
    build_embedding_cache(mean_model(folder), sentences, tmp_path / "c", batch_size=4, dtype="float32")
    shutil.rmtree(folder)
    retrained = mean_model(make_tiny_backbone(folder, seed=1))
    table, info = build_embedding_cache(retrained, sentences, tmp_path / "c", batch_size=4, dtype="float32")
    assert not info["reused"]
    torch.testing.assert_close(table[:], embed_sentences(retrained, sentences), atol=1e-5, rtol=1e-5)
    # the caller's extra key (the recipe's stage-0 settings) is part of it
    _, c = build_embedding_cache(retrained, sentences, tmp_path / "c", batch_size=4, extra_key={"simcse_steps": 3})
    _, d = build_embedding_cache(retrained, sentences, tmp_path / "c", batch_size=4)
    assert c["key"] != d["key"]


def test_weights_fingerprint_reads_every_tensor(tiny_backbone):
    model = mean_model(tiny_backbone)
    first = weights_fingerprint(model.encoder)
    assert first == weights_fingerprint(mean_model(tiny_backbone).encoder)  # loading again: the same weights
    with torch.no_grad():
        model.encoder.encoder.layer[-1].output.dense.bias[0] += 1e-6
    assert weights_fingerprint(model.encoder) != first
    model.encoder.to(torch.bfloat16)  # a dtype without numpy support hashes too
    assert len(weights_fingerprint(model.encoder)) == 64


def test_the_same_sentences_in_another_order_are_another_cache(tiny_backbone, tmp_path):
    """Rows follow the input order, so the order is part of the key (the corpus fingerprint, of the sorted
    unique sentences, let a reordered list reuse rows that then belonged to other sentences)."""
    model = mean_model(tiny_backbone)
    sentences = tiny_sentences(10)
    build_embedding_cache(model, sentences, tmp_path, batch_size=4, dtype="float32")
    backwards = sentences[::-1] + sentences[:1]  # reordered, one repeated: the same set
    table, info = build_embedding_cache(model, backwards, tmp_path, batch_size=4, dtype="float32")
    assert not info["reused"] and table.shape[0] == 11
    torch.testing.assert_close(table[:], embed_sentences(model, backwards), atol=1e-5, rtol=1e-5)


def test_dropout_views_are_keyed_on_the_encode_batch_size_and_the_process_count(tiny_backbone, tmp_path):
    """A dropout view depends on which rows share a batch and on the process's seed (issue 20 item 9)."""
    model = mean_model(tiny_backbone)
    sentences = tiny_sentences(12)
    a, info_a = build_embedding_cache(model, sentences, tmp_path, batch_size=4, dropout_seed=1, dtype="float32")
    b, info_b = build_embedding_cache(model, sentences, tmp_path, batch_size=8, dropout_seed=1, dtype="float32")
    assert info_a["key"] != info_b["key"] and not info_b["reused"]
    assert not torch.allclose(a[:], b[:], atol=1e-4)
    meta = json.loads((Path(info_a["path"]) / "simskip_cache.json").read_text())
    assert meta["extra"]["batch_size"] == 4 and meta["extra"]["processes"] == 1
    again, info_c = build_embedding_cache(model, sentences, tmp_path, batch_size=4, dropout_seed=1, dtype="float32")
    assert info_c["reused"]
    torch.testing.assert_close(again[:], a[:])
    # the clean view does not depend on the batch size: one key for any
    _, clean_a = build_embedding_cache(model, sentences, tmp_path, batch_size=4)
    _, clean_b = build_embedding_cache(model, sentences, tmp_path, batch_size=8)
    assert clean_a["key"] == clean_b["key"] and clean_b["reused"]


# --- mixed precision (issue 19 item 2) -------------------------------------------------------------------
def test_a_bf16_run_encodes_under_autocast_close_to_float32(tiny_backbone, tmp_path):
    from accelerate import Accelerator

    model = mean_model(tiny_backbone, layers=[0, 1])
    sentences = tiny_sentences(24)
    autocast = []
    forward = model.encoder.forward
    model.encoder.forward = lambda *a, **k: autocast.append(torch.is_autocast_enabled("cpu")) or forward(*a, **k)
    fp32, info32 = build_embedding_cache(model, sentences, tmp_path, batch_size=8, dtype="float32")
    assert autocast == [False] * 3
    bf16, info16 = build_embedding_cache(
        model, sentences, tmp_path, batch_size=8, dtype="float32", mixed_precision="bf16"
    )
    assert autocast[3:] == [True] * 3 and info16["key"] != info32["key"]
    cos = torch.nn.functional.cosine_similarity(bf16[:].flatten(0, 1), fp32[:].flatten(0, 1), dim=-1)
    assert cos.min() >= 0.999, cos.min()
    assert not torch.equal(bf16[:], fp32[:])  # it did run in bf16
    # the accelerator's setting is used when no argument is given; "no" overrides it
    accelerator = Accelerator(cpu=True, mixed_precision="bf16")
    _, info_acc = build_embedding_cache(model, sentences, tmp_path, accelerator, 8, dtype="float32")
    assert info_acc["key"] == info16["key"] and info_acc["reused"]
    _, info_no = build_embedding_cache(
        model, sentences, tmp_path, accelerator, 8, dtype="float32", mixed_precision="no"
    )
    assert info_no["key"] == info32["key"]
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        build_embedding_cache(model, sentences, tmp_path, mixed_precision="bf8")
    autocast.clear()
    embed_sentences(model, sentences[:4], mixed_precision="bf16")
    assert autocast == [True]


# --- where caches live, and the helpers behind `hf-simskip cache list|clear` ------------------------------
def test_default_cache_dir_follows_hugging_face_conventions(monkeypatch, tmp_path):
    for var in ("HF_SIMSKIP_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "huggingface" / "hf_simskip"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "huggingface" / "hf_simskip"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert default_cache_dir() == tmp_path / "hf" / "hf_simskip"
    monkeypatch.setenv("HF_SIMSKIP_CACHE", str(tmp_path / "own"))
    assert default_cache_dir() == tmp_path / "own"
    from hf_simskip.training import DEFAULT_CACHE_DIR

    assert isinstance(DEFAULT_CACHE_DIR, str)


def test_build_uses_the_default_dir_and_list_and_clear_caches(tiny_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_SIMSKIP_CACHE", str(tmp_path / "caches"))
    model = mean_model(tiny_backbone)
    _, a = build_embedding_cache(model, tiny_sentences(8), name="one", batch_size=4)
    _, b = build_embedding_cache(model, tiny_sentences(9), name="two", batch_size=4, dtype="float32")
    assert Path(a["path"]).parent == tmp_path / "caches"
    listed = list_caches()
    assert [(e["name"], e["key"], e["rows"], e["shape"], e["dtype"]) for e in listed] == [
        ("one", a["key"], 8, [8, 32], "float16"),
        ("two", b["key"], 9, [9, 32], "float32"),
    ]
    assert all(e["size_bytes"] > 0 and e["created"] and e["complete"] for e in listed)
    stale = tmp_path / "caches" / f".two-{b['key'][:32]}.tmp-abc-0"  # an interrupted build of "two"
    stale.mkdir()
    (stale / "shard-00000-of-00001.arrow").write_bytes(b"partial")
    other = tmp_path / "caches" / "notes"  # not a cache: never touched
    other.mkdir()
    legacy = tmp_path / "caches" / f"corpus-{'ab' * 16}"  # written by hf_simskip 0.2.0 (format 2): listed, cleared
    legacy.mkdir()
    (legacy / "data-00000-of-00001.arrow").write_bytes(b"old rows")
    (legacy / "simskip_cache.json").write_text(json.dumps({"key": "ab" * 32, "rows": 3, "extra": {"dtype": "float16"}}))
    assert [(e["name"], e["format"], e["dtype"]) for e in list_caches() if e["path"] == str(legacy)] == [
        ("corpus", 2, "float16")
    ]
    assert clear_caches(keys=["abab"]) == [str(legacy)]
    assert list_caches(tmp_path / "nowhere") == [] and clear_caches(tmp_path / "nowhere") == []
    with pytest.raises(ValueError, match="hex digits"):
        clear_caches(keys=[""])
    assert clear_caches(keys=[a["key"][:8]]) == [a["path"]]
    assert [e["name"] for e in list_caches()] == ["two"]
    assert clear_caches(keys=b["key"]) == [b["path"]] and stale.is_dir()  # a fresh tmp may be a live build
    old = 10 * cache_module.STALE_TMP_SECONDS
    for f in (stale, *stale.iterdir()):
        os.utime(f, (os.stat(f).st_atime - old, os.stat(f).st_mtime - old))
    assert clear_caches() == [str(stale)] and sorted(p.name for p in (tmp_path / "caches").iterdir()) == ["notes"]


# --- the loader reads the cache by index (issue 19 item 3) ------------------------------------------------
def test_training_reads_the_memory_mapped_cache_one_batch_of_rows_at_a_time(tiny_backbone, tmp_path, monkeypatch):
    model = mean_model(tiny_backbone)
    table, _ = build_embedding_cache(model, tiny_sentences(64), tmp_path / "c", batch_size=16)
    reads = []
    original = FeatureTable.__getitem__

    def spy(self, index):  # index lists by their length, other reads (a slice: a sample) by their rows
        rows = original(self, index)
        reads.append(len(index) if isinstance(index, torch.Tensor) else ("sample", len(rows)))
        return rows

    monkeypatch.setattr(FeatureTable, "__getitem__", spy)
    args = HeadTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=16, max_steps=6, checkpointing_steps=0
    )
    train_head(model.head, table, args, fit_statistics=False)
    # shuffled index lists of one batch, never the whole table (the loop also reads samples of <= 1024 rows:
    # here the 64 rows there are)
    assert set(r for r in reads if r != 16) == {("sample", 64)} and reads.count(16) >= 6, reads


# --- several processes and several machines ----------------------------------------------------------------
def test_per_node_groups_when_the_disk_is_not_shared():
    from hf_simskip.training.cache import _groups

    everyone = [(0, 0, True), (1, 1, True), (2, 0, True), (3, 1, True)]
    assert _groups(everyone) == {r: [0, 1, 2, 3] for r in range(4)}
    own_disks = [(0, 0, True), (1, 1, True), (2, 0, False), (3, 1, False)]
    assert _groups(own_disks) == {0: [0, 1], 1: [0, 1], 2: [2, 3], 3: [2, 3]}


@pytest.mark.slow  # two torchrun launches side by side: about 25 s on 2 cores
def test_two_nodes_with_their_own_disks_each_build_a_complete_copy(tiny_backbone, tmp_path):
    """2 nodes x 1 process over a localhost rendezvous (torchrun --nnodes 2): with a cache_dir per node each
    node builds its own complete copy; with one shared cache_dir they build one copy of 2 shards. Both read
    the same rows, and training reads each process's own rows of a batch from its node's copy."""
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "OMP_NUM_THREADS": "1",
        "TINY_BACKBONE": tiny_backbone,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    nodes = []
    for rank in (0, 1):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--node_rank",
            str(rank),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            "29541",
            __file__,
            str(tmp_path),
        ]
        node_env = {**env, "NODE_CACHE": str(tmp_path / f"node{rank}"), "SHARED_CACHE": str(tmp_path / "shared")}
        nodes.append(subprocess.Popen(cmd, env=node_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [node.communicate(timeout=240) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    model = mean_model(tiny_backbone)
    exact = embed_sentences(model, tiny_sentences(11))
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for r in (0, 1):
        own = list((tmp_path / f"node{r}").iterdir())  # one complete copy per node's disk, nothing else
        assert [p.name for p in own] == [Path(got[r]["own"]["path"]).name]
        assert [p.name for p in own[0].glob("*.arrow")] == ["shard-00000-of-00001.arrow"]
        torch.testing.assert_close(got[r]["own_rows"], exact, atol=1e-5, rtol=1e-5)
        assert not got[r]["own"]["reused"] and got[r]["own_again"]["reused"]
    # each process reads its own half of every global batch of 8, by index; never the whole table
    batches = [[index for index in got[r]["reads"] if isinstance(index, list)] for r in (0, 1)]
    assert len(batches[0]) == len(batches[1]) >= 2
    for mine, theirs in zip(*batches):
        assert len(mine) == len(theirs) == 4 and not set(mine) & set(theirs)
    shared = [p for p in (tmp_path / "shared").iterdir()]
    assert len(shared) == 1 and sorted(p.name for p in shared[0].glob("*.arrow")) == [
        "shard-00000-of-00002.arrow",
        "shard-00001-of-00002.arrow",
    ]
    torch.testing.assert_close(got[0]["shared_rows"], got[1]["shared_rows"], atol=0, rtol=0)
    torch.testing.assert_close(got[0]["shared_rows"], exact, atol=1e-5, rtol=1e-5)


def worker(out: Path) -> None:
    """One process of the 2-node test (see above)."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    model = mean_model(os.environ["TINY_BACKBONE"])
    sentences = tiny_sentences(11)
    result = {}
    table, result["own"] = build_embedding_cache(model, sentences, os.environ["NODE_CACHE"], acc, 4, dtype="float32")
    result["own_rows"] = table[:]
    _, result["own_again"] = build_embedding_cache(model, sentences, os.environ["NODE_CACHE"], acc, 4, dtype="float32")
    shared, result["shared"] = build_embedding_cache(
        model, sentences, os.environ["SHARED_CACHE"], acc, 4, name="shared", dtype="float32"
    )
    result["shared_rows"] = shared[:]
    reads, original = [], FeatureTable.__getitem__

    def spy(self, index):  # index lists as lists, other reads (a slice) as their number of rows
        rows = original(self, index)
        reads.append(np.asarray(index).tolist() if isinstance(index, torch.Tensor) else len(rows))
        return rows

    FeatureTable.__getitem__ = spy
    args = HeadTrainingArguments(
        output_dir=str(out / "run"), per_device_train_batch_size=4, max_steps=2, checkpointing_steps=0
    )
    train_head(model.head, table, args, acc, fit_statistics=False)
    result["reads"] = reads
    torch.save(result, out / f"rank{acc.process_index}.pt")
    acc.wait_for_everyone()


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
