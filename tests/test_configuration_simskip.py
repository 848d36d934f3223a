"""SimSkipConfig (models/simskip/configuration_simskip.py): defaults, validation, the field list."""

import pytest
import torch

from hf_simskip import SimSkipConfig


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pooling": "avg"}, "pooling must be one of"),
        ({"hidden_dims": [4, 7]}, "must end with embedding_dim=8"),
        ({"hidden_dims": [4]}, "two positive ints"),
        ({"dropout": 1.5}, "dropout must be a number"),
        ({"max_seq_length": 0}, "max_seq_length must be a positive int"),
        ({"use_skip": False}, "zero_init=True with use_skip=False"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimSkipConfig(embedding_dim=8, **kwargs)


def test_config_defaults_follow_the_paper():
    c = SimSkipConfig(embedding_dim=768)
    assert c.hidden_dims == [384, 768] and c.projector_dim == 768 and c.output_dim == 768


def test_head_only_config_needs_its_width():
    with pytest.raises(ValueError, match="embedding_dim is required for a head-only model"):
        SimSkipConfig()


def test_field_names_are_the_init_arguments_and_views_are_not_fields():
    names = SimSkipConfig.field_names()
    assert names[:3] == ["encoder_config", "encoder_name_or_path", "encoder_revision"]
    assert {"pooling", "max_seq_length", "hidden_dims", "output", "normalize_embeddings"} <= set(names)
    assert not {"augmentation", "temperature", "mask_ratio", "noise_variance", "mask_fill"} & set(names)
    head = SimSkipConfig(embedding_dim=8).head_dict()
    assert "encoder_config" not in head and SimSkipConfig(**head).to_dict()["embedding_dim"] == 8


def test_legacy_max_length_key_is_read(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"model_type": "simskip", "embedding_dim": 8, "max_length": 16, "augmentation": "mask", "temperature": 0.1}'
    )
    c = SimSkipConfig.from_pretrained(tmp_path)
    assert c.max_seq_length == 16
    c.save_pretrained(tmp_path / "again")  # max_length would be refused as a generation parameter


def test_every_default_is_defined_once_the_config_the_head_and_the_recipe_help_agree():
    """SimSkipConfig's signature owns the defaults: the head built from a config uses its values, and the
    recipe's --help shows the same defaults (derived, not restated)."""
    import subprocess
    import sys

    from hf_simskip import SimSkipHead
    from hf_simskip.models.simskip.configuration_simskip import FIELD_HELP

    from utils import SCRIPT

    c = SimSkipConfig(embedding_dim=16, layers=[0, 1])
    head = SimSkipHead(c)
    assert [head.refiner.layer1[0].out_features, head.refiner.layer2[0].out_features] == c.hidden_dims == [8, 16]
    assert head.layer_branch.scale == c.layer_scale == SimSkipConfig.field_defaults()["layer_scale"]
    assert head.layer_branch.net[0].out_features == c.layer_hidden_dim == 4 * 16
    assert (
        head.layer_branch.closed_form_kind == c.layer_closed_form == SimSkipConfig.field_defaults()["layer_closed_form"]
    )
    assert head.projector[0].out_features == c.projector_dim == 16
    assert head.embed(torch.zeros(3, 3, 16)).shape == (3, c.output_dim)
    assert set(FIELD_HELP) == set(SimSkipConfig.field_names())  # every field has its help, once
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    text = " ".join(out.stdout.split()).split("options:", 1)[1]  # the options, not the usage line
    for name, default in SimSkipConfig.field_defaults().items():
        if name in ("encoder_config", "encoder_name_or_path", "encoder_revision"):
            continue
        said = "derived from the backbone or d" if default is None else repr(default)
        assert f"[default: {said}]" in text.split(f"--{name} ")[1][:900], name
    assert "--config CONFIG a YAML file" in text and "AdamW learning rate of the head (default: 0.001)" in text
    assert "(default: 512)" in text.split("--per_device_train_batch_size ")[1][:300]
    assert "turn load_best_at_end off" in text and "[default: 0.7] --" in text  # no "(default: None)" after it


def test_saved_configs_keep_the_behaviour_they_were_saved_with(tmp_path):
    """A config.json of hf_simskip 0.2 (layers, no layer_closed_form) loads with the branch it was trained with."""
    (tmp_path / "config.json").write_text(
        '{"model_type": "simskip", "embedding_dim": 8, "layers": [0, 1], "layer_hidden_dim": 32,'
        ' "transformers_version": "5.17.0"}'
    )
    c = SimSkipConfig.from_pretrained(tmp_path)
    assert c.layers == [0, 1] and c.layer_closed_form is None
    assert SimSkipConfig(embedding_dim=8, layers=[0]).layer_closed_form == "pca"  # a new config: the closed form
    with pytest.raises(ValueError, match=r"layer_scale must be a number in \[0.0, 1000.0\], got inf"):
        SimSkipConfig(embedding_dim=8, layers=[0], layer_scale=float("inf"))
