"""SentEval-protocol evaluation of sentence encoders (see ``evaluate``)."""
from .tasks import TASKS, TRANSFER_TASKS, STS_TASKS, load_task, unique_sentences
