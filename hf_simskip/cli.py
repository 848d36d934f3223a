"""``hf-simskip``: train, evaluate, refine, render cards, export and push SimSkip models.

    hf-simskip train --config recipes/configs/noise.yaml --output_dir out   # accelerate launch the recipe
    hf-simskip eval --model out/final --mode fast --output out/final/eval_results.json
    hf-simskip refine --model out/head --input x.npy --output refined.npy
    hf-simskip refine --model out/final --text-file sentences.txt --output refined.npy
    hf-simskip embed --model out/final --input sentences.txt --output stacks.npy   # the head's inputs
    hf-simskip card out/final --repo-id me/simskip-minilm
    hf-simskip push out/final --repo-id me/simskip-minilm --private
    hf-simskip export-st --model out/final --output out/final-st
    hf-simskip cache list
    hf-simskip --version

Each sub-command is a ``*_parser`` function (its options and examples) followed by its handler, which
returns an exit code. Heavy imports happen inside the handlers, so ``--help`` is instant and one
command's missing optional dependency never breaks another.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from .loading import load_simskip
from .version import __version__

DESCRIPTION = (
    "SimSkip (arXiv 2404.08701) from the command line: train a refiner, evaluate it with the SentEval "
    "protocol, refine embedding files or sentences, write what a head reads from text, render model cards, "
    "export to sentence-transformers, push to the Hugging Face Hub and manage the embedding caches."
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


def _folder_and_repo_arguments(p, repo_help: str, required: bool) -> None:
    p.add_argument("folder", help="folder saved by SimSkipModel.save_pretrained")
    p.add_argument("--repo-id", required=required, default=None, help=repo_help)


# --- train --------------------------------------------------------------------------------------
TRAIN_HELP = (
    "Run the training recipe recipes/train_simcse_skip.py through 'accelerate launch'. Every argument after "
    "'train' that is not one of the options below goes to the recipe unchanged, in its order; everything "
    "after '--' goes to the recipe even when it looks like one of these options (e.g. '-- --help' for the "
    "recipe's own options). The recipe lives in the repository checkout, not in the installed wheel: run "
    "from a checkout or pass --recipe."
)


def train_parser(sub):
    p = _command(
        sub,
        "train",
        train,
        "train a SimSkip head (accelerate launch recipes/train_simcse_skip.py)",
        TRAIN_HELP,
        [
            "hf-simskip train --config recipes/configs/noise.yaml",
            "hf-simskip train --config recipes/configs/noise.yaml --learning_rate 3e-4 --output_dir out",
            "hf-simskip train --launcher-args='--num_processes 2' --learning_rate 3e-4",
            "hf-simskip train --dry-run --output_dir out   # print the command only",
            "hf-simskip train -- --help                    # the recipe's own options",
        ],
    )
    # no abbreviations: a recipe option such as --rec... must never be taken for --recipe
    p.allow_abbrev = False
    p.add_argument("--recipe", default=None, help="path to train_simcse_skip.py (default: found in the checkout)")
    p.add_argument("--launcher-args", default="", help="extra 'accelerate launch' options, one quoted string")
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    p.set_defaults(recipe_args=[])


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
    """``accelerate launch`` the recipe, in this process; the recipe's exit code. A failing recipe has said what went
    wrong on stderr (one line): accelerate's own report of the failed launch (a CalledProcessError or
    ChildFailedError traceback) is not printed after it."""
    recipe = find_recipe(args.recipe)
    launcher = shlex.split(args.launcher_args)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher, str(recipe), *args.recipe_args]
    if args.dry_run:
        _out(shlex.join(cmd))
        return 0
    from accelerate.commands.launch import launch_command, launch_command_parser

    launch_args = launch_command_parser().parse_args(cmd[3:])  # what `python -m accelerate.commands.launch` parses
    # torch's launcher logs each failed or stopped process; the recipe has said why in one line (--verbose: shown)
    elastic = logging.getLogger("torch.distributed.elastic")
    level = elastic.level
    if not logging.getLogger().isEnabledFor(logging.INFO):
        elastic.setLevel(logging.CRITICAL)
    try:
        launch_command(launch_args)
    except subprocess.CalledProcessError as err:  # one process (accelerate's simple launcher)
        code = err.returncode
    except Exception as err:  # several processes: torch.distributed.elastic's ChildFailedError
        first = getattr(err, "get_first_failure", None)
        if first is None:
            raise
        code = first()[1].exitcode
    else:
        code = 0
    finally:
        elastic.setLevel(level)
    if code < 0:  # killed by a signal: the recipe could not say anything
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        sys.stderr.write(f"hf-simskip train: error: the recipe was killed by signal {name}\n")
        return 128 - code  # as a shell reports it
    return code


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
        help="batched: the batched probe, an exact torch solver of SentEval's objective, every fold and C at once "
        "(default); sklearn: the sklearn probe, SentEval's own lbfgs fits, to reproduce published SentEval numbers "
        "(slow)",
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
        "refine embeddings (.npy/.npz/.parquet) or sentences (a text file) with a saved SimSkip model",
        "Load a saved SimSkip model and refine (n, d) embeddings from a file (a head-only model, for "
        "embeddings of any modality), or the sentences of a text file, one a line (a model with a backbone: "
        "the backbone encodes them, then the head refines them, as SimSkipModel.encode). The output is "
        "written atomically (temporary file, then rename): a failed run never leaves a truncated or "
        "half-written output. With --overwrite the input is replaced in place, keeping the other arrays of "
        "an .npz and the other columns of a .parquet.",
        [
            "hf-simskip refine --model out/head --input image_emb.npy --output refined.npy",
            "hf-simskip refine --model out/head --input emb.npz --key train --output refined.npz",
            "hf-simskip refine --model out/head --input table.parquet --column embedding --output out.parquet",
            "hf-simskip refine --model out/final --text-file sentences.txt --output refined.npy",
            "hf-simskip refine --model out/head --input emb.npz --key train --output emb.npz --overwrite",
        ],
    )
    p.add_argument("--model", required=True, help="folder (or Hub id) saved by SimSkipModel.save_pretrained")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--input",
        help=".npy, .npz or .parquet file of raw embeddings (n, d), or (n, 1 + L, d) "
        "stacks (the embedding, then the layers; see 'hf-simskip embed') for a layer-aware head",
    )
    src.add_argument(
        "--text-file",
        help="UTF-8 text file, one sentence a line (row i of the output is line i); needs a model with a backbone",
    )
    p.add_argument("--output", required=True, help=".npy, .npz or .parquet file for the refined embeddings")
    p.add_argument("--key", default=None, help="array name inside an .npz (needed when it holds several)")
    p.add_argument("--column", default=None, help="parquet column of embedding vectors (lists/arrays)")
    p.add_argument("--output-key", default="refined", help="array/column name in an .npz/.parquet output")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="rows refined at once (default 4096), or sentences encoded at once with --text-file (default 32)",
    )
    p.add_argument("--device", default="cpu", help="for the model (e.g. cuda)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="allow --output to be the --input file (replaced; an .npz keeps its other arrays)",
    )
    p.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="L2-normalise the output (default: the model's normalize_embeddings)",
    )


def _check_output(args, source: str) -> None:
    if Path(args.output).resolve() == Path(source).resolve() and not args.overwrite:
        raise ValueError(
            f"--output {args.output!r} is the input file: refining would replace the raw embeddings; "
            "write elsewhere, or pass --overwrite to replace them"
        )


def _sentences_for(model, name: str, text_file: str, flag: str) -> list[str]:
    """The sentences of ``text_file``, once ``model`` (loaded from ``name``) is known to encode text."""
    from .files import read_sentences

    if model.encoder is None or model.tokenizer is None:
        raise ValueError(
            f"{flag} takes sentences, which need a model with a backbone and its tokenizer; {name!r} is "
            "head-only (it refines embeddings): pass the embeddings to 'hf-simskip refine --input' instead"
        )
    return read_sentences(text_file)


def refine(args) -> int:
    from .files import read_embeddings, read_sentences, write_embeddings

    _check_output(args, args.input or args.text_file)
    if args.text_file is not None:
        if args.key is not None or args.column is not None:
            raise ValueError("--key and --column choose an array of an --input file; --text-file takes neither")
        read_sentences(args.text_file)  # before loading the model: fail fast
        model = load_simskip(args.model, args.device)
        sentences = _sentences_for(model, args.model, args.text_file, "--text-file")
        refined = model.encode(
            sentences,
            batch_size=args.batch_size or 32,
            normalize_embeddings=args.normalize,
            show_progress_bar=logging.getLogger().isEnabledFor(logging.INFO),
        )
        path = write_embeddings(args.output, refined, args.output_key, _sentence_table(args.output, sentences))
        _out(f"refined {len(sentences)} sentences -> {refined.shape[1]}: wrote {path}")
        return 0
    x, table = read_embeddings(args.input, key=args.key, column=args.column)  # before loading the model: fail fast
    model = load_simskip(args.model, args.device)
    if x.shape[-1] != model.config.embedding_dim:
        raise ValueError(
            f"{args.input}: embeddings are {x.shape[-1]}-d but the model {args.model!r} refines "
            f"{model.config.embedding_dim}-d embeddings"
        )
    try:
        refined = model.refine(x, batch_size=args.batch_size or 4096, normalize_embeddings=args.normalize)
    except ValueError as err:
        raise ValueError(f"{args.input}: {err}") from err
    in_place = Path(args.output).resolve() == Path(args.input).resolve() and Path(args.output).suffix == ".npz"
    path = write_embeddings(args.output, refined, args.output_key, table, keep_from=args.input if in_place else None)
    _out(f"refined {refined.shape[0]} x {' x '.join(map(str, x.shape[1:]))} -> {refined.shape[1]}: wrote {path}")
    return 0


def _sentence_table(output: str, sentences: list[str]):
    """A parquet output of text input holds the sentences beside the vectors; other formats: None."""
    if Path(output).suffix.lower() != ".parquet":
        return None
    import pyarrow as pa

    return pa.table({"sentence": sentences})


# --- embed --------------------------------------------------------------------------------------
def embed_parser(sub):
    p = _command(
        sub,
        "embed",
        embed,
        "write what a model's head reads from sentences: (n, d), or (n, 1 + L, d) with layers",
        "Encode the sentences of a text file (one a line) with the model's backbone and write the head's raw "
        "inputs (SimSkipModel.head_inputs): x (n, d), or for a layer-aware model the stacks (n, 1 + L, d), "
        "the embedding x then the L pooled hidden layers it reads. 'hf-simskip refine --input' takes these "
        "files; so does any copy of the model's head without the backbone.",
        [
            "hf-simskip embed --model out/final --input sentences.txt --output stacks.npy",
            "hf-simskip refine --model out/final --input stacks.npy --output refined.npy",
            "hf-simskip embed --model out/final --input sentences.txt --output stacks.parquet --batch-size 64",
        ],
    )
    p.add_argument("--model", required=True, help="folder (or Hub id) saved by SimSkipModel, with a backbone")
    p.add_argument("--input", required=True, help="UTF-8 text file, one sentence a line (row i is line i)")
    p.add_argument("--output", required=True, help=".npy, .npz or .parquet file to write")
    p.add_argument("--output-key", default="head_inputs", help="array/column name in an .npz/.parquet output")
    p.add_argument("--batch-size", type=positive_int, default=32, help="sentences encoded at once (>= 1)")
    p.add_argument("--device", default="cpu", help="for the backbone (e.g. cuda)")


def embed(args) -> int:
    from .files import read_sentences, write_embeddings
    from .training.cache import embed_sentences

    read_sentences(args.input)  # before loading the model: fail fast
    model = load_simskip(args.model, args.device)
    sentences = _sentences_for(model, args.model, args.input, "embed --input")
    stacks = embed_sentences(
        model,
        sentences,
        batch_size=args.batch_size,
        device=args.device,
        show_progress_bar=logging.getLogger().isEnabledFor(logging.INFO),
    ).numpy()  # (n, d), or (n, 1 + L, d)
    path = write_embeddings(args.output, stacks, args.output_key, _sentence_table(args.output, sentences))
    layers = stacks.shape[1] - 1 if stacks.ndim == 3 else 0
    names = ", ".join(map(str, model.config.layers or []))
    what = f"x, then {layers} hidden layers: hidden states {names}" if layers else "x"
    _out(f"embedded {len(sentences)} sentences -> {' x '.join(map(str, stacks.shape))} ({what}): wrote {path}")
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
    for name in ("results", "baseline-results", "training-args", "corpus", "metrics"):
        p.add_argument(f"--{name}", default=None, help="JSON file (default: the one in FOLDER or its run folder)")


def card(args) -> int:
    from .sharing.model_card import OUTCOME_FILES, RECORD_FILES, write_card_for_folder

    records = {k: getattr(args, k) for k in {**RECORD_FILES, **OUTCOME_FILES} if getattr(args, k) is not None}
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


# --- cache --------------------------------------------------------------------------------------
def cache_parser(sub):
    p = _command(
        sub,
        "cache",
        None,
        "list or clear the embedding caches that training builds",
        "The training recipe encodes its corpus once and keeps the backbone's outputs as an embedding cache "
        "(hf_simskip.training.cache) under $HF_SIMSKIP_CACHE, else $HF_HOME/hf_simskip (~/.cache/huggingface/"
        "hf_simskip by default). 'list' shows them; 'clear' removes some (by KEY, or a unique start of one, as "
        "'list' shows it) or all of them, with the leftovers of interrupted builds.",
        [
            "hf-simskip cache list",
            "hf-simskip cache clear 3f2a9c1b",
            "hf-simskip cache clear --all --cache-dir /data/caches",
        ],
    )
    actions = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="list the caches: key, rows, shape, dtype, size, created, path")
    ls.set_defaults(handler=cache_list)
    rm = actions.add_parser("clear", help="remove caches: KEY... or --all")
    rm.add_argument("keys", nargs="*", metavar="KEY", help="a cache's key, or a unique start of one")
    rm.add_argument("--all", action="store_true", help="remove every cache")
    rm.set_defaults(handler=cache_clear)
    for q in (ls, rm):
        q.add_argument("--cache-dir", default=None, help="the caches' folder (default: as training chooses it)")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1024
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}"


def _cache_module():
    from .training import cache

    if not hasattr(cache, "list_caches") or not hasattr(cache, "clear_caches"):
        raise ImportError("this hf_simskip has no hf_simskip.training.cache.list_caches/clear_caches: update it")
    return cache


def _cache_root(args) -> str:
    return args.cache_dir or str(_cache_module().default_cache_dir())


def cache_list(args) -> int:
    entries = _cache_module().list_caches(cache_dir=args.cache_dir)
    if not entries:
        _out(f"no embedding caches in {_cache_root(args)}")
        return 0
    rows = [("KEY", "NAME", "ROWS", "SHAPE", "DTYPE", "SIZE", "CREATED", "PATH")]
    for e in entries:
        shape = "x".join(str(n) for n in (e.get("shape") or ()))
        path = str(e["path"]) + ("" if e.get("complete", True) else "  (damaged: clear it)")
        row = (str(e["key"])[:12], e.get("name"), e.get("rows"), shape, e.get("dtype"))  # a key's start is enough
        rows.append(
            (
                *(str(c if c is not None else "?") for c in row),
                _size(int(e.get("size_bytes") or 0)),
                str(e.get("created") or "?")[:19],
                path,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        _out("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    total = sum(int(e.get("size_bytes") or 0) for e in entries)
    _out(f"{len(entries)} cache(s), {_size(total)} in {_cache_root(args)}")
    return 0


def _resolve_keys(entries: list[dict], wanted: list[str], where: str) -> list[str]:
    """Each of ``wanted`` (a key, a unique start of one, or a cache's folder name) -> the cache's key."""
    keys = []
    for w in wanted:
        hits = [e for e in entries if str(e["key"]).startswith(w) or Path(str(e["path"])).name == w]
        if len(hits) != 1:
            what = "no cache matches" if not hits else f"{len(hits)} caches match"
            raise ValueError(
                f"{what} KEY {w!r} in {where}: pass a key (or a unique start of one) "
                "as 'hf-simskip cache list' shows it"
            )
        keys.append(str(hits[0]["key"]))
    return list(dict.fromkeys(keys))


def cache_clear(args) -> int:
    cache = _cache_module()
    if args.all == bool(args.keys):
        raise ValueError(
            "pass either --all or the KEYs of the caches to remove (as 'hf-simskip cache list' shows them), "
            f"got {'both' if args.all else 'neither'}"
        )
    keys = (
        None if args.all else _resolve_keys(cache.list_caches(cache_dir=args.cache_dir), args.keys, _cache_root(args))
    )
    removed = cache.clear_caches(cache_dir=args.cache_dir, keys=keys)
    for path in removed:
        _out(f"removed {path}")
    _out(f"removed {len(removed)} folder(s) from {_cache_root(args)}")
    return 0


COMMANDS = (
    train_parser,
    eval_parser,
    refine_parser,
    embed_parser,
    card_parser,
    push_parser,
    export_st_parser,
    cache_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-simskip", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def _command_name(argv: list[str]) -> str | None:
    """The sub-command of ``argv``: its first word that is not a top-level flag (none of them takes a value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args``, except that ``train`` hands every argument that is not its own to the recipe:
    what follows the first '--' untouched, and the unknown options (with their values) before it."""
    if _command_name(argv) != "train":
        return parser.parse_args(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, unknown = parser.parse_known_args(argv[:split])
    args.recipe_args = [*unknown, *argv[split + 1 :]]
    return args


def main(argv=None) -> int:
    parser = build_parser()
    args = parse(parser, list(sys.argv[1:] if argv is None else argv))
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
