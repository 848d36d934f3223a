"""Optional stage 0: unsupervised SimCSE fine-tuning of the backbone itself (Gao et al. 2021).

The same sentence goes twice through the backbone in train mode; dropout is the only augmentation;
InfoNCE over in-batch negatives at temperature 0.05. Small on purpose: a warm-up for the backbone
before the embeddings are cached, not a reproduction of SimCSE's training (no MLM, no large batch).
"""

from __future__ import annotations

import hashlib
import json

import torch
import torch.nn.functional as F
from accelerate.logging import get_logger

from ..models.simskip.pooling import pool

logger = get_logger(__name__)


def simcse_settings_key(
    steps: int, lr: float, batch_size: int, temperature: float, seed: int, fingerprint: str
) -> dict:
    """What decides the fine-tuned weights; goes into the embedding cache key."""
    settings = {
        "simcse_steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "temperature": temperature,
        "seed": seed,
        "corpus": fingerprint,
    }
    return {"stage0": hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest(), **settings}


def simcse_finetune(
    model,
    sentences: list[str],
    steps: int,
    accelerator,
    lr: float = 3e-5,
    batch_size: int = 64,
    temperature: float = 0.05,
    seed: int = 42,
) -> list[float]:
    """Fine-tune ``model.encoder`` in place for ``steps`` steps; returns the losses. The backbone is
    frozen again (eval mode, no gradients) afterwards."""
    if steps <= 0:
        return []
    if len(sentences) < 2:
        raise ValueError(f"SimCSE needs at least 2 sentences for in-batch negatives, got {len(sentences)}")
    encoder, tok, cfg = model.encoder, model.tokenizer, model.config
    encoder.requires_grad_(True)
    encoder.train()  # dropout on: the two passes differ only by their dropout masks
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr)
    wrapped, optimizer = accelerator.prepare(encoder, optimizer)
    g = torch.Generator().manual_seed(seed + accelerator.process_index)
    losses = []
    for step in range(steps):
        idx = torch.randint(len(sentences), (min(batch_size, len(sentences)),), generator=g).tolist()
        feats = tok(
            [sentences[i] for i in idx],
            padding=True,
            truncation=True,
            max_length=cfg.max_seq_length,
            return_tensors="pt",
        ).to(accelerator.device)
        feats = {k: torch.cat([v, v]) for k, v in feats.items()}  # each sentence twice: (2B, seq)
        out = wrapped(**feats)
        z = pool(cfg.pooling, out.last_hidden_state, feats["attention_mask"], getattr(out, "pooler_output", None))
        z1, z2 = F.normalize(z.float(), dim=-1).chunk(2)  # (B, d) each
        logits = z1 @ z2.T / temperature  # (B, B): positives on the diagonal
        loss = F.cross_entropy(logits, torch.arange(z1.shape[0], device=logits.device))
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if step % 10 == 0 or step == steps - 1:
            logger.info("SimCSE step %d/%d: loss %.4f", step + 1, steps, losses[-1], main_process_only=True)
    model.encoder = accelerator.unwrap_model(wrapped)
    model.encoder.requires_grad_(not cfg.freeze_encoder)
    model.encoder.eval()
    return losses
