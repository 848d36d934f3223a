"""files.py: atomic writes of files and folders, text files of sentences, stacked embeddings in parquet (the
embedding-file formats are tested through `hf-simskip refine`; what failed writes leave: test_faults_outputs.py)."""

import json

import numpy as np
import pytest

from hf_simskip.files import (
    atomic_path,
    read_embeddings,
    read_sentences,
    replace_dir,
    temp_dir_beside,
    write_embeddings,
    write_json,
    write_text,
)


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("crash while writing")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temporary file left behind
    write_text(target, "new")
    assert target.read_text() == "new"


def test_replace_dir_swaps_a_whole_folder(tmp_path):
    final = tmp_path / "final"
    final.mkdir()
    (final / "old.txt").write_text("old")
    tmp = temp_dir_beside(final)
    (tmp / "new.txt").write_text("new")
    assert final.exists() and tmp.parent == final.parent
    replace_dir(tmp, final)
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # the old folder is gone, no temporary left


def test_read_sentences_keeps_row_i_on_line_i(tmp_path):
    path = tmp_path / "s.txt"
    path.write_bytes("\ufeffFirst one.\r\nSecond, \u00e9t\u00e9.\r\n  third  \n".encode("utf-8"))  # BOM, CRLF
    assert read_sentences(path) == ["First one.", "Second, \u00e9t\u00e9.", "  third  "]
    path.write_text("no newline at the end", encoding="utf-8")
    assert read_sentences(path) == ["no newline at the end"]


@pytest.mark.parametrize(
    "content,error,needle",
    [
        (b"ok\nalso ok\nbad \xff byte\n", ValueError, "line 3 is not valid UTF-8 (byte 0xff): save the file as UTF-8"),
        (b"one\n\n  \ntwo\n", ValueError, "line 2 is empty (2 empty line(s))"),
        (b"", ValueError, "holds no sentences"),
        (None, FileNotFoundError, "does not exist"),
    ],
)
def test_read_sentences_errors_name_the_file_and_line(tmp_path, content, error, needle):
    path = tmp_path / "s.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error) as info:
        read_sentences(path)
    assert needle in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_stacked_rows_round_trip_through_parquet_and_npz(tmp_path):
    stacks = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)  # (n, 1 + L, d)
    for name in ("s.parquet", "s.npz", "s.npy"):
        write_embeddings(tmp_path / name, stacks, "head_inputs")
        got, _ = read_embeddings(tmp_path / name)
        np.testing.assert_array_equal(got, stacks)
    with pytest.raises(ValueError, match="keep_from applies to .npz outputs"):
        write_embeddings(tmp_path / "t.npy", stacks, keep_from=tmp_path / "s.npz")
