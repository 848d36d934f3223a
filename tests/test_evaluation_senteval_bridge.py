"""prepare/batcher for the original SentEval (senteval.engine.SE)."""

import numpy as np
import pytest

from hf_simskip.evaluation import batcher, prepare


class _Model:
    def __init__(self):
        self.seen = []

    def encode(self, sentences, **kwargs):
        self.seen.extend(sentences)
        return np.ones((len(sentences), 3))


def test_batcher_joins_tokens_like_senteval_users():
    model = _Model()
    out = batcher({"model": model}, [["a", "b"], [], [b"caf\xc3\xa9"]])
    assert out.shape == (3, 3)
    assert model.seen == ["a b", ".", "café"]
    assert prepare({"model": model}, [["a"]]) is None
    with pytest.raises(TypeError, match="encode"):
        batcher({}, [["a"]])


def test_with_original_senteval(tmp_path, tiny_senteval):
    senteval = pytest.importorskip("senteval")

    params = {"task_path": str(tiny_senteval), "usepytorch": False, "kfold": 2, "model": _Model()}
    se = senteval.engine.SE(params, batcher, prepare)
    res = se.eval(["TREC"])
    assert "acc" in res["TREC"]
