"""SimSkipConfig (models/simskip/configuration_simskip.py): defaults, validation, the field list."""

import pytest

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
