"""``hf-simskip``: train, evaluate, refine, render cards, export and push SimSkip models.

    hf-simskip train --config recipes/configs/noise.yaml          # accelerate launch the recipe
    hf-simskip eval --model out/final --mode fast --output out/final/eval_results.json
    hf-simskip refine --model out/head --input x.npy --output refined.npy
    hf-simskip card out/final --repo-id me/simskip-minilm
    hf-simskip push out/final --repo-id me/simskip-minilm --private
    hf-simskip export-st --model out/final --output out/final-st

Each sub-command is a ``*_parser`` function (its options and examples) followed by its handler, which
returns an exit code. Heavy imports happen inside the handlers, so ``--help`` is instant and one
command's missing optional dependency never breaks another.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

DESCRIPTION = (
    "SimSkip (arXiv 2404.08701) from the command line: train a refiner, evaluate it with the SentEval "
    "protocol, refine embedding files, render model cards, export to sentence-transformers and push "
    "to the Hugging Face Hub."
)
EPILOG = "Run 'hf-simskip COMMAND --help' for the options and examples of each command."
RECIPE = Path("recipes") / "train_simcse_skip.py"


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse turns the ValueError into a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _command(subparsers, name: str, handler, help_: str, description: str, examples: list[str]):
    parser = subparsers.add_parser(
        name,
        help=help_,
        description=description,
        epilog="examples:\n" + "".join(f"  {e}\n" for e in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def load_simskip(model: str, device: str = "cpu"):
    """A SimSkipModel from a folder or Hub id, in eval mode; a clear error when it is neither."""
    from transformers.utils import logging as hf_logging

    from .models.simskip import SimSkipModel

    if not logging.getLogger().isEnabledFor(logging.INFO):
        hf_logging.disable_progress_bar()  # keep stderr for errors unless --verbose
    local = os.path.isdir(model)
    if not local and (model.startswith((".", "/", "~")) or model.count("/") != 1):
        raise FileNotFoundError(f"model folder {model!r} does not exist")
    if local and not os.path.isfile(os.path.join(model, "config.json")):
        raise FileNotFoundError(
            f"{model!r} has no config.json: expected a folder saved by SimSkipModel.save_pretrained"
        )
    try:
        return SimSkipModel.from_pretrained(model).to(device).eval()
    except OSError as err:
        where = "folder" if local else "folder, nor a reachable Hub repo"
        raise FileNotFoundError(
            f"could not load a SimSkip model from {model!r} (not a saved model {where}): {err}"
        ) from err
    except Exception as err:  # noqa: BLE001 (safetensors/torch errors of a truncated or corrupt weight file)
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(
            f"could not load the weights of {model!r} (a truncated or corrupt file?): {type(err).__name__}: {first_line}"
        ) from err


def _folder_and_repo_arguments(p, repo_help: str, required: bool) -> None:
    p.add_argument("folder", help="folder saved by SimSkipModel.save_pretrained")
    p.add_argument("--repo-id", required=required, default=None, help=repo_help)


# --- train --------------------------------------------------------------------------------------
def train_parser(sub):
    p = _command(
        sub,
        "train",
        train,
        "train a SimSkip head (accelerate launch recipes/train_simcse_skip.py)",
        "Run the training recipe recipes/train_simcse_skip.py through 'accelerate launch'. Every argument "
        "after 'train' (or after '--') goes to the recipe unchanged. The recipe lives in the repository "
        "checkout, not in the installed wheel: run from a checkout or pass --recipe.",
        [
            "hf-simskip train --config recipes/configs/noise.yaml",
            "hf-simskip train --launcher-args='--num_processes 2' -- --learning_rate 3e-4",
            "hf-simskip train --dry-run --output_dir out   # print the command only",
        ],
    )
    p.add_argument("--recipe", default=None, help="path to train_simcse_skip.py (default: found in the checkout)")
    p.add_argument("--launcher-args", default="", help="extra 'accelerate launch' options, one quoted string")
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    p.add_argument("recipe_args", nargs=argparse.REMAINDER, help="arguments for the recipe")


def find_recipe(explicit: str | None = None) -> Path:
    """The training recipe: --recipe, else recipes/train_simcse_skip.py in the checkout that holds this
    package (editable install), else in the current directory."""
    candidates = [Path(explicit)] if explicit else [Path(__file__).resolve().parents[1] / RECIPE, Path.cwd() / RECIPE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"training recipe not found (looked for {', '.join(str(c) for c in candidates)}); the recipe ships with "
        "the repository checkout, not the installed package: run from a checkout or pass --recipe PATH"
    )


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


# --- eval ---------------------------------------------------------------------------------------
def eval_parser(sub):
    p = _command(
        sub,
        "eval",
        evaluate,
        "SentEval-protocol evaluation of a model",
        "Score a model with hf_simskip.evaluation.evaluate (SentEval tasks, logistic-regression probe, "
        "STS by cosine similarity) and write the results JSON that model cards read.",
        [
            "hf-simskip eval --model out/final --mode fast --output out/final/eval_results.json",
            "hf-simskip eval --model minilm --tasks CR MR --output baseline_eval_results.json",
            "hf-simskip eval --embeddings cache.npz --mode full   # precomputed vectors",
        ],
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--model",
        help="saved hf_simskip folder, sentence-transformers folder/name, or 'minilm' (the packaged all-MiniLM-L6-v2)",
    )
    src.add_argument("--embeddings", help=".npz with arrays 'sentences' and 'embeddings' (precomputed vectors)")
    p.add_argument("--tasks", nargs="+", default=None, help="subset of the SentEval tasks (default: all)")
    p.add_argument("--mode", choices=["fast", "full"], default="full", help="fast: 5 folds; full: 10 (SentEval)")
    p.add_argument(
        "--data-dir",
        default=None,
        help="SentEval data folder (default: $HF_SIMSKIP_DATA, then ../shared/data/senteval)",
    )
    p.add_argument("--output", default=None, help="write the results JSON here")
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--device", default="cpu", help="for the encoder and the probe")
    p.add_argument(
        "--probe",
        choices=["batched", "sklearn"],
        default="batched",
        help="batched: the fast exact solver of SentEval's objective (default); sklearn: SentEval's own "
        "lbfgs fits, to reproduce published SentEval numbers (slow)",
    )
    p.add_argument(
        "--standardize",
        action="store_true",
        help="divide features by their mean norm per task (scale invariant; recorded)",
    )


def evaluate(args) -> int:
    from .evaluation import evaluate as run
    from .evaluation import format_table, load_encoder, lookup_encoder, save_results

    if args.embeddings:
        encode = lookup_encoder(args.embeddings)
    else:
        encode = load_encoder(args.model, args.batch_size, args.device, logging.getLogger().isEnabledFor(logging.INFO))
    protocol = {k: getattr(args, k) for k in ("tasks", "data_dir", "mode", "seed", "standardize", "device", "probe")}
    results = run(encode, **protocol)
    results["protocol"]["model"] = args.model or f"embeddings:{args.embeddings}"
    _out(format_table(results))
    probe = results["protocol"].get("probe", {})
    if not probe.get("converged", True):
        note = (
            " (lbfgs stopping at max_iter is what SentEval's own sklearn probe does)" if args.probe == "sklearn" else ""
        )
        _out(f"WARNING: {probe['unconverged_problems']} probe fits did not converge{note} (see protocol.probe.fits)")
    if args.output:
        _out(f"wrote {save_results(results, args.output)}")
    return 0


# --- refine -------------------------------------------------------------------------------------
def refine_parser(sub):
    p = _command(
        sub,
        "refine",
        refine,
        "refine raw embeddings (.npy/.npz/.parquet) with a saved SimSkip model",
        "Load a saved SimSkip model (a head-only one for embeddings of any modality, or one with a backbone) "
        "and refine (n, d) embeddings from a file. The output is written atomically (temporary file, then "
        "rename): a failed run never leaves a truncated or half-written output.",
        [
            "hf-simskip refine --model out/head --input image_emb.npy --output refined.npy",
            "hf-simskip refine --model out/head --input emb.npz --key train --output refined.npz",
            "hf-simskip refine --model out/head --input table.parquet --column embedding --output out.parquet",
        ],
    )
    p.add_argument("--model", required=True, help="folder (or Hub id) saved by SimSkipModel.save_pretrained")
    p.add_argument(
        "--input",
        required=True,
        help=".npy, .npz or .parquet file of raw embeddings (n, d), or (n, 1 + L, d) "
        "stacks (the embedding, then the layers) for a layer-aware head",
    )
    p.add_argument("--output", required=True, help=".npy, .npz or .parquet file for the refined embeddings")
    p.add_argument("--key", default=None, help="array name inside an .npz (needed when it holds several)")
    p.add_argument("--column", default=None, help="parquet column of embedding vectors (lists/arrays)")
    p.add_argument("--output-key", default="refined", help="array/column name in an .npz/.parquet output")
    p.add_argument("--batch-size", type=positive_int, default=4096, help="rows refined at once (>= 1)")
    p.add_argument("--overwrite", action="store_true", help="allow --output to be the --input file (replaced)")
    p.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="L2-normalise the output (default: the model's normalize_embeddings)",
    )


def refine(args) -> int:
    from .files import read_embeddings, write_embeddings

    if Path(args.output).resolve() == Path(args.input).resolve() and not args.overwrite:
        raise ValueError(
            f"--output {args.output!r} is the input file: refining would replace the raw embeddings; "
            "write elsewhere, or pass --overwrite to replace them"
        )
    x, table = read_embeddings(args.input, key=args.key, column=args.column)  # before loading the model: fail fast
    model = load_simskip(args.model)
    if x.shape[-1] != model.config.embedding_dim:
        raise ValueError(
            f"{args.input}: embeddings are {x.shape[-1]}-d but the model {args.model!r} refines "
            f"{model.config.embedding_dim}-d embeddings"
        )
    try:
        refined = model.refine(x, batch_size=args.batch_size, normalize_embeddings=args.normalize)
    except ValueError as err:
        raise ValueError(f"{args.input}: {err}") from err
    path = write_embeddings(args.output, refined, args.output_key, table)
    _out(f"refined {refined.shape[0]} x {' x '.join(map(str, x.shape[1:]))} -> {refined.shape[1]}: wrote {path}")
    return 0


# --- card ---------------------------------------------------------------------------------------
def card_parser(sub):
    p = _command(
        sub,
        "card",
        card,
        "render README.md (the model card) for a saved model folder",
        "Render model_card_template.md into FOLDER/README.md from the model's config and the JSON records "
        "found in the folder (training_args.json, corpus.json, eval_results.json, "
        "baseline_eval_results.json) or given as options.",
        [
            "hf-simskip card out/final --repo-id me/simskip-minilm",
            "hf-simskip card out/final --results eval.json --baseline-results base.json",
        ],
    )
    _folder_and_repo_arguments(p, repo_help="Hub id shown in the usage snippet", required=False)
    for name in ("results", "baseline-results", "training-args", "corpus"):
        p.add_argument(f"--{name}", default=None, help="JSON file (default: the one in FOLDER, if any)")


def card(args) -> int:
    from .sharing.model_card import RECORD_FILES, write_card_for_folder

    records = {k: getattr(args, k) for k in RECORD_FILES if getattr(args, k) is not None}
    _out(f"wrote {write_card_for_folder(args.folder, repo_id=args.repo_id, **records)}")
    return 0


# --- push ---------------------------------------------------------------------------------------
def push_parser(sub):
    p = _command(
        sub,
        "push",
        push,
        "upload a saved model folder to the Hub, with its rendered card",
        "Render FOLDER/README.md, then upload every file of FOLDER to REPO_ID in one commit (weights, "
        "config with auto_map, model code, tokenizer, JSON records, card). Authenticate with 'hf auth "
        "login' or HF_TOKEN.",
        [
            "hf-simskip push out/final --repo-id me/simskip-minilm",
            "hf-simskip push out/final --repo-id me/simskip-minilm --revision v2 --create-pr",
        ],
    )
    _folder_and_repo_arguments(p, repo_help="namespace/name on the Hub", required=True)
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", default=None, help="branch to push to")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--commit-message", default=None)
    p.add_argument("--no-card", action="store_true", help="upload README.md as it is (do not render it)")


def push(args) -> int:
    from .sharing.hub import push_folder_to_hub

    info = push_folder_to_hub(
        args.folder,
        args.repo_id,
        render_card=not args.no_card,
        private=args.private,
        revision=args.revision,
        create_pr=args.create_pr,
        commit_message=args.commit_message,
    )
    _out(
        f"pushed {args.folder} to {args.repo_id}: {getattr(info, 'pr_url', None) or getattr(info, 'commit_url', info)}"
    )
    return 0


# --- export-st ----------------------------------------------------------------------------------
def export_st_parser(sub):
    p = _command(
        sub,
        "export-st",
        export_st,
        "export a model as a sentence-transformers folder",
        "Write a folder that SentenceTransformer(folder, trust_remote_code=True) loads as Transformer + "
        "Pooling (+ Normalize) + SimSkipModule (+ Normalize), encoding like SimSkipModel.encode.",
        ["hf-simskip export-st --model out/final --output out/final-st"],
    )
    p.add_argument("--model", required=True, help="saved SimSkip folder with a backbone")
    p.add_argument("--output", required=True, help="folder to write")


def export_st(args) -> int:
    from .evaluation.encoders import is_simskip_folder
    from .sharing.st_export import save_sentence_transformers

    if not is_simskip_folder(args.model):
        raise FileNotFoundError(
            f"{args.model!r} is not a folder saved by SimSkipModel (config.json, model_type simskip)"
        )
    _out(f"wrote {save_sentence_transformers(load_simskip(args.model), args.output)}")
    return 0


COMMANDS = (train_parser, eval_parser, refine_parser, card_parser, push_parser, export_st_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-simskip", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, OSError, ImportError) as err:
        sys.stderr.write(f"hf-simskip {args.command}: error: {err}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
