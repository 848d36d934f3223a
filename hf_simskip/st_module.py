"""SimSkipModule: the SimSkip refiner as a sentence-transformers module.

Copied by ``hf_simskip.st_export.save_sentence_transformers`` into the exported folder, where
modules.json names it ``st_module.SimSkipModule``; sentence-transformers then loads it from that
file (``trust_remote_code=True``), without hf_simskip. Self-contained: torch, safetensors,
sentence-transformers and head.py (with its augmentations.py / losses.py), copied beside it.
"""
from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers.base.modules import Module

from .head import SkipEncoder


class SimSkipModule(Module):
    """Reads ``features["sentence_embedding"]`` (batch, d), writes the refined embedding back:
    ``f(z)`` or ``[z, f(z)]`` (output="concat"), with ``z = x`` or, with ``standardize_input``,
    ``(x - mean) / std`` from the stored training statistics. Only the refiner (no projector) is kept."""

    config_keys = ["embedding_dim", "hidden_dims", "dropout", "batch_norm", "use_skip", "linear_position",
                   "residual_scale", "output", "standardize_input"]

    def __init__(self, embedding_dim: int, hidden_dims=None, dropout: float = 0.1, batch_norm: bool = True,
                 use_skip: bool = True, linear_position: str = "residual_branch", residual_scale: float = 1.0,
                 output: str = "refined", standardize_input: bool = False):
        super().__init__()
        if output not in ("refined", "concat"):
            raise ValueError(f"output must be 'refined' or 'concat', got {output!r}")
        self.embedding_dim = int(embedding_dim)
        self.hidden_dims = list(hidden_dims or [max(self.embedding_dim // 2, 1), self.embedding_dim])
        self.dropout, self.batch_norm, self.use_skip = dropout, batch_norm, use_skip
        self.linear_position, self.residual_scale, self.output = linear_position, residual_scale, output
        self.standardize_input = bool(standardize_input)
        self.encoder = SkipEncoder(self.embedding_dim, self.hidden_dims, dropout, batch_norm, use_skip,
                                   linear_position, residual_scale)
        self.register_buffer("feature_mean", torch.zeros(self.embedding_dim))
        self.register_buffer("feature_std", torch.ones(self.embedding_dim))

    def forward(self, features: dict, **kwargs) -> dict:
        x = features["sentence_embedding"]  # (batch, d)
        if x.shape[-1] != self.embedding_dim:
            raise ValueError(f"SimSkipModule expects sentence embeddings of width {self.embedding_dim}, "
                             f"got {tuple(x.shape)}")
        if self.standardize_input:
            x = (x - self.feature_mean.to(x.dtype)) / self.feature_std.to(x.dtype)
        refined = self.encoder(x)  # (batch, d)
        features["sentence_embedding"] = torch.cat([x, refined], dim=-1) if self.output == "concat" else refined
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return 2 * self.embedding_dim if self.output == "concat" else self.embedding_dim

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, f"{output_path}/model.safetensors")

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token=None, cache_folder=None, revision=None,
             local_files_only: bool = False, **kwargs):
        hub = {"subfolder": subfolder, "token": token, "cache_folder": cache_folder, "revision": revision,
               "local_files_only": local_files_only}
        config = cls.load_config(model_name_or_path, **hub)
        module = cls(**config)
        weights = cls.load_file_path(model_name_or_path, filename="model.safetensors", **hub)
        if weights is None:
            raise FileNotFoundError(f"no model.safetensors for SimSkipModule in {model_name_or_path}/{subfolder}")
        module.load_state_dict(load_file(weights))
        return module


__all__ = ["SimSkipModule"]
