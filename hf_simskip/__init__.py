"""hf_simskip: SimSkip contrastive refinement of embeddings as a Hugging Face citizen.

Importing the package registers ``simskip`` with AutoConfig and AutoModel.
"""
from transformers import AutoConfig, AutoModel

from .augmentations import augment, gaussian_noise, random_mask, two_views
from .configuration_simskip import SimSkipConfig
from .head import SimSkipHead
from .losses import nt_xent_loss
from .modeling_simskip import SimSkipModel, SimSkipOutput
from .paths import resolve_data_dir

__version__ = "0.1.0"

AutoConfig.register("simskip", SimSkipConfig, exist_ok=True)
AutoModel.register(SimSkipConfig, SimSkipModel, exist_ok=True)
SimSkipConfig.register_for_auto_class()
SimSkipModel.register_for_auto_class("AutoModel")

__all__ = ["SimSkipConfig", "SimSkipModel", "SimSkipOutput", "SimSkipHead", "nt_xent_loss", "augment",
           "random_mask", "gaussian_noise", "two_views", "resolve_data_dir"]
