"""Shared fixtures: an offline Hub, and a tiny random BERT backbone built in the test session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from utils import make_tiny_backbone  # noqa: E402


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
    """Folder with a random 2-layer, 32-wide BERT and a small WordPiece tokenizer."""
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"))
