"""files.py: atomic writes of files and folders (the embedding-file formats are tested through `hf-simskip refine`)."""

import json

import pytest

from hf_simskip.files import atomic_path, replace_dir, temp_dir_beside, write_json, write_text


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
