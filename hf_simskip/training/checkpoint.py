"""Atomic checkpoints for the head training loop (accelerate's save_state/load_state underneath).

Layout under ``<output_dir>/checkpoints``: ``step_{n}/`` (accelerate's state + ``trainer_state.json`` +
``augmentation_rng_{rank}.pt``) and a ``latest`` pointer file. A checkpoint is written as
``step_{n}.tmp``, renamed with os.replace once complete, and only then does ``latest`` move (tmp file +
os.replace), so a crash while saving leaves the previous checkpoint as ``latest``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from accelerate.logging import get_logger

from ..files import write_text

logger = get_logger(__name__)
STEP_DIR = re.compile(r"^step_(\d+)$")
STATE_FILE = "trainer_state.json"


def checkpoints_dir(output_dir) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir) -> list[Path]:
    """Complete checkpoints (``step_{n}`` folders with a trainer state), oldest first; ``.tmp`` ignored."""
    root = checkpoints_dir(output_dir)
    found = (
        [
            (int(m.group(1)), p)
            for p in root.glob("step_*")
            if (m := STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()
        ]
        if root.is_dir()
        else []
    )
    return [p for _, p in sorted(found)]


def resolve_checkpoint(spec: str, output_dir) -> Path | None:
    """``latest`` -> the folder the pointer names (or the newest complete one); a path -> that folder."""
    if spec == "latest":
        pointer = checkpoints_dir(output_dir) / "latest"
        if pointer.is_file():
            target = checkpoints_dir(output_dir) / pointer.read_text(encoding="utf-8").strip()
            if (target / STATE_FILE).is_file():
                return target
            logger.warning("the latest pointer names %s, which is incomplete: using the newest complete one", target)
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(spec)
    if not (path / STATE_FILE).is_file():
        raise ValueError(
            f"resume_from_checkpoint={spec!r}: expected 'latest' or a checkpoint folder holding "
            f"{STATE_FILE}, got a path without one"
        )
    return path


def save_checkpoint(accelerator, output_dir, state: dict, generator: torch.Generator, total_limit: int | None):
    """Save model/optimizer/scheduler/RNG (accelerate) + the augmentation generator + ``state`` atomically."""
    root = checkpoints_dir(output_dir)
    final = root / f"step_{state['global_step']}"
    tmp = root / f"step_{state['global_step']}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a crash during an earlier save
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    torch.save(generator.get_state(), tmp / f"augmentation_rng_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")  # written last: completeness mark
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_text(root / "latest", final.name)
        if total_limit:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path, generator: torch.Generator) -> dict:
    """Restore what save_checkpoint wrote; returns the trainer state (global_step, batches_seen, ...)."""
    accelerator.load_state(str(path))
    rng = path / f"augmentation_rng_{accelerator.process_index}.pt"
    if not rng.is_file():
        raise ValueError(f"checkpoint {path} has no {rng.name}: it was saved with a different number of processes")
    generator.set_state(torch.load(rng, weights_only=True))
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))


def resume_state(resume_from, output_dir, accelerator, generator):
    """(trainer state, torch RNG state to restore once the first batch is drawn or None)."""
    state = {"global_step": 0, "batches_seen": 0, "best_metric": None, "best_step": None}
    if not resume_from:
        return state, None
    path = resolve_checkpoint(resume_from, output_dir)
    if path is None:
        logger.warning("no checkpoint to resume from in %s: starting fresh", output_dir, main_process_only=True)
        return state, None
    state = load_checkpoint(accelerator, path, generator)
    logger.info("resumed from %s at step %d", path, state["global_step"], main_process_only=True)
    return state, torch.get_rng_state()  # as saved (accelerate restored it): dropout draws from it
