"""eval/compare.py: refuses results of different protocols (issue 21, item 5); its y-axis starts from a
floor just below the lowest bar, not at 0 and never above a bar."""

import importlib.util
import json

import pytest

from utils import REPO, results_json


def _compare():
    spec = importlib.util.spec_from_file_location("eval_compare", REPO / "eval" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = _compare()


def _result(mode="fast", probe="batched", files=None, scale=1.0):
    res = results_json(scale=scale, mode=mode)
    res["protocol"]["probe"] = {"name": probe, "fits": []}
    res["protocol"]["data_fingerprint"] = {"sha256": "x", "files": files or {"CR/custrev.pos": "a", "MR/x": "b"}}
    return res


def _write(tmp_path, name, res):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(res))
    return str(path)


def test_refuses_different_protocols_in_one_line(tmp_path, capsys):
    full = _write(tmp_path, "baseline", _result(mode="full"))
    fast = _write(tmp_path, "refined", _result(mode="fast", probe="sklearn", files={"CR/custrev.pos": "other"}))
    png = tmp_path / "c.png"
    assert compare.main([full, fast, "--output", str(png)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not png.exists()
    assert "mode: baseline=full, refined=fast" in err and "kfold: baseline=10, refined=5" in err
    assert "probe: baseline=batched, refined=sklearn" in err and "data: CR/custrev.pos differ" in err
    assert "--allow-protocol-mismatch" in err


def test_allow_protocol_mismatch_draws_with_the_warning_in_the_title(tmp_path, capsys, monkeypatch):
    full = _write(tmp_path, "baseline", _result(mode="full"))
    fast = _write(tmp_path, "refined", _result(mode="fast"))
    title, titles = compare._title, []
    monkeypatch.setattr(compare, "_title", lambda results, diffs: titles.append(diffs) or "t")
    png = tmp_path / "c.png"
    assert compare.main([full, fast, "--output", str(png), "--allow-protocol-mismatch"]) == 0
    assert png.stat().st_size > 1000 and titles == [
        ["mode: baseline=full, refined=fast", "kfold: baseline=10, refined=5"]
    ]
    assert "WARNING: protocols differ" in capsys.readouterr().err
    assert title([_result()], ["mode: a=full, b=fast"]).startswith("WARNING, protocols differ")


def test_same_protocol_compares(tmp_path):
    # different task subsets fingerprint different file sets: only the files both read must agree
    a = _write(tmp_path, "a", _result(files={"CR/custrev.pos": "a"}))
    b = _write(tmp_path, "b", _result(files={"CR/custrev.pos": "a", "SST/x": "c"}, scale=0.9))
    assert compare.main([a, b, "--output", str(tmp_path / "c.png")]) == 0
    assert compare.protocol_differences([_result(), _result()], ["a", "b"]) == []


def test_y_axis_floor():
    low, high = compare.y_limits([70.0, 92.5, 81.0])
    assert 0 < low < 70 and low % 5 == 0 and high > 92.5 + 4  # room for the bar labels above the top bar
    assert compare.y_limits([3.0, 50.0])[0] == 0  # never below 0 for non-negative scores
    low, _ = compare.y_limits([-12.0, 40.0])  # a negative Spearman: the floor goes below it, the bar is not cut
    assert low < -12.0


@pytest.mark.parametrize("bad", ["not json", json.dumps({"no": "tasks"})])
def test_bad_result_file_is_one_line(tmp_path, capsys, bad):
    path = tmp_path / "r.json"
    path.write_text(bad)
    assert compare.main([str(path), "--output", str(tmp_path / "c.png")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
