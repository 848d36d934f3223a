"""``hf-simskip``: train, evaluate, refine, render cards, export and push SimSkip models.

    hf-simskip train --config recipes/configs/minilm.yaml          # accelerate launch the recipe
    hf-simskip eval --model out/final --mode fast --output out/final/eval_results.json
    hf-simskip refine --model out/head --input x.npy --output refined.npy
    hf-simskip card out/final --repo-id me/simskip-minilm
    hf-simskip push out/final --repo-id me/simskip-minilm --private
    hf-simskip export-st --model out/final --output out/final-st

Each subcommand has its own ``--help``. Heavy imports happen inside the commands, so ``--help``
is instant and one command's missing optional dependency never breaks another.
"""
from __future__ import annotations

import argparse
import logging
import sys

from . import cli_commands as commands

DESCRIPTION = ("SimSkip (arXiv 2404.08701) from the command line: train a refiner, evaluate it with the SentEval "
               "protocol, refine embedding files, render model cards, export to sentence-transformers and push "
               "to the Hugging Face Hub.")
EPILOG = "Run 'hf-simskip COMMAND --help' for the options and examples of each command."


def _sub(subparsers, name: str, handler, help_: str, description: str, examples: str):
    parser = subparsers.add_parser(name, help=help_, description=description,
                                   epilog="examples:\n" + examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(handler=handler)
    return parser


def _add_train(sub):
    p = _sub(sub, "train", commands.train, "train a SimSkip head (accelerate launch recipes/train_simcse_skip.py)",
             "Run the training recipe recipes/train_simcse_skip.py through 'accelerate launch'. Every argument "
             "after 'train' (or after '--') goes to the recipe unchanged. The recipe lives in the repository "
             "checkout, not in the installed wheel: run from a checkout or pass --recipe.",
             "  hf-simskip train --config recipes/configs/minilm.yaml\n"
             "  hf-simskip train --launcher-args='--num_processes 2' -- --learning_rate 3e-4\n"
             "  hf-simskip train --dry-run --output_dir out   # print the command only\n")
    p.add_argument("--recipe", default=None, help="path to train_simcse_skip.py (default: found in the checkout)")
    p.add_argument("--launcher-args", default="", help="extra 'accelerate launch' options, one quoted string")
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    p.add_argument("recipe_args", nargs=argparse.REMAINDER, help="arguments for the recipe")


def _add_eval(sub):
    p = _sub(sub, "eval", commands.evaluate, "SentEval-protocol evaluation of a model",
             "Score a model with hf_simskip.evaluation.evaluate (SentEval tasks, logistic-regression probe, "
             "STS by cosine similarity) and write the results JSON that model cards read.",
             "  hf-simskip eval --model out/final --mode fast --output out/final/eval_results.json\n"
             "  hf-simskip eval --model minilm --tasks CR MR --output baseline_eval_results.json\n")
    p.add_argument("--model", required=True,
                   help="saved hf_simskip folder, sentence-transformers folder/name, or 'minilm' (packaged backbone)")
    p.add_argument("--tasks", nargs="+", default=None, help="subset of the SentEval tasks (default: all)")
    p.add_argument("--mode", choices=["fast", "full"], default="full", help="fast: 5 folds; full: 10 (SentEval)")
    p.add_argument("--data-dir", default=None, help="SentEval data folder (default: resolved by hf_simskip.paths)")
    p.add_argument("--output", default=None, help="write the results JSON here")
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")


def _add_refine(sub):
    p = _sub(sub, "refine", commands.refine, "refine raw embeddings (.npy/.npz/.parquet) with a saved SimSkip model",
             "Load a saved SimSkip model (a head-only one for embeddings of any modality, or one with a backbone) "
             "and refine (n, d) embeddings from a file. The output is written atomically (temporary file, then "
             "rename): a failed run never leaves a truncated or half-written output.",
             "  hf-simskip refine --model out/head --input image_emb.npy --output refined.npy\n"
             "  hf-simskip refine --model out/head --input emb.npz --key train --output refined.npz\n"
             "  hf-simskip refine --model out/head --input table.parquet --column embedding --output out.parquet\n")
    p.add_argument("--model", required=True, help="folder (or Hub id) saved by SimSkipModel.save_pretrained")
    p.add_argument("--input", required=True, help=".npy, .npz or .parquet file of raw embeddings (n, d)")
    p.add_argument("--output", required=True, help=".npy, .npz or .parquet file for the refined embeddings")
    p.add_argument("--key", default=None, help="array name inside an .npz (needed when it holds several)")
    p.add_argument("--column", default=None, help="parquet column of embedding vectors (lists/arrays)")
    p.add_argument("--output-key", default="refined", help="array/column name in an .npz/.parquet output")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="L2-normalise the output (default: the model's normalize_embeddings)")


def _add_card(sub):
    p = _sub(sub, "card", commands.card, "render README.md (the model card) for a saved model folder",
             "Render model_card_template.md into FOLDER/README.md from the model's config and the JSON records "
             "found in the folder (training_args.json, corpus.json, eval_results.json, "
             "baseline_eval_results.json) or given as options.",
             "  hf-simskip card out/final --repo-id me/simskip-minilm\n"
             "  hf-simskip card out/final --results eval.json --baseline-results base.json\n")
    p.add_argument("folder", help="folder saved by SimSkipModel.save_pretrained")
    p.add_argument("--repo-id", default=None, help="Hub id shown in the usage snippet")
    for name in ("results", "baseline-results", "training-args", "corpus"):
        p.add_argument(f"--{name}", default=None, help="JSON file (default: the one in FOLDER, if any)")


def _add_push(sub):
    p = _sub(sub, "push", commands.push, "upload a saved model folder to the Hub, with its rendered card",
             "Render FOLDER/README.md, then upload every file of FOLDER to REPO_ID in one commit (weights, "
             "config with auto_map, model code, tokenizer, JSON records, card). Authenticate with 'hf auth "
             "login' or HF_TOKEN.",
             "  hf-simskip push out/final --repo-id me/simskip-minilm\n"
             "  hf-simskip push out/final --repo-id me/simskip-minilm --revision v2 --create-pr\n")
    p.add_argument("folder", help="folder saved by SimSkipModel.save_pretrained")
    p.add_argument("--repo-id", required=True, help="namespace/name on the Hub")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", default=None, help="branch to push to")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--commit-message", default=None)
    p.add_argument("--no-card", action="store_true", help="upload README.md as it is (do not render it)")


def _add_export(sub):
    p = _sub(sub, "export-st", commands.export_st, "export a model as a sentence-transformers folder",
             "Write a folder that SentenceTransformer(folder, trust_remote_code=True) loads as Transformer + "
             "Pooling (+ Normalize) + SimSkipModule (+ Normalize), encoding like SimSkipModel.encode.",
             "  hf-simskip export-st --model out/final --output out/final-st\n")
    p.add_argument("--model", required=True, help="saved SimSkip folder with a backbone")
    p.add_argument("--output", required=True, help="folder to write")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-simskip", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_train, _add_eval, _add_refine, _add_card, _add_push, _add_export):
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, OSError, ImportError) as err:
        sys.stderr.write(f"hf-simskip {args.command}: error: {err}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
