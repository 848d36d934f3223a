"""Shared fixtures: an offline Hub, a tiny random BERT backbone built in the test session, and the two
SentEval-layout data folders: the tiny synthetic one committed under tests/fixtures/senteval (always
there) and the real one (found as hf_simskip.paths finds it; tests that need it are skipped without it,
or fail when $HF_SIMSKIP_REQUIRE_DATA=1, as in CI)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from hf_simskip.paths import find_data_dir  # noqa: E402

from utils import FIXTURES, make_tiny_backbone  # noqa: E402

REQUIRE_DATA = "HF_SIMSKIP_REQUIRE_DATA"


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
    """Folder with a random 2-layer, 32-wide BERT and a small WordPiece tokenizer."""
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_senteval():
    """The synthetic SentEval-layout folder of the tests (a few rows per task, every file and format)."""
    return FIXTURES / "senteval"


@pytest.fixture(scope="session")
def senteval_data():
    """The real SentEval data folder; without one the test is skipped (or fails under $HF_SIMSKIP_REQUIRE_DATA=1)."""
    found = find_data_dir()
    if found is None:
        reason = "no SentEval data folder (pass none, set $HF_SIMSKIP_DATA or place ../shared/data/senteval)"
        if os.environ.get(REQUIRE_DATA, "") == "1":
            pytest.fail(f"{reason}, and ${REQUIRE_DATA}=1 requires it")
        pytest.skip(reason)
    return found
