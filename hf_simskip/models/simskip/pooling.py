"""Pooling of backbone outputs and reading a sentence-transformers pipeline from its folder.

Self-contained (the Hub copies it beside modeling_simskip.py): torch and the standard library only.
"""

from __future__ import annotations

import json
import os

import torch

ST_POOLING_KEYS = {  # sentence-transformers Pooling config key -> our pooling name
    "pooling_mode_cls_token": "cls_before_pooler",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_lasttoken": "last",
}


def pool(
    mode: str, last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, pooler_output: torch.Tensor | None = None
) -> torch.Tensor:
    """(batch, seq, d) token states -> (batch, d), as sentence-transformers / SimCSE pool them. Under autocast the
    states (float16/bfloat16) are pooled in float32: a mean over a sentence's tokens summed in bfloat16 loses
    digits that float32 keeps, and the pooled rows are all that is cached of the backbone."""
    last_hidden_state = _float32_under_autocast(last_hidden_state)
    pooler_output = _float32_under_autocast(pooler_output)
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)  # (batch, seq, 1)
    if mode == "cls":
        if pooler_output is None:
            raise ValueError("pooling='cls' needs the backbone's pooler output; this backbone has no pooler")
        return pooler_output
    if mode == "cls_before_pooler":
        return last_hidden_state[:, 0]
    if mode in ("mean", "mean_sqrt_len"):
        summed = (last_hidden_state * mask).sum(1)  # (batch, d)
        counts = mask.sum(1).clamp(min=1e-9)  # (batch, 1)
        return summed / (counts if mode == "mean" else counts.sqrt())
    if mode == "max":
        masked = last_hidden_state.masked_fill(mask == 0, torch.finfo(last_hidden_state.dtype).min)
        return masked.max(1).values
    if mode == "last":
        last = attention_mask.sum(1).long() - 1  # right padding: index of the last real token
        return last_hidden_state[torch.arange(last_hidden_state.shape[0]), last]
    raise ValueError(f"unknown pooling {mode!r}")


def _float32_under_autocast(states: torch.Tensor | None) -> torch.Tensor | None:
    """``states`` upcast to float32 when autocast made them float16/bfloat16; else as they are (a model cast to half
    on purpose, without autocast, keeps its dtype end to end)."""
    if states is None or states.dtype not in (torch.float16, torch.bfloat16):
        return states
    return states.float() if torch.is_autocast_enabled(states.device.type) else states


def pool_layers(mode: str, hidden_states, attention_mask: torch.Tensor, layers) -> torch.Tensor:
    """The chosen hidden states (``hidden_states[k]`` for k in ``layers``: 0 = the embedding layer's
    output, n = the last layer), each pooled as ``mode`` says: (batch, len(layers), d). Not normalised."""
    pooled = [pool(mode, hidden_states[k], attention_mask) for k in layers]  # each (batch, d)
    return torch.stack(pooled, dim=1)


def read_sentence_transformers(fetch) -> dict | None:
    """Read a sentence-transformers pipeline through ``fetch(relative_path) -> local file or None``
    (a local folder or a Hub repo): the transformer sub-folder, pooling, normalisation and
    max_seq_length. None when there is no modules.json (not a sentence-transformers model)."""
    modules_file = fetch("modules.json")
    if modules_file is None:
        return None
    modules = _read_json(modules_file)
    info = {"subfolder": "", "pooling": None, "normalize": False, "max_seq_length": None}
    for module in modules:
        kind = module.get("type", "").rsplit(".", 1)[-1]
        sub = module.get("path", "").strip("/")
        prefix = f"{sub}/" if sub else ""
        if kind == "Transformer":
            info["subfolder"] = sub
            info["max_seq_length"] = _read_json(fetch(prefix + "sentence_bert_config.json")).get("max_seq_length")
        elif kind == "Pooling":
            info["pooling"] = _st_pooling_mode(_read_json(fetch(prefix + "config.json")), prefix + "config.json")
        elif kind == "Normalize":
            info["normalize"] = True
        else:
            raise ValueError(
                f"modules.json: module type {module.get('type')!r} is not supported; expected "
                "Transformer, Pooling and Normalize modules only"
            )
    if info["pooling"] is None:
        raise ValueError("modules.json has no Pooling module; pass pooling= explicitly")
    return info


def local_fetch(folder: str):
    """``fetch`` for a local folder."""

    def fetch(rel: str):
        file = os.path.join(folder, rel)
        return file if os.path.isfile(file) else None

    return fetch


def _read_json(file) -> dict:
    if file is None:
        return {}
    with open(file, encoding="utf-8") as fh:
        return json.load(fh)


def _st_pooling_mode(cfg: dict, where: str) -> str:
    if isinstance(cfg.get("pooling_mode"), str):  # newer sentence-transformers write one key
        name = cfg["pooling_mode"]
        return {"cls": "cls_before_pooler", "lasttoken": "last", "mean_sqrt_len_tokens": "mean_sqrt_len"}.get(
            name, name
        )
    chosen = [ours for key, ours in ST_POOLING_KEYS.items() if cfg.get(key)]
    if len(chosen) != 1:
        raise ValueError(f"{where}: expected exactly one pooling mode set, got {chosen or 'none'}")
    return chosen[0]
