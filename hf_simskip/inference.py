"""encode() and refine(): batched inference with input checks that name what came.

Self-contained (the Hub copies it beside modeling_simskip.py): torch, transformers and the
standard library only (numpy arrays come in and go out through torch's own conversion).
"""
from __future__ import annotations

import logging

import torch
from transformers.utils.logging import tqdm

logger = logging.getLogger(__name__)


def _check_sentences(sentences) -> list[str]:
    if isinstance(sentences, str):
        return [sentences]
    if not isinstance(sentences, (list, tuple)):
        raise TypeError(f"sentences must be a str or a list of str, got {type(sentences).__name__}")
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(f"sentences[{i}] must be a str, got {type(s).__name__}: {s!r:.80}")
    return list(sentences)


def _finish(chunks: list[torch.Tensor], order: list[int], width: int, convert_to_numpy: bool):
    out = torch.cat(chunks) if chunks else torch.zeros(0, width)
    restored = torch.empty_like(out)
    restored[torch.tensor(order, dtype=torch.long)] = out  # undo the length sort
    return restored.float().cpu().numpy() if convert_to_numpy else restored


def encode_sentences(model, sentences, batch_size=32, normalize_embeddings=None, convert_to_numpy=True,
                     show_progress_bar=None, device=None):
    single = isinstance(sentences, str)
    sentences = _check_sentences(sentences)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if model.tokenizer is None:
        raise ValueError("this model has no tokenizer: load it from a folder saved with one, or set model.tokenizer")
    if show_progress_bar is None:
        show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
    device = torch.device(device) if device is not None else model.device
    order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))  # longest first, like ST
    was_training = model.training
    model.eval()
    chunks = []
    try:
        with torch.inference_mode():
            for start in tqdm(range(0, len(order), batch_size), desc="Batches", disable=not show_progress_bar):
                batch = [sentences[i] for i in order[start:start + batch_size]]
                feats = model.tokenizer(batch, padding=True, truncation=True, max_length=model.config.max_length,
                                        return_tensors="pt").to(device)
                x = model.embed(feats["input_ids"], feats["attention_mask"], feats.get("token_type_ids"))
                z, refined = model.head.refine(x)
                chunks.append(model.postprocess(refined, z, normalize_embeddings))
    finally:
        model.train(was_training)
    out = _finish(chunks, order, model.config.output_dim, convert_to_numpy)
    return out[0] if single else out


def _as_tensor(embeddings, dim: int) -> tuple[torch.Tensor, bool]:
    is_tensor = isinstance(embeddings, torch.Tensor)
    try:
        x = embeddings if is_tensor else torch.as_tensor(embeddings)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"embeddings must be a (n, {dim}) array or tensor, got {type(embeddings).__name__}") from err
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"embeddings must hold numbers, got dtype {x.dtype}")
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"embeddings must have shape (n, {dim}) for this head, got {tuple(x.shape)}")
    bad = ~torch.isfinite(x.float()).all(dim=1)
    if bad.any():
        rows = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(f"embeddings contain NaN or Inf in {int(bad.sum())} row(s), first: {rows}")
    return x, is_tensor


def refine_array(model, embeddings, batch_size=4096, normalize_embeddings=None):
    x, is_tensor = _as_tensor(embeddings, model.config.embedding_dim)
    was_training = model.training
    model.eval()
    chunks = []
    try:
        with torch.inference_mode():
            for start in range(0, x.shape[0], batch_size):
                xb = x[start:start + batch_size].to(model.device, torch.float32)
                z, refined = model.head.refine(xb)
                chunks.append(model.postprocess(refined, z, normalize_embeddings))
    finally:
        model.train(was_training)
    out = torch.cat(chunks) if chunks else torch.zeros(0, model.config.output_dim)
    return out if is_tensor else out.cpu().numpy()
