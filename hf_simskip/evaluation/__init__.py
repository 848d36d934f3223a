"""SentEval-protocol evaluation of sentence encoders.

from hf_simskip.evaluation import evaluate, format_table
results = evaluate(model.encode, tasks=["CR", "MR"], mode="fast")
print(format_table(results))

mode: "full" (10 folds, SentEval's) or "fast" (5 folds). probe: "batched" (the batched probe, default)
or "sklearn" (the sklearn probe, SentEval's own solver). See docs/evaluation.md.
"""

from .encoders import LookupEncoder, batcher, load_encoder, lookup_encoder, prepare
from .evaluator import evaluate
from .report import format_table, load_results, save_results
from .tasks import STS_TASKS, TASKS, TRANSFER_TASKS, load_task, unique_sentences

__all__ = [
    "evaluate",
    "format_table",
    "TASKS",
    "TRANSFER_TASKS",
    "STS_TASKS",
    "lookup_encoder",
    "load_encoder",
    "LookupEncoder",
    "prepare",
    "batcher",
    "load_task",
    "unique_sentences",
    "save_results",
    "load_results",
]
