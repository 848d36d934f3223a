"""Export a SimSkipModel as a sentence-transformers model folder.

    from hf_simskip.st_export import save_sentence_transformers
    save_sentence_transformers(model, "out/st")
    SentenceTransformer("out/st", trust_remote_code=True).encode(sentences)  # == model.encode(sentences)

The folder holds Transformer (the backbone, at the root) + Pooling + Normalize (when
``encoder_normalize``) + SimSkipModule (``3_SimSkip``/...) + Normalize (when ``normalize_embeddings``).
modules.json names the refiner ``st_module.SimSkipModule``: a file of ``models/simskip/`` shipped in the
folder with the files it imports, which sentence-transformers loads through transformers'
dynamic-module loader. It is not part of sentence-transformers, so sentence-transformers >= 6 asks
for ``trust_remote_code=True`` for a local folder as for a Hub repo; hf_simskip need not be installed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ..files import replace_dir, temp_dir_beside, write_text

ST_POOLING = {
    "cls_before_pooler": "cls",
    "mean": "mean",
    "max": "max",
    "mean_sqrt_len": "mean_sqrt_len_tokens",
    "last": "lasttoken",
}
MODEL_CODE = Path(__file__).resolve().parent.parent / "models" / "simskip"
MODULE_TYPE = "st_module.SimSkipModule"


def code_files() -> list[str]:
    """st_module.py and the files it imports (relatively, recursively): what sentence-transformers' dynamic
    loader fetches beside modules.json."""
    from transformers.dynamic_module_utils import get_relative_import_files

    module = MODEL_CODE / "st_module.py"
    return [module.name, *sorted(Path(f).name for f in get_relative_import_files(str(module)))]


def simskip_module(model):
    """A SimSkipModule holding a copy of ``model``'s head (refiner and feature statistics)."""
    from ..models.simskip.st_module import SimSkipModule

    module = SimSkipModule.from_config(model.config)
    training_only = ("projector.", "layer_decoder.")
    state = {k: v for k, v in model.head.state_dict().items() if not k.startswith(training_only)}
    module.head.load_state_dict(state)
    return module.eval()


def _check(model) -> str:
    if getattr(getattr(model, "config", None), "model_type", None) != "simskip":
        raise TypeError(f"expected a SimSkipModel, got {type(model).__name__}")
    if model.encoder is None:
        raise ValueError(
            "a head-only SimSkipModel (no backbone) cannot become a SentenceTransformer: "
            "it takes embeddings, not text; save it with save_pretrained and use refine()"
        )
    if model.tokenizer is None:
        raise ValueError("the model has no tokenizer; load it from a folder saved with one")
    if model.config.pooling not in ST_POOLING:
        raise ValueError(
            f"pooling={model.config.pooling!r} (CLS through the backbone's MLP pooler) has no "
            f"sentence-transformers Pooling equivalent; supported: {sorted(ST_POOLING)}"
        )
    return ST_POOLING[model.config.pooling]


def build_sentence_transformer(model, backbone_dir):
    """The SentenceTransformer pipeline, the backbone read from ``backbone_dir`` (saved there first)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    mode = _check(model)
    model.encoder.save_pretrained(backbone_dir)
    model.tokenizer.save_pretrained(backbone_dir)
    c = model.config
    # a layer-aware head reads the hidden layers: the Transformer module emits them as all_layer_embeddings
    config_kwargs = {"output_hidden_states": True} if c.layers else None
    transformer = Transformer(str(backbone_dir), max_seq_length=c.max_seq_length, config_kwargs=config_kwargs)
    modules = [transformer, Pooling(c.embedding_dim, mode)]
    modules += [Normalize()] if c.encoder_normalize else []
    modules += [simskip_module(model)]
    modules += [Normalize()] if c.normalize_embeddings else []
    return SentenceTransformer(modules=modules, device="cpu")


def save_sentence_transformers(model, folder) -> Path:
    """Write ``folder`` so that ``SentenceTransformer(folder, trust_remote_code=True)`` encodes like
    ``model.encode`` (same backbone, pooling, normalisation, max length and refiner). The folder is written whole
    into a temporary folder beside it and renamed into place: a failure leaves no half export, and an earlier
    export at ``folder`` is replaced only then."""
    folder = Path(folder)
    staged = temp_dir_beside(folder)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            st = build_sentence_transformer(model, Path(tmp) / "backbone")
            st.save(str(staged))
        for name in code_files():
            shutil.copyfile(MODEL_CODE / name, staged / name)
        modules = json.loads((staged / "modules.json").read_text(encoding="utf-8"))
        for entry in modules:
            if entry.get("type", "").endswith(".SimSkipModule"):
                entry["type"] = MODULE_TYPE  # the file beside modules.json, not the installed package
        write_text(staged / "modules.json", json.dumps(modules, indent=2))
        return replace_dir(staged, folder)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


__all__ = ["save_sentence_transformers", "build_sentence_transformer", "simskip_module"]
