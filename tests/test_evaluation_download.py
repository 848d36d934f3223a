"""The download command against a local http.server mirroring SentEval's data layout."""

import functools
import hashlib
import http.server
import shutil
import threading

import pytest

from hf_simskip.evaluation import download as dl
from hf_simskip.evaluation.tasks import TASK_FILES


@pytest.fixture()
def server(tmp_path, senteval_data):
    root = tmp_path / "mirror"
    for rel in TASK_FILES["CR"] + TASK_FILES["TREC"]:
        dst = root / "downstream" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(senteval_data / "downstream" / rel, dst)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


def test_download_from_mirror(server, tmp_path):
    url, root = server
    out = tmp_path / "data"
    checksums = {
        rel: hashlib.sha256((root / "downstream" / rel).read_bytes()).hexdigest()
        for rel in TASK_FILES["CR"] + TASK_FILES["TREC"]
    }
    dl.main(["--data-dir", str(out), "--base-url", url, "--tasks", "CR", "TREC"])  # built-in checksums
    for rel, sha in checksums.items():
        assert hashlib.sha256((out / "downstream" / rel).read_bytes()).hexdigest() == sha
    assert not list(out.rglob("*.part*"))


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    url, root = server
    out = tmp_path / "data"
    bad = {rel: "0" * 64 for rel in TASK_FILES["CR"]}
    with pytest.raises(ValueError, match="checksum mismatch"):
        dl.download(out, ["CR"], base_url=url, checksums=bad)
    assert not (out / "downstream" / "CR" / "custrev.pos").exists()
    assert not list(out.rglob("*.part*"))


def test_no_official_single_file_needs_base_url(tmp_path):
    with pytest.raises(ValueError, match="--base-url"):
        dl.download(tmp_path, ["CR"])
    assert dl.file_url("MRPC/msr_paraphrase_train.txt", None).startswith("https://dl.fbaipublicfiles.com/senteval/")
