"""SimSkipModule: the SimSkip head as a sentence-transformers module.

``hf_simskip.sharing.st_export.save_sentence_transformers`` copies this file, with the files it
imports, into the exported folder, where modules.json names it ``st_module.SimSkipModule``;
sentence-transformers then loads it from that file (``trust_remote_code=True``), without hf_simskip.
Self-contained: torch, safetensors, sentence-transformers and the files of this folder.
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers.base.modules import Module

from .configuration_simskip import SimSkipConfig
from .head import SimSkipHead
from .pooling import pool_layers


class SimSkipModule(Module):
    """Reads ``features["sentence_embedding"]`` (batch, d) and writes the refined embedding back, exactly
    as ``SimSkipHead.embed`` computes it (the head is built from the same architecture config; only the
    refiner, the layer branch and the statistics are kept, no projector). A layer-aware head also reads
    ``features["all_layer_embeddings"]``, which the Transformer module emits when its model config has
    ``output_hidden_states=True`` (the export sets it), and pools the chosen layers itself."""

    config_keys = ["head_config"]

    def __init__(self, head_config: dict):
        super().__init__()
        self.head_config = dict(head_config)
        config = SimSkipConfig(**head_config)
        self.layers, self.layer_pooling = config.layers, config.layer_pooling
        self.head = SimSkipHead(config, with_training_parts=False)

    @classmethod
    def from_config(cls, config: SimSkipConfig) -> SimSkipModule:
        """The module of a SimSkipConfig's head (every field but the backbone's)."""
        return cls(config.head_dict())

    def forward(self, features: dict, **kwargs) -> dict:
        x = features["sentence_embedding"]  # (batch, d)
        if self.layers:
            hidden = features.get("all_layer_embeddings")
            if hidden is None:
                raise ValueError(
                    "this SimSkipModule reads the backbone's hidden layers, but the pipeline gave no "
                    "'all_layer_embeddings': load the Transformer module with output_hidden_states=True"
                )
            pooled = pool_layers(self.layer_pooling, hidden, features["attention_mask"], self.layers)  # (b, L, d)
            x = torch.cat([x.unsqueeze(1), pooled.to(x.dtype)], dim=1)  # (batch, 1 + L, d)
        if x.shape[-1] != self.head.config.embedding_dim:
            raise ValueError(
                f"SimSkipModule expects sentence embeddings of width {self.head.config.embedding_dim}, got "
                f"{tuple(x.shape)}"
            )
        # normalisation is a separate Normalize module in the pipeline, as in sentence-transformers
        features["sentence_embedding"] = self.head.embed(x, normalize=False)  # (batch, output_dim)
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return self.head.config.output_dim

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        state = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
        save_file(state, f"{output_path}/model.safetensors")

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token=None,
        cache_folder=None,
        revision=None,
        local_files_only: bool = False,
        **kwargs,
    ):
        hub = {
            "subfolder": subfolder,
            "token": token,
            "cache_folder": cache_folder,
            "revision": revision,
            "local_files_only": local_files_only,
        }
        module = cls(**cls.load_config(model_name_or_path, **hub))
        weights = cls.load_file_path(model_name_or_path, filename="model.safetensors", **hub)
        if weights is None:
            raise FileNotFoundError(f"no model.safetensors for SimSkipModule in {model_name_or_path}/{subfolder}")
        module.head.load_state_dict(load_file(weights))
        return module


__all__ = ["SimSkipModule"]
