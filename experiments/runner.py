"""The experiment runner: SimSkip heads x seeds against post-hoc controls, one probe, one protocol.

    # 1. the backbone's embeddings of every SentEval sentence, once (~9 min on 2 CPU cores)
    python benchmarks/cache_senteval_embeddings.py --output .cache/senteval_minilm.npz
    # 2. the grid (resumes: finished runs are skipped)
    python experiments/runner.py run --grid experiments/grids/minilm.yaml --cache .cache/senteval_minilm.npz
    # 3. results/summary.json, summary.md, deltas.png and the results block of experiments/README.md
    python experiments/runner.py report

Everything works on precomputed embeddings (encoding dominates the cost), so a grid of configurations x
seeds costs minutes, not hours. Heads are trained by the library's own loop (``train_head``), exactly as
the recipe trains them. The training corpus "default" is the unlabeled .txt files under
<data_dir>/unlabeled plus the training splits of SST2, TREC and MRPC (never a dev or test split);
"transductive" adds the sentences of CR, MPQA, MR and SUBJ (unlabeled) and is labelled so in every table.
"""

from __future__ import annotations

import argparse
import hashlib
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
from hf_simskip.evaluation import evaluate, load_task
from hf_simskip.files import atomic_path, write_json
from hf_simskip.models.simskip.modeling_simskip import PACKAGED_BACKBONE_ID
from hf_simskip.paths import resolve_data_dir
from hf_simskip.training import HeadTrainingArguments, embed_sentences, load_corpus, stsb_dev_fn, train_head

from controls import PostHocRefiner

logger = logging.getLogger("experiments")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class RunSpec:
    """One row of a grid: a SimSkip head configuration or a post-hoc control.

    head: SimSkipConfig keyword arguments (the architecture and what refine() returns);
    train: HeadTrainingArguments keyword arguments (the views, the loss and the optimisation).
    """

    name: str
    control: str | None = None  # identity, standardize, whiten, whiten-256, abtt-3, ...
    head: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    corpus: str = "default"  # "default" or "transductive" (adds CR/MPQA/MR/SUBJ sentences, unlabeled)
    default: bool = False
    seeds: list | None = None  # overrides the grid's seeds for this row (controls are deterministic: one run)

    def __post_init__(self):
        if self.corpus not in ("default", "transductive"):
            raise ValueError(f"run {self.name!r}: corpus must be 'default' or 'transductive', got {self.corpus!r}")
        if self.control is None:
            self.training_args(seed=0, output_dir=".").validate()
            SimSkipConfig(embedding_dim=8, **{k: v for k, v in self.head.items() if k != "hidden_dims"})

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


def train_on_embeddings(
    x: torch.Tensor, spec: RunSpec, seed: int, dev_pairs=None, partners: torch.Tensor | None = None
) -> tuple[SimSkipModel, dict]:
    """Train a head-only SimSkipModel on (n, d) cached embeddings with the library's train_head
    (``partners``: the dropout views of the same rows, for positives="dropout")."""
    from accelerate import Accelerator

    torch.manual_seed(seed)
    model = SimSkipModel(SimSkipConfig(embedding_dim=x.shape[1], **spec.head))
    dev_fn = stsb_dev_fn(*dev_pairs) if dev_pairs is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train_head(
            model.head, x, spec.training_args(seed, tmp), Accelerator(cpu=True), dev_fn, partners=partners
        )
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


# --- embeddings: the SentEval cache, corpus sentences missing from it, dropout views ---------------
def load_cache(path: Path) -> tuple[list[str], np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"embedding cache {path} does not exist: run benchmarks/cache_senteval_embeddings.py")
    with np.load(path) as z:
        return z["sentences"].tolist(), z["embeddings"].astype(np.float32)


def _backbone_model(backbone: dict) -> SimSkipModel:
    raw = {} if backbone["name"] is None else {"normalize_embeddings": False}  # as the cache script
    return SimSkipModel.from_encoder_pretrained(backbone["name"], pooling=backbone["pooling"], **raw)


def _cached_npz(path: Path, sentences: list[str], encode) -> np.ndarray:
    """``encode(sentences)`` stored once at ``path`` (atomically; the sentences beside the rows)."""
    if not path.is_file():
        vecs = np.asarray(encode(sentences), dtype=np.float32)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, sentences=np.array(sentences, dtype=str), embeddings=vecs)
    with np.load(path) as z:
        if z["sentences"].tolist() != list(sentences):
            raise ValueError(f"{path} holds other sentences than the corpus: delete it to re-encode")
        return z["embeddings"].astype(np.float32)


def _key(*parts) -> str:
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def corpus_embeddings(
    sentences: list[str], table: dict[str, int], emb: np.ndarray, cache_dir: Path, backbone: dict
) -> np.ndarray:
    """Rows of the SentEval cache; sentences not in it (the unlabeled text) are encoded once, with the
    grid's backbone (the one the cache was made with), and cached."""
    missing = sorted({s for s in sentences if s not in table})
    extra = {}
    if missing:

        def encode(ss):
            logger.info("encoding %d corpus sentences not in the SentEval cache", len(ss))
            return _backbone_model(backbone).encode(ss, batch_size=128, show_progress_bar=True)  # zero-init: raw

        path = cache_dir / f"corpus_extra_{_key(chr(10).join(missing), repr(sorted(backbone.items())))}.npz"
        extra = dict(zip(missing, _cached_npz(path, missing, encode)))
    return np.stack([emb[table[s]] if s in table else extra[s] for s in sentences]).astype(np.float32)


def dropout_embeddings(sentences: list[str], cache_dir: Path, backbone: dict, seed: int = 1) -> np.ndarray:
    """One dropout view of every corpus sentence (the backbone in train mode, SimCSE's augmentation),
    encoded once per (sentences, backbone, seed) and cached; every training seed reuses it."""

    def encode(ss):
        logger.info("encoding a dropout view of %d corpus sentences (seed %d)", len(ss), seed)
        return embed_sentences(
            _backbone_model(backbone), ss, batch_size=128, show_progress_bar=True, dropout=True, seed=seed
        ).numpy()

    key = _key("\n".join(sentences), repr(sorted(backbone.items())), f"dropout{seed}")
    return _cached_npz(cache_dir / f"corpus_dropout_{key}.npz", sentences, encode)


def stsb_dev(data_dir: Path, table: dict[str, int], emb: np.ndarray):
    """Raw STS-B dev pairs and gold scores: the dev signal for model selection (never a test split)."""
    dev = load_task("STSB", data_dir).splits["dev"]
    a = emb[[table[s] for s in dev.pairs[0]]]
    b = emb[[table[s] for s in dev.pairs[1]]]
    return a, b, np.asarray(dev.labels, dtype=float)


# --- the grid ----------------------------------------------------------------------------------
def refine_all(spec: RunSpec, seed: int, x: np.ndarray, emb: np.ndarray, dev_pairs, partners=None):
    if spec.control:
        refiner = make_control(spec.control).fit(x)
        return refiner.transform(emb), {"control": refiner.name}
    partners = None if partners is None else torch.from_numpy(partners)
    model, metrics = train_on_embeddings(torch.from_numpy(x), spec, seed, dev_pairs, partners)
    return model.refine(emb), {"training": metrics}


def run_grid(args) -> None:
    grid = yaml.safe_load(Path(args.grid).read_text())
    data_dir = resolve_data_dir(args.data_dir)
    sentences, emb = load_cache(Path(args.cache))
    table = {s: i for i, s in enumerate(sentences)}
    specs = [RunSpec(**r) for r in grid["runs"]]
    if sum(s.default for s in specs) > 1:
        raise ValueError("at most one run in the grid may be marked default: true")
    seeds, mode, out = grid.get("seeds", [0, 1, 2]), args.mode or grid.get("mode", "full"), Path(args.out)
    # the backbone the cache was made with (null: the packaged all-MiniLM-L6-v2); recorded in every run
    backbone = {"name": grid.get("backbone"), "pooling": grid.get("pooling")}
    corpora, dev_pairs = {}, stsb_dev(data_dir, table, emb)
    for spec in specs:
        for seed in [0] if spec.control else spec.seeds or seeds:
            path = out / "runs" / f"{spec.name}__seed{seed}.json"
            if path.is_file() and not args.force:
                logger.info("skip %s (done)", path.name)
                continue
            if spec.corpus not in corpora:
                sents, record = load_corpus(data_dir, transductive_kfold_tasks=spec.corpus == "transductive")
                x = corpus_embeddings(sents, table, emb, Path(args.cache).parent, backbone)
                corpora[spec.corpus] = (sents, x, record)
            sents, x, record = corpora[spec.corpus]
            partners = None
            if spec.control is None and spec.training_args(seed, "").positives == "dropout":
                if (spec.corpus, "dropout") not in corpora:
                    corpora[spec.corpus, "dropout"] = dropout_embeddings(sents, Path(args.cache).parent, backbone)
                partners = corpora[spec.corpus, "dropout"]
            (refined, extra), train_s = timed(refine_all, spec, seed, x, emb, dev_pairs, partners)
            results, eval_s = timed(
                evaluate,
                lambda ss, out=refined: out[[table[s] for s in ss]],
                data_dir=data_dir,
                mode=mode,
                show_progress_bar=False,
            )
            extra.update(
                corpus=record,
                train_seconds=round(train_s, 1),
                grid=str(args.grid),
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
    run.add_argument("--cache", default=str(ROOT / ".cache" / "senteval_minilm.npz"))
    run.add_argument("--data-dir", default=None)
    run.add_argument("--out", default=str(ROOT / "results"))
    run.add_argument("--mode", choices=["fast", "full"], default=None, help="override the grid's mode")
    run.add_argument("--force", action="store_true", help="redo finished runs")
    rep = sub.add_parser("report", help="summary.json, summary.md, deltas.png and the README results block")
    rep.add_argument("--out", default=str(ROOT / "results"))
    rep.add_argument(
        "--readme", default=str(HERE / "README.md"), help="README whose results block is regenerated ('none': skip)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.cmd == "run":
        run_grid(args)
    else:
        from report import write_report

        write_report(Path(args.out), None if args.readme == "none" else Path(args.readme))


if __name__ == "__main__":
    main()
