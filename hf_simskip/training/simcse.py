"""Optional stage 0: unsupervised SimCSE fine-tuning of the backbone itself (Gao et al. 2021).

The same sentence goes twice through the backbone in train mode; dropout is the only augmentation;
InfoNCE over in-batch negatives at temperature 0.05. Small on purpose: a warm-up for the backbone
before the embeddings are cached, not a reproduction of SimCSE's training (no MLM, no large batch).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from accelerate.logging import get_logger

from ..models.simskip.pooling import pool

logger = get_logger(__name__)


@dataclass
class Stage0Arguments:
    """Optional stage 0: unsupervised SimCSE fine-tuning of the backbone before its embeddings are cached."""

    simcse_steps: int = field(
        default=0, metadata={"help": "stage 0: unsupervised SimCSE steps on the backbone; 0: none"}
    )
    simcse_learning_rate: float = field(default=3e-5, metadata={"help": "stage 0: AdamW learning rate"})
    simcse_batch_size: int = field(default=64, metadata={"help": "stage 0: sentences per step (in-batch negatives)"})
    simcse_temperature: float = field(default=0.05, metadata={"help": "stage 0: InfoNCE temperature"})

    def validate(self) -> None:
        if not isinstance(self.simcse_steps, int) or self.simcse_steps < 0:
            raise ValueError(f"simcse_steps must be an int >= 0, got {self.simcse_steps!r}")
        for name in ("simcse_learning_rate", "simcse_temperature"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not isinstance(self.simcse_batch_size, int) or self.simcse_batch_size < 2:
            raise ValueError(
                f"simcse_batch_size must be an int >= 2 (in-batch negatives), got {self.simcse_batch_size!r}"
            )

    def settings_key(self, seed: int, fingerprint: str) -> dict | None:
        """What decides the fine-tuned weights (None without stage 0); recorded with the run and its caches."""
        if self.simcse_steps <= 0:
            return None
        settings = {**asdict(self), "seed": seed, "corpus": fingerprint}
        return {"stage0": hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest(), **settings}


def simcse_finetune(model, sentences: list[str], args: Stage0Arguments, accelerator, seed: int = 42) -> list[float]:
    """Fine-tune ``model.encoder`` in place for ``steps`` steps; returns the losses. The backbone is
    frozen again (eval mode, no gradients) afterwards."""
    steps, batch_size, temperature = args.simcse_steps, args.simcse_batch_size, args.simcse_temperature
    if steps <= 0:
        return []
    if len(sentences) < 2:
        raise ValueError(f"SimCSE needs at least 2 sentences for in-batch negatives, got {len(sentences)}")
    encoder, tok, cfg = model.encoder, model.tokenizer, model.config
    encoder.requires_grad_(True)
    encoder.train()  # dropout on: the two passes differ only by their dropout masks
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=args.simcse_learning_rate)
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
