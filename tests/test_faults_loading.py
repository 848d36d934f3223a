"""Fault injection, loading layer: a saved SimSkip folder that is incomplete or holds impossible settings, a backbone
path that does not exist, sentences no tokenizer can read, inputs at the edge of float32, and bad settings of the
backbone. The promise: a loaded SimSkip folder is complete or refused, and every such input is one line naming what
is wrong and what to do, at the level users meet it (SimSkipModel / AutoModel, `hf-simskip refine`, the recipe).
(Other layers: test_faults_*.py.)"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file, save_file
from test_recipe import tiny_args
from transformers import AutoModel

from hf_simskip import SimSkipModel
from hf_simskip.cli import main as cli

from utils import head_only, tiny_simskip, write_corpus

SENTENCES = ["A gripping story with great actors.", "What is the capital of France?", "hello world"]


@pytest.fixture()
def plain_model(tiny_backbone):
    """A text model on the tiny backbone, the paper's head on x alone (32-d), moved away from its init."""
    return tiny_simskip(tiny_backbone, layers=None)


@pytest.fixture()
def recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as in test_recipe.py: never see a finished run of the checkout
    import train_simcse_skip

    AcceleratorState._reset_state(reset_partial_state=True)
    yield train_simcse_skip
    AcceleratorState._reset_state(reset_partial_state=True)


def run_cli(args, capsys):
    capsys.readouterr()  # what the test printed before (progress bars of save_pretrained)
    code = cli([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hf-simskip {command}: error: "), err
    return lines[0]


# --- saved folders ------------------------------------------------------------------------------------------
def drop_tensors(folder, prefix: str, n: int = 2) -> list[str]:
    """Rewrite ``folder``/model.safetensors without its first ``n`` tensors named ``prefix``*; returns their names."""
    path = folder / "model.safetensors"
    tensors = load_file(path)
    dropped = sorted(k for k in tensors if k.startswith(prefix))[:n]
    save_file({k: v for k, v in tensors.items() if k not in dropped}, path, metadata={"format": "pt"})
    return dropped


def test_a_folder_whose_weights_lack_head_tensors_is_refused(plain_model, tmp_path, capsys):
    """issue 20 item 7: transformers initialised the missing tensors at random (exit 0, other embeddings); a SimSkip
    folder is complete or refused, with the tensors named."""
    plain_model.save_pretrained(tmp_path / "m")
    dropped = drop_tensors(tmp_path / "m", "head.refiner.")
    assert len(dropped) == 2
    with pytest.raises(ValueError) as err:
        AutoModel.from_pretrained(tmp_path / "m")
    message = str(err.value)
    assert "\n" not in message and "the weights lack 2 tensor(s) of this SimSkip model" in message
    assert all(name in message for name in dropped) and "save it again" in message
    with pytest.raises(ValueError, match="the weights lack 2 tensor"):
        SimSkipModel.from_pretrained(tmp_path / "m")
    # hf-simskip refine on a head-only folder that lacks head tensors: exit 1, one line naming them
    head_only(16).save_pretrained(tmp_path / "h")
    dropped = drop_tensors(tmp_path / "h", "head.", n=3)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32))
    code, _, err = run_cli(
        ["refine", "--model", tmp_path / "h", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"], capsys
    )
    line = one_error_line(err, "refine")
    assert code == 1 and "lack 3 tensor(s)" in line and all(name in line for name in dropped)
    assert not (tmp_path / "y.npy").exists()


def test_refine_prints_only_the_error_line_for_a_folder_lacking_tensors(tmp_path):
    """transformers logged its multi-line load report (the missing keys) to stderr before SimSkipModel.from_pretrained
    refused the folder; the refusal is now the only output, and it is not re-wrapped as a corrupt file."""
    head_only(16).save_pretrained(tmp_path / "h")
    drop_tensors(tmp_path / "h", "head.refiner.")
    np.save(tmp_path / "x.npy", np.ones((4, 16), dtype=np.float32))
    cmd = [sys.executable, "-m", "hf_simskip.cli", "refine", "--model", str(tmp_path / "h"), "--input"]
    proc = subprocess.run(
        [*cmd, str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "the weights lack 2 tensor(s)" in proc.stderr
    line = one_error_line(proc.stderr, "refine")
    assert (
        line == f"hf-simskip refine: error: {tmp_path / 'h'}: the weights lack" + line.split("the weights lack", 1)[1]
    )


def test_the_load_report_is_still_shown_for_a_folder_that_loads(tmp_path):
    """Only a refused folder's report is held back: a folder with an extra tensor loads, and transformers' report of
    the unexpected key still reaches its logger's handlers."""
    import logging

    from transformers.utils import logging as hf_logging

    head_only(16).save_pretrained(tmp_path / "h")
    path = tmp_path / "h" / "model.safetensors"
    save_file({**load_file(path), "head.extra_tensor": torch.ones(2)}, path, metadata={"format": "pt"})
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    report_logger, handler = hf_logging.get_logger("transformers.modeling_utils"), Keep()
    report_logger.addHandler(handler)
    try:
        SimSkipModel.from_pretrained(tmp_path / "h")
        drop_tensors(tmp_path / "h", "head.refiner.")
        with pytest.raises(ValueError, match="the weights lack 2 tensor"):
            SimSkipModel.from_pretrained(tmp_path / "h")
    finally:
        report_logger.removeHandler(handler)
    assert len(seen) == 1 and "head.extra_tensor" in seen[0] and "LOAD REPORT" in seen[0], seen
    assert not report_logger.filters  # nothing left attached


def test_refine_passes_a_bad_config_on_without_calling_it_a_corrupt_file(tmp_path, capsys):
    """load_simskip (cli) wrapped every error as 'could not load the weights ... (a truncated or corrupt file?)': a
    refusal that names the folder is passed on unchanged; another ValueError is said to be the folder's, not its
    weights' (a truncated file keeps the wrapping: test_cli.py)."""
    from hf_simskip.loading import load_simskip

    head_only(16).save_pretrained(tmp_path / "h")
    drop_tensors(tmp_path / "h", "head.refiner.")
    with pytest.raises(ValueError) as err:
        load_simskip(str(tmp_path / "h"))
    assert str(err.value).startswith(f"{tmp_path / 'h'}: the weights lack 2 tensor(s)"), err.value
    head_only(16, layers=[0, 1]).save_pretrained(tmp_path / "c")
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    config["layer_scale"] = -1.0
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as err:
        load_simskip(str(tmp_path / "c"))
    message = str(err.value)
    assert "truncated or corrupt" not in message and "could not load the weights" not in message, message
    assert message.startswith(f"could not load a SimSkip model from {str(tmp_path / 'c')!r}: layer_scale"), message


def test_a_saved_config_with_an_infinite_layer_scale_is_refused(tmp_path, capsys):
    """issue 20 item 5: layer_scale inf gave inf x 0 = NaN embeddings (exit 0); a config.json that says so (edited by
    hand, or saved before the check) is refused where it is loaded."""
    head_only(16, layers=[0, 1]).save_pretrained(tmp_path / "h")
    config = json.loads((tmp_path / "h" / "config.json").read_text())
    config["layer_scale"] = float("inf")  # json writes Infinity, which Python's json reads back
    (tmp_path / "h" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"layer_scale must be a number in \[0.0, 1000.0\], got inf"):
        AutoModel.from_pretrained(tmp_path / "h")
    np.save(tmp_path / "x.npy", np.ones((4, 3, 16), dtype=np.float32))
    code, _, err = run_cli(
        ["refine", "--model", tmp_path / "h", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"], capsys
    )
    assert code == 1 and "layer_scale must be a number in [0.0, 1000.0], got inf" in one_error_line(err, "refine")


def test_huge_finite_inputs_give_finite_outputs_through_refine(tmp_path, capsys):
    """issue 20 item 6: a layer-aware head returned NaN for half the output on float32 input near 1e20 (exit 0)."""
    model = head_only(16, layers=[0, 1])
    model.head.layer_branch.open()  # as after training: u is part of the output
    model.save_pretrained(tmp_path / "h")
    x = np.random.default_rng(0).normal(size=(6, 3, 16)).astype(np.float32) * np.float32(1e20)
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_cli(
        ["refine", "--model", tmp_path / "h", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"], capsys
    )
    assert code == 0, err
    refined = np.load(tmp_path / "y.npy")
    assert refined.shape == (6, 32) and np.isfinite(refined).all() and np.abs(refined[:, 16:]).max() > 0


# --- backbones ---------------------------------------------------------------------------------------------
def test_a_nonexistent_local_backbone_is_one_line(recipe, tiny_backbone, tmp_path):
    """It read "Repo id must be in the form 'repo_name' or 'namespace/repo_name'" (huggingface_hub's validator)."""
    missing = str(tmp_path / "no_such_backbone")
    for name in (missing, "./no_such_backbone", "~/no/such/backbone"):
        with pytest.raises(FileNotFoundError, match="backbone folder .* does not exist \\(a local path; a Hub id"):
            SimSkipModel.from_encoder_pretrained(name, pooling="mean")
    corpus = write_corpus(tmp_path / "c.txt", 64)
    with pytest.raises(FileNotFoundError, match=f"backbone folder '{missing}' does not exist") as err:
        recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--model_name_or_path", missing))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing encoded


def test_backbone_errors_are_clear(tiny_backbone):
    with pytest.raises(ValueError, match="pooling must be given"):
        SimSkipModel.from_encoder_pretrained(tiny_backbone)
    with pytest.raises(ValueError, match="pooling must be one of"):
        SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="avg")
    with pytest.raises(ValueError, match="does not fit the backbone, whose hidden_size is 32"):
        SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", embedding_dim=64, hidden_dims=[32, 64])


def test_an_infinite_layer_scale_is_refused_before_any_encoding(recipe, tiny_backbone, tmp_path):
    """issue 20 item 5, in the recipe: the run exited 0 with dev score nan at every step."""
    corpus = write_corpus(tmp_path / "c.txt", 64)
    for value in ("inf", "1e4"):
        AcceleratorState._reset_state(reset_partial_state=True)
        with pytest.raises(ValueError, match=r"layer_scale must be a number in \[0.0, 1000.0\], got"):
            recipe.main(tiny_args(tiny_backbone, corpus, tmp_path, "--layer_scale", value))
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
    assert not (tmp_path / "out" / "final").exists()


# --- sentences ----------------------------------------------------------------------------------------------
def test_a_lone_surrogate_is_one_line(plain_model, tmp_path):
    """It was the tokenizer's TypeError ("TextEncodeInput must be Union[...]"). Python strings can hold one (a JSON
    "\\ud800" escape, a surrogate-escaped file name); UTF-8 files cannot."""
    plain_model.save_pretrained(tmp_path / "m")
    model = AutoModel.from_pretrained(tmp_path / "m")
    with pytest.raises(ValueError) as err:
        model.encode([SENTENCES[0], json.loads('"bad \\ud800 text"')])
    assert str(err.value).startswith("sentences[1] is not valid Unicode text (surrogates not allowed at character 4)")
    assert "\n" not in str(err.value)
    assert model.encode(SENTENCES).shape == (3, 32)  # the model is still usable


def test_a_surrogate_in_a_text_file_is_one_line_naming_the_line(plain_model, recipe, tiny_backbone, tmp_path, capsys):
    """The bytes of a surrogate (CESU-8, e.g. from Java or a JSON dumper) are not UTF-8: the file and line are named,
    by `hf-simskip refine --text-file` and by the recipe's --train_file."""
    plain_model.save_pretrained(tmp_path / "m")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello world\nbad \xed\xa0\x80 text\n")
    code, _, err = run_cli(
        ["refine", "--model", tmp_path / "m", "--text-file", bad, "--output", tmp_path / "y.npy"], capsys
    )
    line = one_error_line(err, "refine")
    assert code == 1 and f"{bad}: line 2 is not valid UTF-8 (byte 0xed)" in line
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(open(write_corpus(tmp_path / "c.txt", 64), "rb").read() + b"bad \xed\xa0\x80 text\n")
    with pytest.raises(ValueError, match=f"text file '{corpus}' is not UTF-8 \\(byte 0xed at offset"):
        recipe.main(tiny_args(tiny_backbone, corpus, tmp_path))


def test_encode_and_refine_reject_bad_input(plain_model):
    with pytest.raises(TypeError, match=r"sentences\[2\] must be a str, got int"):
        plain_model.encode(["a", "b", 3])
    with pytest.raises(ValueError, match=r"shape \(n, 32\) for this head, got \(3, 31\)"):
        plain_model.refine(np.zeros((3, 31)))
    bad = np.zeros((4, 32))
    bad[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"NaN or Inf in 1 row\(s\), first: \[2\]"):
        plain_model.refine(bad)
    with pytest.raises(ValueError, match="shape"):
        plain_model.refine(np.zeros(32))
    assert torch.isfinite(torch.as_tensor(plain_model.refine(np.ones((2, 32))))).all()


# --- encodes: bounded memory, full precision ----------------------------------------------------------------
def test_the_length_sort_costs_an_int64_per_sentence(tiny_backbone):
    """iter_head_inputs sorted a Python list of ints (about 50 bytes a sentence, every list and int object counted);
    the order is now an int64 tensor (torch's memory, not Python's): what Python allocates until the first batch is
    the checked copy of the list and one 8-byte length per sentence. The order is unchanged: longest first, ties in
    input order."""
    import tracemalloc

    model = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", layers=None).eval()
    n = 100_000
    sentences = [f"hello world {'a' * (i % 3)}" for i in range(n)]
    next(model.iter_head_inputs(sentences[:8], 4))  # tokenizer and backbone warmed up outside the measurement
    tracemalloc.start()
    try:
        with torch.no_grad():
            positions, _ = next(model.iter_head_inputs(sentences, 4))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert positions == [2, 5, 8, 11], positions
    assert peak / n < 24, f"{peak / n:.1f} bytes per sentence"
    few = ["bb", "a", "ccc", "dd", "e"]
    order = [p for batch, _ in model.iter_head_inputs(few, 2) for p in batch]
    assert order == sorted(range(len(few)), key=lambda i: -len(few[i])) == [2, 0, 3, 1, 4]


def test_hidden_states_are_pooled_in_float32_under_autocast(tiny_backbone):
    """Under autocast a backbone can hand back bfloat16 states (a norm that casts back to its input's dtype): a mean
    summed in bfloat16 loses digits. They are pooled in float32, exactly as their float32 copy, for every pooling
    mode and for the layers; outside autocast a half-precision state keeps its dtype."""
    from hf_simskip.models.simskip.pooling import pool, pool_layers

    g = torch.Generator().manual_seed(0)
    states = (torch.randn(3, 40, 32, generator=g) * 3 + 1).bfloat16()  # (batch, seq, d)
    mask = torch.ones(3, 40, dtype=torch.long)
    mask[1, 25:] = 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for mode in ("mean", "mean_sqrt_len", "max", "cls_before_pooler", "last"):
            got = pool(mode, states, mask)
            assert got.dtype == torch.float32, mode
            assert torch.equal(got, pool(mode, states.float(), mask)), mode
        assert pool("cls", states, mask, pooler_output=states[:, 0]).dtype == torch.float32
        layers = pool_layers("mean", [states, states * 2], mask, [0, 1])
        assert layers.dtype == torch.float32 and torch.equal(layers[:, 1], pool("mean", (states * 2).float(), mask))
    assert pool("mean", states, mask).dtype == torch.bfloat16  # no autocast: the caller's dtype

    # through head_inputs: a backbone whose states come back in bfloat16 under autocast
    model = SimSkipModel.from_encoder_pretrained(tiny_backbone, pooling="mean", layers=[1, 2]).eval()
    feats = model.tokenizer(SENTENCES, padding=True, return_tensors="pt")

    def to_bf16(module, inputs, out):
        out.last_hidden_state = out.last_hidden_state.bfloat16()
        out.hidden_states = tuple(h.bfloat16() for h in out.hidden_states)
        return out

    model.encoder.register_forward_hook(to_bf16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = model.head_inputs(feats["input_ids"], feats["attention_mask"])  # (3, 1 + 2, 32)
        out = model.encoder(
            input_ids=feats["input_ids"], attention_mask=feats["attention_mask"], output_hidden_states=True
        )
    mask = feats["attention_mask"].unsqueeze(-1).float()
    want = torch.stack(
        [(h.float() * mask).sum(1) / mask.sum(1) for h in (out.last_hidden_state, *out.hidden_states[1:])], 1
    )
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
