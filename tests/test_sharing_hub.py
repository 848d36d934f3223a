"""push_to_hub through the real huggingface_hub client, with only its transport replaced; the uploaded
files then load in a fresh process where hf_simskip cannot be imported (local folder and Hub cache)."""

import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl, constants

from hf_simskip.cli import main as cli_main

from utils import SENTENCES, WITHOUT_HF_SIMSKIP, results_json, tiny_simskip

MODEL_FILES = {
    "config.json",
    "model.safetensors",
    "configuration_simskip.py",
    "modeling_simskip.py",
    "head.py",
    "augmentations.py",
    "losses.py",
    "pooling.py",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
    # sentence-transformers' view of the same folder: SentenceTransformer(repo, trust_remote_code=True) loads it
    "st_module.py",
    "modules.json",
    "config_sentence_transformers.json",
}
SHA = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Stands in for the Hub's HTTP API: records create_repo / create_branch / create_commit calls."""

    def __init__(self, monkeypatch):
        self.repos, self.branches, self.commits = [], [], []
        hub = self

        def create_repo(api, repo_id, *, private=None, exist_ok=False, **kwargs):
            hub.repos.append({"repo_id": repo_id, "private": private, "exist_ok": exist_ok})
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_branch(api, repo_id, *, branch, exist_ok=False, **kwargs):
            hub.branches.append((repo_id, branch))

        def create_commit(api, repo_id, operations, *, commit_message, **kwargs):
            files = {}
            for op in operations:
                with op.as_file() as fh:  # read now: the temporary folder is gone after the push
                    files[op.path_in_repo] = fh.read()
            hub.commits.append({"repo_id": repo_id, "message": commit_message, "files": files, **kwargs})
            return CommitInfo(
                commit_url=f"https://huggingface.co/{repo_id}/commit/{SHA}",
                commit_message=commit_message,
                commit_description="",
                oid=SHA,
            )

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)

    def write(self, folder: Path, commit: int = -1) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in self.commits[commit]["files"].items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        return folder


@pytest.fixture()
def fake_hub(monkeypatch):
    return FakeHub(monkeypatch)


LOADER = WITHOUT_HF_SIMSKIP + textwrap.dedent("""
    import numpy as np
    from transformers import AutoModel
    folder, repo, ref, sentences = sys.argv[1], sys.argv[2], np.load(sys.argv[3]), sys.argv[4:]
    for source in (folder, repo):  # the uploaded files as a folder, then as a Hub cache entry, offline
        m = AutoModel.from_pretrained(source, trust_remote_code=True)
        assert type(m).__module__.startswith("transformers_modules"), type(m).__module__
        np.testing.assert_allclose(m.encode(sentences), ref, atol=1e-6)
        print("LOADED", source)
""")


def as_hub_cache(files: dict, cache: Path, repo_id: str) -> None:
    """Lay out ``files`` as huggingface_hub's cache: models--org--name/snapshots/<sha>/..., refs/main."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    FakeHub.write(type("C", (), {"commits": [{"files": files}]})(), root / "snapshots" / SHA)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(SHA)


def test_push_to_hub_uploads_a_loadable_model_with_its_card(fake_hub, tiny_backbone, tmp_path):
    model = tiny_simskip(tiny_backbone)
    model.save_pretrained(tmp_path / "final")  # as the training recipe does, then evaluation writes its JSON
    results = results_json()
    (tmp_path / "final" / "eval_results.json").write_text(json.dumps(results))
    (tmp_path / "final" / "training_args.json").write_text(json.dumps({"learning_rate": 3e-4}))

    info = model.push_to_hub("org/simskip-tiny", private=True, revision="exp", commit_message="Add SimSkip")

    assert info.oid == SHA
    assert fake_hub.repos == [{"repo_id": "org/simskip-tiny", "private": True, "exist_ok": True}]
    assert fake_hub.branches == [("org/simskip-tiny", "exp")]
    commit = fake_hub.commits[0]
    assert (commit["message"], commit["revision"], commit["create_pr"]) == ("Add SimSkip", "exp", False)
    assert set(commit["files"]) == MODEL_FILES | {"eval_results.json", "training_args.json"}  # exactly these
    config = json.loads(commit["files"]["config.json"])
    assert config["auto_map"]["AutoModel"] == "modeling_simskip.SimSkipModel"
    assert b"import hf_simskip" not in commit["files"]["modeling_simskip.py"]
    card = ModelCard(commit["files"]["README.md"].decode())
    assert card.data.tags[0] == "simskip" and card.data.pipeline_tag == "feature-extraction"
    assert {(r.dataset_name.split()[-1], r.metric_type): r.metric_value for r in card.data.eval_results}[
        ("CR", "accuracy")
    ] == results["tasks"]["CR"]["acc"]
    assert 'AutoModel.from_pretrained("org/simskip-tiny", trust_remote_code=True)' in card.text

    folder = fake_hub.write(tmp_path / "uploaded")
    as_hub_cache(commit["files"], tmp_path / "cache", "org/simskip-tiny")
    np.save(tmp_path / "ref.npy", model.encode(SENTENCES))
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "cache"), HF_MODULES_CACHE=str(tmp_path / "modules")
    )
    res = subprocess.run(
        [sys.executable, "-c", LOADER, str(folder), "org/simskip-tiny", str(tmp_path / "ref.npy"), *SENTENCES],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert res.stdout.count("LOADED") == 2


def test_push_creates_a_pr_without_a_branch(fake_hub, tiny_backbone):
    tiny_simskip(tiny_backbone).push_to_hub("org/m", create_pr=True, revision="refs/pr/3")
    assert fake_hub.branches == [] and fake_hub.commits[0]["create_pr"] is True


def test_cli_push_renders_the_card_and_uploads_the_folder(fake_hub, tiny_backbone, tmp_path, capsys):
    tiny_simskip(tiny_backbone).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "eval_results.json").write_text(json.dumps(results_json()))
    assert cli_main(["push", str(tmp_path / "m"), "--repo-id", "org/cli", "--private"]) == 0
    files = fake_hub.commits[0]["files"]
    assert set(files) == MODEL_FILES | {"eval_results.json"}
    card = ModelCard(files["README.md"].decode())
    assert card.data.eval_results and 'from_pretrained("org/cli"' in card.text
    assert fake_hub.repos[0]["private"] is True
    assert f"commit/{SHA}" in capsys.readouterr().out


def test_push_errors_are_clear(fake_hub, tmp_path, capsys):
    assert cli_main(["push", str(tmp_path / "nope"), "--repo-id", "org/x"]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["push", str(tmp_path / "empty"), "--repo-id", "org/x", "--no-card"]) == 1
    assert "nothing to upload" in capsys.readouterr().err
    assert fake_hub.commits == []


def test_push_after_the_training_recipe_layout(fake_hub, tiny_backbone, tmp_path, caplog):
    """recipes/train_simcse_skip.py: out/final (model, eval_results.json), out/corpus.json,
    out/training_config.yaml; then model.push_to_hub(hub_model_id, private=...)."""
    model = tiny_simskip(tiny_backbone)
    model.save_pretrained(tmp_path / "out" / "final")
    (tmp_path / "out" / "training_config.yaml").write_text("learning_rate: 0.0003\nnum_train_epochs: 3\n")
    (tmp_path / "out" / "corpus.json").write_text(json.dumps({"sentences": 1234, "source": "senteval"}))
    (tmp_path / "out" / "final" / "eval_results.json").write_text(json.dumps(results_json()))
    metrics = {"kept": "initial", "best_step": 0, "best_dev_score": 86.8, "global_step": 12, "dev_scores": {}}
    (tmp_path / "out" / "metrics.json").write_text(json.dumps(metrics))
    model.push_to_hub("org/run", private=False)
    files = fake_hub.commits[0]["files"]
    assert set(files) == MODEL_FILES | {"eval_results.json", "corpus.json", "training_config.yaml", "metrics.json"}
    card = ModelCard(files["README.md"].decode())
    assert "| epochs | 3 |" in card.text and "sentences 1234" in card.text
    assert "Closed-form, not trained" in card.text  # the training outcome travels with the upload
    assert card.data.eval_results is not None

    (tmp_path / "out" / "final" / "eval_results.json").write_text("{broken")
    model.save_pretrained(tmp_path / "out" / "final")  # a bad record never costs the weights
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()
    assert "card README.md was not written" in caplog.text and "not valid JSON" in caplog.text


def test_a_failed_push_leaves_the_local_card_alone(fake_hub, tiny_backbone, tmp_path, capsys, monkeypatch):
    """`hf-simskip push` renders the card for the upload; the folder's README.md changes only once the
    upload succeeded."""
    tiny_simskip(tiny_backbone).save_pretrained(tmp_path / "m")
    readme = tmp_path / "m" / "README.md"
    before = readme.read_bytes()

    def refuse(api, *args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(HfApi, "create_commit", refuse)
    assert cli_main(["push", str(tmp_path / "m"), "--repo-id", "org/failed"]) == 1
    assert "connection refused" in capsys.readouterr().err
    assert readme.read_bytes() == before  # not rewritten for a repo that never got it
    FakeHub(monkeypatch)  # the transport works again
    assert cli_main(["push", str(tmp_path / "m"), "--repo-id", "org/ok"]) == 0
    assert 'from_pretrained("org/ok"' in readme.read_text()  # after a successful upload it is the pushed card


class RefusingHub(http.server.BaseHTTPRequestHandler):
    """Stands in for the Hub's server when the token is bad: 401 with the Hub's JSON error, for every request."""

    def _refuse(self):
        body = json.dumps({"error": "Invalid username or password."}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _refuse

    def log_message(self, *args):
        pass


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is: nothing listens there


@pytest.mark.parametrize("hub", ["unreachable", "refusing"])
def test_push_without_the_hub_is_one_line(tiny_backbone, tmp_path, hub):
    """issue 20: `push` with no network and not offline printed a 76-line httpx traceback. Now one line that
    says what happened and what to check; the local card is left alone. A real client in a fresh process
    (HF_ENDPOINT is read at import), HF_HUB_OFFLINE unset, against a closed port or a server that says 401."""
    tiny_simskip(tiny_backbone).save_pretrained(tmp_path / "m")
    readme = (tmp_path / "m" / "README.md").read_bytes()
    server = None
    if hub == "refusing":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RefusingHub)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    else:
        endpoint = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=endpoint, HF_TOKEN="hf_not_a_real_token", HF_HOME=str(tmp_path / "hf_home"))
    try:
        res = subprocess.run(
            [sys.executable, "-m", "hf_simskip.cli", "push", str(tmp_path / "m"), "--repo-id", "org/x"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    finally:
        if server is not None:
            server.shutdown()
    err = res.stderr.strip()
    assert res.returncode == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err[-3000:]
    assert err.startswith("hf-simskip push: error:") and "nothing was uploaded" in err
    if hub == "unreachable":
        assert f"could not reach the Hugging Face Hub at {endpoint}" in err and "HF_ENDPOINT" in err
    else:
        assert f"the Hub at {endpoint} refused to push 'org/x' (HTTP 401: Invalid username or password.)" in err
        assert "hf auth login" in err
    assert (tmp_path / "m" / "README.md").read_bytes() == readme


@pytest.mark.skipif(not constants.HF_HUB_OFFLINE, reason="the test session is not offline")
def test_push_while_offline_says_to_unset_it(tiny_backbone, tmp_path, capsys):
    tiny_simskip(tiny_backbone).save_pretrained(tmp_path / "m")
    capsys.readouterr()
    assert cli_main(["push", str(tmp_path / "m"), "--repo-id", "org/x"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "HF_HUB_OFFLINE is set" in err and "unset it" in err
