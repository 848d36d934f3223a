"""The process a training run finds itself in: CPU threads and GPUs under a launcher.

Two launcher behaviours need correcting for this workload, whose cost is mostly the backbone encoding
the corpus:

- ``accelerate launch`` (and ``torchrun``) set ``OMP_NUM_THREADS=1`` in every process unless the user
  chose a value, so one process on a CPU machine would use one core. :func:`cpu_threads` gives each
  local process its share of the cores instead, unless the user set ``OMP_NUM_THREADS`` or
  ``--num_cpu_threads_per_process`` (seen in the launcher's own environment and command line), which
  still wins.
- With ``ACCELERATE_USE_CPU=1`` on a machine with GPUs, accelerate's barrier names a CUDA device per
  local rank (``device_ids=[local_rank]``), which fails on a machine with fewer GPUs than processes.
  :func:`hide_gpus_for_cpu_runs` hides the GPUs from a CPU run before CUDA is initialised.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)
TRUE = ("1", "true", "yes", "y", "on")


def hide_gpus_for_cpu_runs() -> bool:
    """Set CUDA_VISIBLE_DEVICES="" when the launcher asked for a CPU run (ACCELERATE_USE_CPU); call it
    before anything initialises CUDA. Returns whether it did."""
    if os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in TRUE:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return True
    return False


def _launcher_chose_threads() -> bool:
    """True when OMP_NUM_THREADS was set by a launcher (not by the user): the parent process (the
    launcher) had no OMP_NUM_THREADS in its environment and no --num_cpu_threads_per_process option."""
    if "OMP_NUM_THREADS" not in os.environ:
        return False
    launched = any(k in os.environ for k in ("ACCELERATE_DYNAMO_BACKEND", "TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE"))
    if not launched:
        return False  # the user set it, e.g. `OMP_NUM_THREADS=1 python recipes/train_simcse_skip.py`
    try:
        import psutil
    except ImportError:
        return False  # cannot tell: leave the launcher's choice alone
    try:
        parent = psutil.Process(os.getppid())
        for proc in [parent, *parent.parents()[:2]]:  # accelerate launch -> (torchrun agent) -> this process
            if "OMP_NUM_THREADS" in proc.environ():
                return False
            if any(arg.startswith("--num_cpu_threads_per_process") for arg in proc.cmdline()):
                return False
    except (OSError, psutil.Error):
        return False
    return True


def cpu_threads(device_type: str) -> int | None:
    """On a CPU run, set torch's intra-op threads to cores / local processes when only a launcher's
    default limited them; returns the number set, or None when nothing was changed."""
    import torch

    if device_type != "cpu" or not _launcher_chose_threads():
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    threads = max(1, cores // max(local, 1))
    if threads == torch.get_num_threads():
        return None
    torch.set_num_threads(threads)
    logger.info(
        "the launcher set OMP_NUM_THREADS=%s; using %d threads per process (%d cores, %d local processes)",
        os.environ["OMP_NUM_THREADS"],
        threads,
        cores,
        local,
    )
    return threads


__all__ = ["hide_gpus_for_cpu_runs", "cpu_threads"]
