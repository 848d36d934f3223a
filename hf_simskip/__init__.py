"""hf_simskip: SimSkip contrastive refinement of embeddings as a Hugging Face citizen.

    hf_simskip/models/simskip/   the model (config, modeling, head, ...): what travels to the Hub
    hf_simskip/training/         the head's training loop, checkpoints, corpus and embedding cache
    hf_simskip/sharing/          Hub upload, model card, sentence-transformers export
    hf_simskip/evaluation/       the SentEval protocol
    hf_simskip/cli.py            the hf-simskip command

Importing the package registers ``simskip`` with AutoConfig and AutoModel.
"""

from transformers import AutoConfig, AutoModel

from .models import simskip as _simskip
from .models.simskip import *  # noqa: F403 (the model's public names, listed in models/simskip/__init__.py)
from .models.simskip import SimSkipConfig, SimSkipModel
from .paths import resolve_data_dir
from .version import __version__


def _write_card(model, folder) -> None:
    from .sharing.hub import on_save_pretrained  # the card renderer (jinja2, huggingface_hub): imported on use

    on_save_pretrained(model, folder)


def _push(model, repo_id, *args, **kwargs):
    from .sharing.hub import push_model_to_hub

    return push_model_to_hub(model, repo_id, *args, **kwargs)


# the model files travel to the Hub alone and import nothing of hf_simskip: the package plugs its card and its
# upload into the model here (SimSkipModel.save_hooks / push_hook)
if _write_card not in SimSkipModel.save_hooks:
    SimSkipModel.save_hooks.append(_write_card)
SimSkipModel.push_hook = _push
AutoConfig.register("simskip", SimSkipConfig, exist_ok=True)
AutoModel.register(SimSkipConfig, SimSkipModel, exist_ok=True)
SimSkipConfig.register_for_auto_class()
SimSkipModel.register_for_auto_class("AutoModel")

__all__ = [*_simskip.__all__, "resolve_data_dir", "__version__"]
