"""Uploading SimSkip models to the Hugging Face Hub, with their rendered model card.

``SimSkipModel.push_to_hub`` comes here when hf_simskip is installed (a small hook in
models/simskip/modeling_simskip.py). transformers' own ``PushToHubMixin.push_to_hub`` would overwrite README.md with
the Hub's current card or a generic one; this upload keeps the card rendered from
``model_card_template.md`` and the JSON records (training_args.json, corpus.json,
eval_results.json, baseline_eval_results.json), which are uploaded beside the weights.

One commit through ``HfApi.create_commit`` (as transformers does), with one ``CommitOperationAdd``
per file: weights, config.json (with auto_map), the copied model code, the tokenizer, the records
and README.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from ..files import write_text
from .model_card import ALTERNATIVE_FILES, OUTCOME_FILES, RECORD_FILES, card_for_folder, write_model_card

logger = logging.getLogger(__name__)
CARD_SOURCES_ATTR = "_simskip_card_sources"  # folders a model was saved to / loaded from, newest first


def _api() -> HfApi:
    from ..version import __version__

    return HfApi(library_name="hf_simskip", library_version=__version__)


def card_sources(model) -> list[str]:
    """Local folders whose JSON records describe ``model``: where it was saved before and where it was
    loaded from (``config._name_or_path``)."""
    sources = list(getattr(model, CARD_SOURCES_ATTR, []))
    loaded_from = getattr(model.config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    if loaded_from and os.path.isdir(loaded_from) and loaded_from not in sources:
        sources.append(loaded_from)
    return sources


def on_save_pretrained(model, folder) -> None:
    """Called by ``SimSkipModel.save_pretrained``: render README.md and remember the folder, so a later
    ``push_to_hub`` finds the records that training writes there afterwards."""
    folder = os.path.abspath(folder)
    sources = [s for s in card_sources(model) if os.path.abspath(s) != folder]
    try:
        write_model_card(model, folder, sources=sources)
    except (ValueError, TypeError, OSError, ImportError) as err:  # the weights are saved: never lose them to a card
        logger.warning("model saved to %s, but its card README.md was not written: %s", folder, err)
    remember_source(model, folder)


def remember_source(model, folder) -> None:
    """Make ``folder`` (where ``model`` was saved) the first place a later ``push_to_hub`` looks for records."""
    folder = os.path.abspath(folder)
    setattr(model, CARD_SOURCES_ATTR, [folder] + [s for s in getattr(model, CARD_SOURCES_ATTR, []) if s != folder])


def collect_paths(sources, filename: str) -> Path | None:
    """The first ``sources`` folder holding ``filename``; run-level records also one level up."""
    run_level = filename not in (RECORD_FILES["results"], RECORD_FILES["baseline_results"])
    search = [Path(s) for s in sources] + ([Path(s).resolve().parent for s in sources] if run_level else [])
    return next((f / filename for f in search if (f / filename).is_file()), None)


def folder_operations(folder, replace: dict[str, bytes] | None = None) -> list[CommitOperationAdd]:
    """One CommitOperationAdd per file under ``folder`` (POSIX paths in the repo), sorted; ``replace``
    gives the content of some paths instead of the file on disk (a card rendered for the upload)."""
    folder, replace = Path(folder), dict(replace or {})
    ops = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".git/") or rel.startswith(".cache/") or rel.endswith(".tmp"):
            continue
        ops.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=replace.pop(rel, str(path))))
    ops += [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=data) for rel, data in sorted(replace.items())]
    return ops


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's "no answer" errors (refused, DNS, timeout, proxy): httpx2 or httpx, whichever
    huggingface_hub imported (a module not imported is not looked for)."""
    found = [getattr(sys.modules.get(name), "TransportError", None) for name in ("httpx2", "httpx")]
    return tuple(e for e in found if isinstance(e, type))


@contextlib.contextmanager
def hub_errors(endpoint: str, repo_id: str):
    """One-line errors for what goes wrong between here and the Hub (the HTTP client's own are tracebacks of
    70 lines): ConnectionError when the Hub cannot be reached or offline mode is on; the Hub's own refusals
    keep their type (HfHubHTTPError and its subclasses, OSErrors) with a one-line message that says what to do."""
    try:
        yield
    except OfflineModeIsEnabled as err:
        raise ConnectionError(
            f"cannot push {repo_id!r}: HF_HUB_OFFLINE is set (offline mode); unset it to upload (nothing was uploaded)"
        ) from err
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        detail = " ".join((getattr(err, "server_message", None) or str(err).split("\n")[0]).split())[:300]
        todo = (
            ": log in with 'hf auth login' or set HF_TOKEN to a token with write access to that namespace"
            if status in (401, 403)
            else ""
        )
        err.args = (
            f"the Hub at {endpoint} refused to push {repo_id!r} (HTTP {status}: {detail}){todo}; nothing was uploaded",
        )
        raise
    except _transport_errors() as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ConnectionError(
            f"could not reach the Hugging Face Hub at {endpoint} ({reason}): check the network connection, a proxy "
            "(HTTPS_PROXY) and HF_ENDPOINT; nothing was uploaded"
        ) from err


COMMIT_OPTIONS = ("private", "token", "revision", "create_pr", "commit_message", "commit_description")


def _commit_folder(folder, repo_id, options: dict, replace: dict[str, bytes] | None = None):
    """Create the repo (and branch) if needed, then upload every file of ``folder`` in one commit.
    ``options``: any of COMMIT_OPTIONS."""
    unknown = set(options) - set(COMMIT_OPTIONS)
    if unknown:
        raise TypeError(f"unknown push options {sorted(unknown)}; expected some of {list(COMMIT_OPTIONS)}")
    opts = {name: options.get(name) for name in COMMIT_OPTIONS}
    ops = folder_operations(folder, replace)
    if not ops:
        raise ValueError(f"nothing to upload: {str(folder)!r} holds no files")
    api = _api()
    with hub_errors(api.endpoint, repo_id):
        repo_id = api.create_repo(repo_id, private=opts["private"], token=opts["token"], exist_ok=True).repo_id
        revision = opts["revision"]
        if revision is not None and not revision.startswith("refs/pr"):
            api.create_branch(repo_id=repo_id, branch=revision, token=opts["token"], exist_ok=True)
        logger.info("uploading %d files to %s: %s", len(ops), repo_id, ", ".join(op.path_in_repo for op in ops))
        message = opts.pop("commit_message") or "Upload SimSkip model"
        del opts["private"]
        return api.create_commit(
            repo_id=repo_id, operations=ops, commit_message=message, **{**opts, "create_pr": bool(opts["create_pr"])}
        )


def _add_tags(readme: Path, tags) -> None:
    if not tags:
        return
    card = ModelCard.load(readme)
    card.data.tags = list(dict.fromkeys(list(card.data.tags or []) + list(tags)))
    card.save(readme)


def push_model_to_hub(model, repo_id: str, *, max_shard_size="50GB", tags=None, **kwargs):
    """Save ``model`` to a temporary folder, add the JSON records and the rendered card, upload in one
    commit. ``kwargs``: the commit options (private, token, revision, create_pr, commit_message,
    commit_description) and the records (training_args / corpus / results / baseline_results as dicts or
    paths; else read from the folders the model was saved to or loaded from). Returns the CommitInfo."""
    options = {k: kwargs.pop(k) for k in COMMIT_OPTIONS if k in kwargs}
    records = kwargs
    if not isinstance(repo_id, str) or not repo_id:
        raise ValueError(f"repo_id must be a non-empty 'namespace/name' string, got {repo_id!r}")
    sources = card_sources(model)
    files = {**RECORD_FILES, **OUTCOME_FILES}  # the training outcome (metrics.json) too: the card says what was kept
    names = [n for key, name in files.items() for n in (name, *ALTERNATIVE_FILES.get(key, ()))]
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, max_shard_size=max_shard_size, model_card=False)
        for filename in names:  # the records travel with the model, found as the card would find them
            found = collect_paths(sources, filename)
            if found is not None:
                shutil.copyfile(found, Path(tmp) / filename)
        readme = write_model_card(model, tmp, repo_id=repo_id, search_parents=False, **records)
        _add_tags(readme, list(getattr(model, "model_tags", None) or []) + list(tags or []))
        return _commit_folder(tmp, repo_id, options)


def push_folder_to_hub(folder, repo_id: str, *, render_card: bool = True, **kwargs):
    """Upload a saved model folder as it is, with its card rendered for ``repo_id`` (``hf-simskip push``).
    The local README.md is rewritten only after the upload succeeded: a failed push changes nothing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(folder)!r} does not exist")
    card = str(card_for_folder(folder, repo_id=repo_id)) if render_card else None
    info = _commit_folder(folder, repo_id, kwargs, {"README.md": card.encode("utf-8")} if card else None)
    if card is not None:
        write_text(folder / "README.md", card)
    return info


__all__ = ["push_model_to_hub", "push_folder_to_hub", "on_save_pretrained", "folder_operations"]
