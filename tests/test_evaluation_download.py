"""The download command against local http.servers: a mirror of SentEval's data layout (--base-url)
and the official locations (archives and single files) relocated to localhost. No real network."""

import dataclasses
import functools
import hashlib
import http.server
import io
import shutil
import socket
import tarfile
import threading
import zipfile
from urllib.parse import urlsplit

import pytest

from hf_simskip.evaluation import download as dl
from hf_simskip.evaluation import load_task
from hf_simskip.evaluation.tasks import TASK_FILES, TASKS


def _serve(root):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connection refused


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def server(tmp_path, senteval_data):
    root = tmp_path / "mirror"
    for rel in TASK_FILES["CR"] + TASK_FILES["TREC"]:
        dst = root / "downstream" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(senteval_data / "downstream" / rel, dst)
    httpd, url = _serve(root)
    yield url, root
    httpd.shutdown()


def test_download_from_mirror(server, tmp_path):
    url, root = server
    out = tmp_path / "data"
    checksums = {rel: _sha((root / "downstream" / rel).read_bytes()) for rel in TASK_FILES["CR"] + TASK_FILES["TREC"]}
    assert dl.main(["--data-dir", str(out), "--base-url", url, "--tasks", "CR", "TREC"]) == 0  # built-in checksums
    for rel, sha in checksums.items():
        assert _sha((out / "downstream" / rel).read_bytes()) == sha
    assert not list(out.rglob("*.tmp*"))


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    url, root = server
    out = tmp_path / "data"
    bad = {rel: "0" * 64 for rel in TASK_FILES["CR"]}
    with pytest.raises(ValueError, match="checksum mismatch"):
        dl.download(out, ["CR"], base_url=url, checksums=bad)
    assert not (out / "downstream" / "CR" / "custrev.pos").exists()
    assert not list(out.rglob("*.tmp*"))


@pytest.fixture()
def official(tmp_path, tiny_senteval):
    """The official table relocated to a local server that serves the fixture's files at the official
    paths, inside archives where the official source is an archive; lines and sha256 of the fixture."""
    root = tmp_path / "official"
    fixture = {
        key: (tiny_senteval / ("downstream/" + key if not key.startswith("unlabeled/") else "unlabeled/tiny.txt"))
        for key in dl.OFFICIAL
    }
    archives: dict[str, dict[str, bytes]] = {}
    for key, source in dl.OFFICIAL.items():
        data = fixture[key].read_bytes()
        path = root / urlsplit(source.urls[-1]).path.lstrip("/")
        if source.member:
            archives.setdefault(str(path), {})[source.member] = data
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    for path, members in archives.items():
        buf = io.BytesIO()
        if path.endswith(".zip"):
            with zipfile.ZipFile(buf, "w") as z:
                for name, data in members.items():
                    z.writestr(name, data)
        else:
            with tarfile.open(fileobj=buf, mode="w:gz") as t:
                for name, data in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(buf.getvalue())
    httpd, url = _serve(root)
    dead = _closed_port_url()

    def relocate(u: str) -> str:  # SentEval's (dead) TREC host stays dead: the current one must be tried next
        return (dead if "illinois" in u else url) + urlsplit(u).path

    table = {}
    for key, source in dl.OFFICIAL.items():
        data = fixture[key].read_bytes()
        table[key] = dataclasses.replace(
            source,
            urls=tuple(relocate(u) for u in source.urls),
            lines=dl.count_lines(data),
            sha256=_sha(data) if source.sha256 else None,
        )
    yield table, fixture
    httpd.shutdown()


def test_official_locations_every_file_and_unlabeled(official, tmp_path, capsys):
    """issue 21: without --base-url it stopped with a traceback at CR and never fetched unlabeled/."""
    table, fixture = official
    out = tmp_path / "data"
    paths = dl.download(out, sources=table)
    assert len(paths) == sum(len(v) for v in TASK_FILES.values()) + 1
    for key, src in fixture.items():
        rel = key if key.startswith("unlabeled/") else f"downstream/{key}"
        assert (out / rel).read_bytes() == src.read_bytes(), key
    for name in TASKS:  # what was written is a valid data folder
        load_task(name, out)
    assert not list(out.rglob("*.tmp*"))
    (out / "downstream" / "CR" / "custrev.neg").write_bytes(b"truncated\n")  # damaged: fetched again
    dl.download(out, ["CR"], sources=table)
    assert (out / "downstream" / "CR" / "custrev.neg").read_bytes() == fixture["CR/custrev.neg"].read_bytes()


def test_official_table_covers_everything():
    keys = {rel.split("/", 1)[1] if rel.startswith("downstream/") else rel for rel in dl.manifest()}
    assert keys == set(dl.OFFICIAL) and "unlabeled/wiki1m_for_simcse.txt" in keys
    assert dl.OFFICIAL["CR/custrev.pos"].urls[0].startswith("https://dl.fbaipublicfiles.com/senteval/")
    assert dl.OFFICIAL["MRPC/msr_paraphrase_train.txt"].urls[0].startswith("https://dl.fbaipublicfiles.com/senteval/")
    assert all(s.lines for s in dl.OFFICIAL.values())  # every official file has a known size
    assert dl.manifest(["TREC", "unlabeled"]) == [
        "downstream/TREC/train_5500.label",
        "downstream/TREC/TREC_10.label",
        "unlabeled/wiki1m_for_simcse.txt",
    ]
    with pytest.raises(ValueError, match="unknown or no task name.*'XX'"):
        dl.manifest(["XX"])


def test_line_count_mismatch_leaves_nothing(official, tmp_path):
    table, _ = official
    table["CR/custrev.neg"] = dataclasses.replace(table["CR/custrev.neg"], lines=1369)
    with pytest.raises(ValueError, match=r"CR/custrev.neg from .*datasmall_NB_ACL12.zip: expected 1369 lines, got 16"):
        dl.download(tmp_path / "data", ["CR"], sources=table)
    assert not (tmp_path / "data" / "downstream" / "CR" / "custrev.neg").exists()
    dl.download(tmp_path / "data", ["CR"], sources=table, verify=False)  # --no-verify keeps it
    assert (tmp_path / "data" / "downstream" / "CR" / "custrev.neg").is_file()


@pytest.mark.parametrize("failure", ["refused", "404"])
def test_network_failure_is_one_line(official, tmp_path, capsys, monkeypatch, failure):
    table, _ = official
    src = table["SST/binary/sentiment-dev"]
    url = _closed_port_url() + "/x" if failure == "refused" else src.urls[0] + "-missing"
    table["SST/binary/sentiment-dev"] = dataclasses.replace(src, urls=(url,))
    with pytest.raises(ConnectionError, match=rf"could not download {url} \(.*\); check the network") as err:
        dl.download(tmp_path / "data", ["SST2"], sources=table)
    assert "\n" not in str(err.value) and ("404" in str(err.value)) == (failure == "404")
    assert not (tmp_path / "data" / "downstream" / "SST" / "binary" / "sentiment-dev").exists()
    monkeypatch.setattr(dl, "OFFICIAL", table)  # the command line: one line on stderr, exit status 1
    assert dl.main(["--data-dir", str(tmp_path / "data"), "--tasks", "SST2"]) == 1
    err = capsys.readouterr().err  # progress lines ("fetching ..."), then the error: one line, no traceback
    assert err.splitlines()[-1].startswith("download: error: could not download") and "Traceback" not in err


def test_next_address_when_one_serves_something_else(official, tmp_path):
    """A moved host that answers with another page (a wrong checksum) is skipped for the next address."""
    table, fixture = official
    src = table["TREC/TREC_10.label"]
    wrong = table["SST/binary/sentiment-dev"].urls[0]  # serves a file, but not this one
    table["TREC/TREC_10.label"] = dataclasses.replace(src, urls=(wrong, src.urls[-1]))
    dl.download(tmp_path / "data", ["TREC"], sources=table)
    assert (tmp_path / "data/downstream/TREC/TREC_10.label").read_bytes() == fixture["TREC/TREC_10.label"].read_bytes()
    table["TREC/TREC_10.label"] = dataclasses.replace(src, urls=(wrong,))
    with pytest.raises(ValueError, match="checksum mismatch for .*sentiment-dev"):
        dl.download(tmp_path / "other", ["TREC"], sources=table)
