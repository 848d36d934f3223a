"""SimSkip: what travels to the Hub next to the weights.

Every file in this folder imports only the others, torch, the standard library and public transformers
API (``st_module.py`` also sentence-transformers), so a saved model loads with
``AutoModel.from_pretrained(folder, trust_remote_code=True)`` where hf_simskip is not installed.
"""

from .augmentations import ViewArguments, augment, gaussian_noise, make_view, random_mask
from .configuration_simskip import SimSkipConfig
from .head import HeadOutput, SimSkipHead, split_inputs
from .losses import ObjectiveArguments, SimSkipObjective, distillation_loss, geometry_loss, nt_xent_loss
from .modeling_simskip import SimSkipModel, SimSkipOutput

__all__ = [
    "SimSkipConfig",
    "SimSkipModel",
    "SimSkipOutput",
    "SimSkipHead",
    "HeadOutput",
    "split_inputs",
    "ViewArguments",
    "ObjectiveArguments",
    "SimSkipObjective",
    "nt_xent_loss",
    "geometry_loss",
    "distillation_loss",
    "augment",
    "make_view",
    "random_mask",
    "gaussian_noise",
]
