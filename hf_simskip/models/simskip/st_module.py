"""SimSkip as sentence-transformers modules; this file travels beside the weights.

- ``SimSkipTransformer``: the whole SimSkipModel (backbone, pooling, head) as sentence-transformers' input
  module. ``SimSkipModel.save_pretrained`` copies this file into every folder with a backbone and writes a
  ``modules.json`` naming ``st_module.SimSkipTransformer``, so the folder that
  ``AutoModel.from_pretrained(folder, trust_remote_code=True)`` loads also loads with
  ``SentenceTransformer(folder, trust_remote_code=True)``, encoding as ``SimSkipModel.encode``.
- ``SimSkipModule``: the head alone, after sentence-transformers' own Transformer and Pooling modules;
  ``hf_simskip.sharing.st_export.save_sentence_transformers`` (``hf-simskip export-st``) builds that pipeline.

sentence-transformers imports this file through transformers' dynamic-module loader, with the files it
imports, so hf_simskip need not be installed. Self-contained: torch, safetensors, sentence-transformers and
the files of this folder.
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers.base.modules import InputModule, Module

from .configuration_simskip import SimSkipConfig
from .head import SimSkipHead
from .modeling_simskip import SimSkipModel
from .pooling import pool_layers


class SimSkipTransformer(InputModule):
    """A SimSkipModel as the one module of a SentenceTransformer: ``preprocess`` tokenises as
    ``SimSkipModel.encode`` does (the model's tokenizer and max_seq_length, a prompt put in front), and
    ``forward`` writes ``features["sentence_embedding"]``, the refined embedding (normalised when the config
    says so). Saved and loaded as the model folder itself (``save_pretrained`` / ``from_pretrained``)."""

    save_in_root = True

    def __init__(self, model: SimSkipModel):
        super().__init__()
        if getattr(model, "encoder", None) is None or getattr(model, "tokenizer", None) is None:
            raise ValueError(
                "SimSkipTransformer needs a SimSkipModel with a backbone and its tokenizer (it embeds text); a "
                "head-only model refines embeddings with SimSkipModel.refine"
            )
        self.model = model
        self.tokenizer = model.tokenizer

    @property
    def max_seq_length(self) -> int:
        return self.model.config.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.model.config.max_seq_length = value

    def preprocess(self, inputs, prompt: str | None = None, **kwargs) -> dict:
        for i, text in enumerate(inputs):
            if not isinstance(text, str):
                raise TypeError(f"SimSkipTransformer embeds text: inputs[{i}] is a {type(text).__name__}, not a str")
        texts = [prompt + text for text in inputs] if prompt else list(inputs)
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        )
        return dict(tokens)

    def forward(self, features: dict, **kwargs) -> dict:
        x = self.model.head_inputs(
            features["input_ids"], features.get("attention_mask"), features.get("token_type_ids")
        )  # (batch, d) or (batch, 1 + L, d)
        features["sentence_embedding"] = self.model.head.embed(x)  # (batch, output_dim)
        return features

    def get_embedding_dimension(self) -> int:
        return self.model.config.output_dim

    def get_sentence_embedding_dimension(self) -> int:  # the name before sentence-transformers 6
        return self.model.config.output_dim

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.model.save_pretrained(output_path)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token=None,
        cache_folder=None,
        revision=None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        model_kwargs: dict | None = None,
        backend: str = "torch",
        **kwargs,
    ) -> SimSkipTransformer:
        if backend != "torch":
            raise ValueError(f"SimSkipTransformer runs on the torch backend only, got backend={backend!r}")
        hub = {"token": token, "cache_dir": cache_folder, "revision": revision, "local_files_only": local_files_only}
        if subfolder:
            hub["subfolder"] = subfolder
        model = SimSkipModel.from_pretrained(
            model_name_or_path, trust_remote_code=trust_remote_code, **hub, **(model_kwargs or {})
        )
        return cls(model.eval())


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


__all__ = ["SimSkipTransformer", "SimSkipModule"]
