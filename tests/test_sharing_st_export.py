"""sentence-transformers: a folder saved by SimSkipModel.save_pretrained is also a SentenceTransformer folder
(st_module.SimSkipTransformer), and the export (Transformer + Pooling + SimSkipModule) encodes like encode()."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from hf_simskip.cli import main as cli_main
from hf_simskip.sharing.st_export import save_sentence_transformers

from utils import SENTENCES, WITHOUT_HF_SIMSKIP, head_only, perturb, tiny_simskip

ST_FILES = {"modules.json", "config_sentence_transformers.json", "st_module.py"}


# --- one folder, both loaders (issue 21, items 2 and 9) ----------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # the layer-aware default: x and hidden states 0, 1
        {"layers": None, "encoder_normalize": True, "normalize_embeddings": True},
        {"layers": None, "standardize_input": True, "output": "concat"},
    ],
)
def test_a_saved_model_folder_is_a_sentence_transformers_folder(tiny_backbone, tmp_path, kwargs):
    model = tiny_simskip(tiny_backbone, **kwargs)
    model.save_pretrained(tmp_path / "m")
    assert ST_FILES <= set(os.listdir(tmp_path / "m"))
    assert json.loads((tmp_path / "m" / "modules.json").read_text()) == [
        {"idx": 0, "name": "0", "path": "", "type": "st_module.SimSkipTransformer"}
    ]
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        SentenceTransformer(str(tmp_path / "m"), device="cpu")
    st = SentenceTransformer(str(tmp_path / "m"), trust_remote_code=True, device="cpu")
    assert st.max_seq_length == model.config.max_seq_length
    assert st.get_embedding_dimension() == model.config.output_dim
    ours = model.encode(SENTENCES, batch_size=5)
    np.testing.assert_allclose(st.encode(SENTENCES, batch_size=5), ours, atol=1e-5)
    # sentence-transformers' own save of it loads again, in both loaders
    st.save(str(tmp_path / "again"))
    again = SentenceTransformer(str(tmp_path / "again"), trust_remote_code=True, device="cpu")
    np.testing.assert_allclose(again.encode(SENTENCES), ours, atol=1e-5)
    from transformers import AutoModel

    np.testing.assert_allclose(AutoModel.from_pretrained(tmp_path / "again").encode(SENTENCES), ours, atol=1e-5)


def test_a_head_only_folder_has_no_sentence_transformers_files(tmp_path):
    head_only(16).save_pretrained(tmp_path / "h")
    assert not ST_FILES & set(os.listdir(tmp_path / "h"))


def test_saved_config_holds_no_local_backbone_path(tiny_backbone, tmp_path):
    model = tiny_simskip(tiny_backbone)
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["encoder_config"]["_name_or_path"] == ""  # was the backbone's local folder
    assert model.config.encoder_config._name_or_path == tiny_backbone  # the model in memory keeps it
    model.config.encoder_name_or_path = "sentence-transformers/all-MiniLM-L6-v2"
    model.save_pretrained(tmp_path / "hub")
    saved = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert saved["encoder_config"]["_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_one_folder_loads_in_both_without_hf_simskip_and_without_a_prompt(tiny_backbone, tmp_path):
    """A fresh process where hf_simskip cannot be imported, stdin closed: AutoModel and SentenceTransformer load
    the same folder with trust_remote_code=True, ask nothing ("[y/N]" was asked for the tokenizer) and give
    equal embeddings."""
    model = tiny_simskip(tiny_backbone)
    model.save_pretrained(tmp_path / "m")
    np.save(tmp_path / "ref.npy", model.encode(SENTENCES))
    script = WITHOUT_HF_SIMSKIP + textwrap.dedent("""
        import numpy as np
        from sentence_transformers import SentenceTransformer
        from transformers import AutoModel
        folder, ref = sys.argv[1], np.load(sys.argv[2])
        auto = AutoModel.from_pretrained(folder, trust_remote_code=True)
        assert type(auto).__module__.startswith("transformers_modules"), type(auto).__module__
        np.testing.assert_allclose(auto.encode(sys.argv[3:]), ref, atol=1e-6)
        st = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
        assert type(st[0]).__module__.startswith("transformers_modules"), type(st[0]).__module__
        np.testing.assert_allclose(st.encode(sys.argv[3:]), auto.encode(sys.argv[3:]), atol=1e-5)
        print("BOTH_OK")
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    res = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "m"), str(tmp_path / "ref.npy"), *SENTENCES],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "BOTH_OK" in res.stdout
    assert "[y/N]" not in res.stdout + res.stderr and "Do you wish to run the custom code" not in res.stderr


@pytest.mark.slow  # loads the real 22M-parameter backbone three times
def test_packaged_minilm_folder_loads_in_both(tmp_path):
    from transformers import AutoModel

    from hf_simskip import SimSkipModel

    from utils import perturb

    model = perturb(SimSkipModel.from_encoder_pretrained())
    model.save_pretrained(tmp_path / "m")
    ours = model.encode(SENTENCES)
    auto = AutoModel.from_pretrained(tmp_path / "m", trust_remote_code=True)
    st = SentenceTransformer(str(tmp_path / "m"), trust_remote_code=True, device="cpu")
    np.testing.assert_allclose(auto.encode(SENTENCES), ours, atol=1e-6)
    np.testing.assert_allclose(st.encode(SENTENCES), ours, atol=1e-5)
    assert st.get_embedding_dimension() == 768


@pytest.mark.parametrize(
    "kwargs,types",
    [
        ({}, ["Transformer", "Pooling", "SimSkipModule"]),
        (
            {"encoder_normalize": True, "normalize_embeddings": True, "output": "concat"},
            ["Transformer", "Pooling", "Normalize", "SimSkipModule", "Normalize"],
        ),
        ({"standardize_input": True, "output": "concat"}, ["Transformer", "Pooling", "SimSkipModule"]),
        (  # a layer-aware head: the Transformer module emits all_layer_embeddings for SimSkipModule
            {"layers": [0, 2], "encoder_normalize": True, "normalize_embeddings": True},
            ["Transformer", "Pooling", "Normalize", "SimSkipModule", "Normalize"],
        ),
    ],
)
def test_sentence_transformers_parity(tiny_backbone, tmp_path, kwargs, types):
    model = tiny_simskip(tiny_backbone, **kwargs)
    folder = save_sentence_transformers(model, tmp_path / "st")
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == types
    assert [m["type"] for m in modules if m["type"].endswith("SimSkipModule")] == ["st_module.SimSkipModule"]
    assert {"st_module.py", "modeling_simskip.py", "configuration_simskip.py", "head.py", "losses.py"} <= set(
        os.listdir(folder)
    )
    st = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    assert st.max_seq_length == model.config.max_seq_length
    ours = model.encode(SENTENCES, batch_size=5)
    theirs = st.encode(SENTENCES, batch_size=5)
    assert theirs.shape == ours.shape == (len(SENTENCES), model.config.output_dim)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)


def test_loading_needs_trust_remote_code_and_works_without_hf_simskip(tiny_backbone, tmp_path):
    model = tiny_simskip(tiny_backbone)
    folder = save_sentence_transformers(model, tmp_path / "st")
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        SentenceTransformer(str(folder), device="cpu")
    np.save(tmp_path / "ref.npy", model.encode(SENTENCES))
    script = WITHOUT_HF_SIMSKIP + textwrap.dedent("""
        import numpy as np
        from sentence_transformers import SentenceTransformer
        st = SentenceTransformer(sys.argv[1], trust_remote_code=True, device="cpu")
        assert type(st[-1]).__module__.startswith("transformers_modules"), type(st[-1]).__module__
        np.testing.assert_allclose(st.encode(sys.argv[3:]), np.load(sys.argv[2]), atol=1e-5)
        print("ST_OK")
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    res = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(tmp_path / "ref.npy"), *SENTENCES],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ST_OK" in res.stdout


def test_export_errors_are_clear(tiny_backbone, tmp_path):
    with pytest.raises(ValueError, match="head-only"):
        save_sentence_transformers(head_only(16), tmp_path / "h")
    model = tiny_simskip(tiny_backbone)
    model.config.pooling = "cls"
    with pytest.raises(ValueError, match="no sentence-transformers Pooling equivalent"):
        save_sentence_transformers(model, tmp_path / "c")
    with pytest.raises(TypeError, match="expected a SimSkipModel"):
        save_sentence_transformers(object(), tmp_path / "o")


def test_cli_export_st(tiny_backbone, tmp_path, capsys):
    model = tiny_simskip(tiny_backbone)
    model.save_pretrained(tmp_path / "m")
    assert cli_main(["export-st", "--model", str(tmp_path / "m"), "--output", str(tmp_path / "st")]) == 0
    st = SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True, device="cpu")
    np.testing.assert_allclose(st.encode(SENTENCES), model.encode(SENTENCES), atol=1e-5)
    assert cli_main(["export-st", "--model", str(tmp_path / "nope"), "--output", str(tmp_path / "x")]) == 1
    assert "is not a folder saved by SimSkipModel" in capsys.readouterr().err


@pytest.mark.slow  # about 7 s on 2 cores: loads the real 22M-parameter backbone twice
def test_packaged_minilm_export_parity(tmp_path):
    """The real all-MiniLM-L6-v2 (Normalize before SimSkip): the exported pipeline matches encode()."""
    from hf_simskip import SimSkipModel

    from utils import perturb

    model = perturb(SimSkipModel.from_encoder_pretrained())
    folder = save_sentence_transformers(model, tmp_path / "st")
    assert [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())] == [
        "Transformer",
        "Pooling",
        "Normalize",
        "SimSkipModule",
        "Normalize",
    ]
    st = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    np.testing.assert_allclose(st.encode(SENTENCES), model.encode(SENTENCES), atol=1e-5)


def test_a_failed_export_leaves_the_earlier_one_whole(tiny_backbone, tmp_path, monkeypatch):
    """issue 17: the export wrote modules.json in place after saving into the target folder; now the folder is
    written whole beside it and renamed, so a failure midway leaves the earlier export as it was."""
    import hf_simskip.sharing.st_export as st_export
    from hf_simskip.sharing.st_export import save_sentence_transformers

    model = tiny_simskip(tiny_backbone)
    out = tmp_path / "st"
    save_sentence_transformers(model, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise OSError("disk full while copying the module code")

    monkeypatch.setattr(st_export.shutil, "copyfile", broken)
    with pytest.raises(OSError, match="disk full"):
        save_sentence_transformers(perturb(model, seed=3), out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and not [p for p in tmp_path.iterdir() if p.name.startswith(".st.tmp")]
