"""Fault injection, outputs layer: what `hf-simskip refine` / `embed` and hf_simskip.files.write_embeddings leave
on disk when the input is replaced in place, the input is bad, the disk fills up mid-write, or the model's output
is not finite. The promise: an existing output is replaced whole or not at all, in-place replacement keeps
everything but the replaced array, and no temporary file is left behind. (Other layers: test_faults_*.py.)"""

import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch

from hf_simskip.cli import main

from utils import head_only


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory):
    """A head-only SimSkip model for 128-d embeddings, saved."""
    folder = tmp_path_factory.mktemp("head") / "h"
    model = head_only(128)
    model.save_pretrained(folder)
    return folder, model


def run(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def leftovers(folder) -> list[str]:
    return [f for f in os.listdir(folder) if f.endswith(".tmp") or ".tmp" in f]


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_overwrite_in_place_keeps_the_other_arrays_of_an_npz(head_dir, tmp_path, capsys, save):
    """issue 20 item 3: `refine --overwrite` with the same .npz as input and output kept only `refined`."""
    folder, model = head_dir
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 128)).astype(np.float32)
    kept = {"train": x, "test": rng.normal(size=(3, 128)), "ids": np.arange(20), "names": np.array(["a", "bb"])}
    path = tmp_path / "emb.npz"
    save(path, **kept)
    compression = {i.filename: i.compress_type for i in zipfile.ZipFile(path).infolist()}
    code, _, err = run(
        ["refine", "--model", folder, "--input", path, "--key", "train", "--output", path, "--overwrite"], capsys
    )
    assert code == 0, err
    with np.load(path) as data:
        assert sorted(data.files) == ["ids", "names", "refined", "test", "train"]
        for name, value in kept.items():
            np.testing.assert_array_equal(data[name], value)
        np.testing.assert_allclose(data["refined"], model.refine(x), atol=1e-6)
    kept_members = {i.filename: i.compress_type for i in zipfile.ZipFile(path).infolist() if i.filename in compression}
    assert kept_members == compression  # copied as stored: a compressed archive stays compressed
    assert leftovers(tmp_path) == []

    # replacing the input array itself, in place: the others still stay
    code, _, err = run(
        [
            "refine",
            "--model",
            folder,
            "--input",
            path,
            "--key",
            "test",
            "--output",
            path,
            "--output-key",
            "test",
            "--overwrite",
        ],
        capsys,
    )
    assert code == 0, err
    with np.load(path) as data:
        assert sorted(data.files) == ["ids", "names", "refined", "test", "train"]
        np.testing.assert_allclose(data["test"], model.refine(kept["test"].astype(np.float32)), atol=1e-6)
        np.testing.assert_array_equal(data["train"], x)


def test_overwrite_in_place_keeps_the_other_columns_of_a_parquet(head_dir, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder, model = head_dir
    x = np.random.default_rng(1).normal(size=(6, 128)).astype(np.float32)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": list(range(6)), "text": list("abcdef"), "emb": [list(r) for r in x]}), path)
    code, _, err = run(
        ["refine", "--model", folder, "--input", path, "--column", "emb", "--output", path, "--overwrite"], capsys
    )
    assert code == 0, err
    table = pq.read_table(path)
    assert table.column_names == ["id", "text", "emb", "refined"] and table.column("text").to_pylist() == list("abcdef")
    np.testing.assert_allclose(np.array(table.column("refined").to_pylist()), model.refine(x), atol=1e-6)


@pytest.mark.parametrize(
    "case,needle",
    [
        ("width", "64-d but the model"),
        ("nan", "NaN or Inf in 2 row(s)"),
        ("missing", "does not exist"),
        ("1d", "expected a 2-D (n, d) array"),
        ("suffix", "expected a .npy, .npz, .parquet file"),
        ("corrupt", "could not be read as .npy"),
        ("no_model", "model folder"),
    ],
)
def test_refine_bad_input_keeps_the_old_output(head_dir, tmp_path, capsys, case, needle):
    folder, _ = head_dir
    rng = np.random.default_rng(2)
    x = {"width": rng.normal(size=(5, 64)), "1d": rng.normal(size=128)}.get(case, rng.normal(size=(5, 128)))
    if case == "nan":
        x[[1, 3], 7] = np.nan
    inp = tmp_path / ("x.txt" if case == "suffix" else "x.npy")
    if case == "corrupt":
        inp.write_bytes(b"\x93NUMPY garbage")
    elif case != "missing":
        np.save(inp, x) if inp.suffix == ".npy" else inp.write_text("1 2 3")
    model = tmp_path / "nope" if case == "no_model" else folder
    old = tmp_path / "y.npy"
    np.save(old, np.arange(6.0))
    before = old.read_bytes()
    code, out, err = run(["refine", "--model", model, "--input", inp, "--output", old], capsys)
    assert code == 1 and needle in err and err.strip().splitlines()[-1].startswith("hf-simskip refine: error:"), err
    assert old.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_refine_refuses_to_write_a_non_finite_output(head_dir, tmp_path, capsys):
    """Finite input, a model whose (finite, huge) weights overflow: nothing NaN/Inf is written, exit 1."""
    folder, _ = head_dir
    model = head_only(128)
    with torch.no_grad():
        for p in model.head.parameters():
            p.fill_(1e30)
    model.save_pretrained(tmp_path / "huge")
    np.save(tmp_path / "x.npy", np.ones((4, 128), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.arange(3.0))
    before = (tmp_path / "y.npy").read_bytes()
    capsys.readouterr()  # the progress bar of save_pretrained above
    code, out, err = run(
        ["refine", "--model", tmp_path / "huge", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"], capsys
    )
    assert code == 1 and "NaN or Inf" in err and "y.npy" in err, err
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert (tmp_path / "y.npy").read_bytes() == before and leftovers(tmp_path) == []


# A real fault, not a stand-in: the file-size limit of the process (RLIMIT_FSIZE) makes the write fail with EFBIG
# part-way through, as a full disk would (SIGXFSZ ignored, so the write raises instead of killing the process).
FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from hf_simskip.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def test_a_disk_full_mid_write_leaves_the_file_whole(head_dir, tmp_path):
    """In-place --overwrite of an .npz whose new content outgrows the disk: the old archive stays, byte for byte,
    with one line on stderr naming the file, and no temporary file is left."""
    folder, _ = head_dir
    x = np.random.default_rng(3).normal(size=(300, 128)).astype(np.float32)
    path = tmp_path / "emb.npz"
    np.savez(path, train=x, ids=np.arange(300))
    before = path.read_bytes()
    args = ["refine", "--model", folder, "--input", path, "--key", "train", "--output", path, "--overwrite"]
    res = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(len(before) + 4096), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1, res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "Traceback" not in res.stderr
    assert f"could not write {path}" in res.stderr and "free some disk space" in res.stderr
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
