"""The experiment runner: SimSkip heads x seeds against post-hoc controls, one probe, one protocol.

    # the grid (resumes: finished runs are skipped); the first run builds the experiment cache
    python experiments/runner.py run --grid experiments/grids/minilm.yaml
    # results/summary.json, summary.md, deltas.png and the results block of experiments/README.md
    python experiments/runner.py report

Everything works on one cache of precomputed backbone features (encoding dominates the cost): every
hidden layer of every SentEval and corpus sentence, from one backbone pass per batch, float16, memory-mapped
(``hf_simskip.training.build_embedding_cache``), so a grid of configurations x seeds costs minutes, not hours. Heads are trained by the library's own loop (``train_head``), exactly as
the recipe trains them. The training corpus "default" is the unlabeled .txt files under
<data_dir>/unlabeled plus the training splits of SST2, TREC and MRPC (never a dev or test split);
"transductive" adds the sentences of CR, MPQA, MR and SUBJ (unlabeled) and is labelled so in every table.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml

from hf_simskip import SimSkipConfig, SimSkipModel
from hf_simskip.evaluation import TASKS, evaluate, load_task, unique_sentences
from hf_simskip.files import write_json
from hf_simskip.models.simskip.modeling_simskip import PACKAGED_BACKBONE_ID
from hf_simskip.paths import resolve_data_dir
from hf_simskip.training import (
    DevSignal,
    HeadTrainingArguments,
    build_embedding_cache,
    load_corpus,
    stsb_dev_fn,
    train_head,
)
from hf_simskip.training.dev import DEV_SPLITS, LabeledDev

from controls import LayerControl, PostHocRefiner

logger = logging.getLogger("experiments")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class RunSpec:
    """One row of a grid: a SimSkip head configuration, a post-hoc control, or a layer control.

    head: SimSkipConfig keyword arguments (the architecture and what refine() returns);
    train: HeadTrainingArguments keyword arguments (the views, the loss and the optimisation);
    control: identity, standardize, whiten, whiten-256, abtt-3, ... (on x), or concat / mean / pca (on the
    hidden layers, with ``parts`` like ["x", "0.5*L4"], and for pca ``dim`` and ``weight``).
    dev: how a trained row selects its head: "sts" (the recipe's DevSignal: STS-B dev and SICK-R trial as
    constraints, the largest weight of u they allow) or "stsb-max" (the STS-B dev score alone, hf_simskip 0.2).
    dev_labels: a SentEval task with a dev split (SST2) whose dev sentences and labels stand for a user's own
    labeled dev set (the recipe's --dev_file): the probe accuracy on them chooses among what keeps STS.
    """

    name: str
    control: str | None = None
    head: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    corpus: str = "default"  # "default" or "transductive" (adds CR/MPQA/MR/SUBJ sentences, unlabeled)
    default: bool = False
    seeds: list | None = None  # overrides the grid's seeds for this row (controls are deterministic: one run)
    parts: list | None = None
    dim: int = 384
    weight: float = 0.5
    dev: str = "sts"
    dev_labels: str | None = None

    def __post_init__(self):
        if self.dev_labels is not None and (self.dev != "sts" or self.dev_labels not in LABELED_DEV_TASKS):
            raise ValueError(
                f"run {self.name!r}: dev_labels must be one of {list(LABELED_DEV_TASKS)} (with dev: sts), "
                f"got {self.dev_labels!r}"
            )
        if self.dev not in ("sts", "stsb-max"):
            raise ValueError(f"run {self.name!r}: dev must be 'sts' or 'stsb-max', got {self.dev!r}")
        if self.corpus not in ("default", "transductive"):
            raise ValueError(f"run {self.name!r}: corpus must be 'default' or 'transductive', got {self.corpus!r}")
        if self.control is None:
            self.training_args(seed=0, output_dir=".").validate()
            SimSkipConfig(embedding_dim=8, **{k: v for k, v in self.head.items() if k != "hidden_dims"})
        elif self.control in LAYER_CONTROLS:
            LayerControl(self.control, list(self.parts or []), self.dim, self.weight)

    def training_args(self, seed: int, output_dir: str) -> HeadTrainingArguments:
        unknown = set(self.train) - {f.name for f in fields(HeadTrainingArguments)}
        if unknown:
            raise ValueError(
                f"run {self.name!r}: train keys must be HeadTrainingArguments fields, got unknown {sorted(unknown)}"
            )
        return HeadTrainingArguments(**{"logging_steps": 0, **self.train, "seed": seed, "output_dir": output_dir})


def make_control(spec: str) -> PostHocRefiner:
    kind, _, k = spec.partition("-")
    return PostHocRefiner(kind, int(k) if k else None)


LAYER_CONTROLS = ("concat", "mean", "pca")
LABELED_DEV_TASKS = ("SST2",)  # the transfer tasks with a dev split


def train_on_embeddings(
    x: torch.Tensor,
    spec: RunSpec,
    seed: int,
    dev_pairs=None,
    partners: torch.Tensor | None = None,
    layers=None,
    labeled: LabeledDev | None = None,
) -> tuple[SimSkipModel, dict]:
    """Train a head-only SimSkipModel on cached raw inputs, (n, d) or (n, 1 + len(layers), d), with the
    library's train_head (``partners``: the dropout views of the same rows, for positives="dropout";
    ``labeled``: a labeled dev set for the dev signal)."""
    from accelerate import Accelerator

    torch.manual_seed(seed)
    model = SimSkipModel(SimSkipConfig(embedding_dim=x.shape[-1], **{**spec.head, "layers": layers}))
    with tempfile.TemporaryDirectory() as tmp:
        args = spec.training_args(seed, tmp)
        dev_fn = None
        if dev_pairs is not None and spec.dev == "stsb-max":
            dev_fn = stsb_dev_fn(*dev_pairs["stsb"])
        elif dev_pairs is not None:
            dev_fn = DevSignal(dev_pairs, args.dev_tolerance, args.layer_scales, labeled=labeled)
        metrics = train_head(model.head, x, args, Accelerator(cpu=True), dev_fn, partners=partners)
    metrics.pop("args", None)
    return model.eval(), metrics


def run_record(spec: RunSpec, seed: int, results: dict, extra: dict, seconds: float) -> dict:
    args = asdict(spec.training_args(seed, "")) if spec.control is None else None
    return {
        **results,
        "run": {
            "name": spec.name,
            "seed": seed,
            "spec": asdict(spec),
            "training_args": args,
            "seconds": round(seconds, 1),
            **extra,
        },
    }


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


# --- embeddings: one cache of every hidden layer, from one backbone pass per batch ---------------------
def backbone_model(backbone: dict) -> SimSkipModel:
    """The grid's backbone with a zero-init head that reads every hidden state: its raw inputs are the
    stacks [x, L_0, ..., L_n] (x as the backbone embeds, each L_k the pooled hidden state k)."""
    kwargs = {} if backbone["name"] is None else {"normalize_embeddings": False}
    probe = SimSkipModel.from_encoder_pretrained(backbone["name"], pooling=backbone["pooling"], **kwargs)
    depth = probe.config.encoder_config.num_hidden_layers
    model = SimSkipModel.from_encoder_pretrained(
        backbone["name"], pooling=backbone["pooling"], layers=list(range(depth + 1)), **kwargs
    )
    return model.eval()


def experiment_sentences(data_dir: Path) -> tuple[list[str], dict[str, tuple[list[str], dict]]]:
    """Every sentence the grid needs (each SentEval task's, and the corpora's), sorted, and the corpora."""
    tasks = [load_task(name, data_dir) for name in TASKS]
    corpora = {
        kind: load_corpus(data_dir, transductive_kfold_tasks=kind == "transductive")
        for kind in ("default", "transductive")
    }
    sentences = sorted(set(unique_sentences(tasks)).union(*(set(s) for s, _ in corpora.values())))
    return sentences, corpora


class Stacks:
    """The experiment cache: rows [x, L_0, ..., L_n] of every sentence, memory-mapped, with a sentence index."""

    def __init__(self, table, sentences: list[str]):
        self.table, self.index = table, {s: i for i, s in enumerate(sentences)}

    def rows(self, sentences) -> np.ndarray:
        return self.table[[self.index[s] for s in sentences]].numpy()

    @staticmethod
    def head_input(stacks: np.ndarray, layers) -> np.ndarray:
        """What a head with ``layers`` reads: x (n, d), or (n, 1 + len(layers), d)."""
        return stacks[:, 0] if not layers else stacks[:, [0] + [1 + k for k in layers]]


# --- the grid ----------------------------------------------------------------------------------
def refine_all(spec: RunSpec, seed: int, corpus: np.ndarray, everything: np.ndarray, dev, partners=None):
    """Fit or train on the corpus stacks, return the refined embedding of every sentence."""
    if spec.control in LAYER_CONTROLS:
        control = LayerControl(spec.control, list(spec.parts), spec.dim, spec.weight).fit(corpus)
        return control.transform(everything), {"control": control.name}
    if spec.control:
        refiner = make_control(spec.control).fit(corpus[:, 0])
        return refiner.transform(everything[:, 0]), {"control": refiner.name}
    # a row without `layers` gets what SimSkipConfig gives a model of this backbone: hidden states 0 .. n - 1
    # (the stacks hold x and hidden states 0 .. n), or x alone with output="concat"
    default = None if spec.head.get("output") == "concat" else list(range(everything.shape[1] - 2))
    layers = spec.head.get("layers", default)
    pick = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(Stacks.head_input(a, layers)))  # noqa: E731
    dev_pairs = {name: (pick(dev[name][0]), pick(dev[name][1]), dev[name][2]) for name in DEV_SPLITS if name in dev}
    labeled = None
    if spec.dev_labels is not None:
        rows, labels = dev[f"labeled:{spec.dev_labels}"]
        labeled = LabeledDev(pick(rows), labels)
    model, metrics = train_on_embeddings(pick(corpus), spec, seed, dev_pairs, pick(partners), layers, labeled)
    return model.refine(pick(everything)), {"training": metrics}


def run_grid(args) -> None:
    grid = yaml.safe_load(Path(args.grid).read_text())
    data_dir = resolve_data_dir(args.data_dir)
    specs = [RunSpec(**r) for r in grid["runs"]]
    if sum(s.default for s in specs) > 1:
        raise ValueError("at most one run in the grid may be marked default: true")
    seeds, mode, out = grid.get("seeds", [0, 1, 2]), args.mode or grid.get("mode", "full"), Path(args.out)
    # the backbone (null: the packaged all-MiniLM-L6-v2); recorded in every run
    backbone = {"name": grid.get("backbone"), "pooling": grid.get("pooling")}
    model = backbone_model(backbone)
    sentences, corpora = experiment_sentences(data_dir)
    table, cache = build_embedding_cache(
        model, sentences, args.cache_dir, batch_size=128, name="experiments", dtype=grid.get("cache_dtype", "float16")
    )
    stacks = Stacks(table, sentences)
    everything = stacks.rows(sentences)  # (N, 1 + H, d)
    dev_rows = {}  # the dev signals' pairs (STS-B dev, SICK-R trial), as the recipe reads them
    for name, (task, split) in DEV_SPLITS.items():
        pairs = load_task(task, data_dir).splits[split]
        dev_rows[name] = (
            stacks.rows(pairs.pairs[0]),
            stacks.rows(pairs.pairs[1]),
            np.asarray(pairs.labels, dtype=float),
        )
    for task in sorted({s.dev_labels for s in specs if s.dev_labels}):  # a dev split standing for a user's labels
        split = load_task(task, data_dir).splits["dev"]
        dev_rows[f"labeled:{task}"] = (stacks.rows(split.sentences), [str(y) for y in split.labels])
    dropout = {}
    for spec in specs:
        for seed in [0] if spec.control else spec.seeds or seeds:
            path = out / "runs" / f"{spec.name}__seed{seed}.json"
            if path.is_file() and not args.force:
                logger.info("skip %s (done)", path.name)
                continue
            corpus_sentences, record = corpora[spec.corpus]
            partners = None
            if spec.control is None and spec.training_args(seed, "").positives == "dropout":
                if spec.corpus not in dropout:  # one dropout view of the corpus (seed 1), shared by the seeds
                    view, _ = build_embedding_cache(
                        model,
                        corpus_sentences,
                        args.cache_dir,
                        batch_size=128,
                        name="experiments-dropout",
                        dropout_seed=1,
                        dtype=grid.get("cache_dtype", "float16"),
                    )
                    dropout[spec.corpus] = view[:].numpy()
                partners = dropout[spec.corpus]
            (refined, extra), train_s = timed(
                refine_all, spec, seed, stacks.rows(corpus_sentences), everything, dev_rows, partners
            )
            results, eval_s = timed(
                evaluate,
                lambda ss, out=refined: out[[stacks.index[s] for s in ss]],
                data_dir=data_dir,
                mode=mode,
                show_progress_bar=False,
            )
            extra.update(
                corpus=record,
                train_seconds=round(train_s, 1),
                grid=str(args.grid),
                cache=cache["key"],
                backbone=backbone["name"] or PACKAGED_BACKBONE_ID,
                pooling=backbone["pooling"],
            )
            write_json(path, run_record(spec, seed, results, extra, train_s + eval_s))
            logger.info("%s seed %d: avg %.2f (%.0f s)", spec.name, seed, results["avg"], train_s + eval_s)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run (or resume) a grid")
    run.add_argument("--grid", default=str(HERE / "grids" / "minilm.yaml"))
    run.add_argument(
        "--cache-dir",
        default=str(ROOT / ".cache" / "experiments"),
        help="where the experiment cache lives (built on the first run: every hidden layer of every "
        "sentence, ~25 min on 2 CPU cores for all-MiniLM-L6-v2)",
    )
    run.add_argument("--data-dir", default=None)
    run.add_argument("--out", default=str(ROOT / "results"))
    run.add_argument("--mode", choices=["fast", "full"], default=None, help="override the grid's mode")
    run.add_argument("--force", action="store_true", help="redo finished runs")
    rep = sub.add_parser("report", help="summary.json, summary.md, deltas.png and the README results block")
    rep.add_argument("--out", default=str(ROOT / "results"))
    rep.add_argument("--grid", default=str(HERE / "grids" / "minilm.yaml"), help="the grid whose default row is marked")
    rep.add_argument(
        "--readme", default=str(HERE / "README.md"), help="README whose results block is regenerated ('none': skip)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.cmd == "run":
        run_grid(args)
    else:
        from report import write_report

        grid = yaml.safe_load(Path(args.grid).read_text())
        default = next((r["name"] for r in grid["runs"] if r.get("default")), None)
        readme = None if args.readme == "none" else Path(args.readme)
        write_report(Path(args.out), readme, default, top_readme=None if readme is None else ROOT / "README.md")


if __name__ == "__main__":
    main()
