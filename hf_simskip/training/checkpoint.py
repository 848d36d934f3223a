"""Atomic checkpoints for the head training loop (accelerate's save_state/load_state underneath).

Layout under ``<output_dir>/checkpoints``: ``step_{n}/`` (accelerate's state + ``trainer_state.json`` +
``augmentation_rng_{rank}.pt`` + ``best_head.pt``, the weights of the dev selection's best candidate so far, so a
checkpoint resumed from any folder still ends with the best head) and a ``latest`` pointer file. A checkpoint is written as
``step_{n}.tmp``, renamed once complete, and only then does ``latest`` move (tmp file + os.replace), so a
crash while saving leaves the previous checkpoint as ``latest``.

Every checkpoint belongs to a run: ``trainer_state.json`` holds the run's fingerprint (a sha256 of what
decides the trajectory: the training arguments, the head, the data) and the configuration behind it.
Only the run's own checkpoints are pruned or resumed; resuming another configuration's checkpoint is
an error that names what differs.

**Several machines.** Every process writes its own files (``random_states_{rank}.pkl``,
``augmentation_rng_{rank}.pt``) into the folder it sees. The files of the whole run (accelerate's model, optimizer
and scheduler states, ``best_head.pt``, ``trainer_state.json``, the rename, ``latest`` and the pruning) are written by
one process per disk (:func:`disk_writer`): the global main process when every process sees the same
``checkpoints`` folder (a shared disk: nothing is written twice), else the local main process of every node, into
its node's folder, so that every node can resume from its own ``output_dir``. Found out at each save, as the
embedding cache does (a marker file, then which processes see which). A resume agrees across processes: it loads
the newest checkpoint that is complete on every node (a node killed between the save and its rename falls back with
the others), and a checkpoint that cannot be read on one process makes every process try the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate.logging import get_logger

from ..files import write_text

logger = get_logger(__name__)
STATE_FILE = "trainer_state.json"
# what does not change the weights a run ends with: left out of its fingerprint
NOT_IN_FINGERPRINT = (
    "output_dir",
    "overwrite_output_dir",
    "resume_from_checkpoint",
    "logging_steps",
    "checkpointing_steps",
    "save_total_limit",
)
BEST_FILE = "best_head.pt"  # in each checkpoint; at the top level (hf_simskip <= 0.2) it is never read


@dataclass
class TrainState:
    """What a checkpoint keeps of a run besides the weights, the optimiser and the RNGs (trainer_state.json).

    The dev selection's candidates are the untrained identity (``"identity"``: u = 0, f the identity with
    zero-init), the head as initialised (``"initial"``: the closed form of a layer-aware head) and every
    evaluated training step (``"trained"``); ``best_candidate`` names the one kept so far."""

    global_step: int = 0
    batches_seen: int = 0
    best_metric: float | None = None  # the kept candidate's reported dev score
    best_key: list | None = None  # what the selection compares (DevScore.key), larger is better
    best_step: int | None = None
    best_candidate: str | None = None
    best_layer_scale: float | None = None  # the weight of u the kept candidate was scored at
    initial_dev_score: float | None = None
    dev_scores: dict = field(default_factory=dict)  # candidate label -> reported dev score
    dev_details: dict = field(default_factory=dict)  # candidate label -> the weight and every split's Spearman
    run_fingerprint: str = ""
    run_config: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, saved: dict) -> TrainState:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in saved.items() if k in known})


def checkpoints_dir(output_dir) -> Path:
    return Path(output_dir) / "checkpoints"


def run_config(args, head, embeddings, extra: dict | None = None) -> dict:
    """What decides the trajectory of a run: the training arguments (but output/logging/checkpoint
    placement), the head's parameter shapes and mode, the data's shape and a sample of its values, and
    ``extra`` (the recipe adds the architecture config and the corpus fingerprint)."""
    module = getattr(head, "module", head)
    sample = torch.as_tensor(embeddings[:: max(1, len(embeddings) // 1024)]).detach().float().cpu().contiguous()
    return {
        "args": {k: v for k, v in asdict(args).items() if k not in NOT_IN_FINGERPRINT},
        "head": {k: list(v.shape) for k, v in module.state_dict().items()},
        "data": {
            "shape": list(embeddings.shape),
            "sample_sha256": hashlib.sha256(sample.numpy().tobytes()).hexdigest(),
        },
        "extra": extra or {},
    }


def fingerprint(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _read_state(path: Path) -> dict | None:
    try:
        return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def list_checkpoints(output_dir, run_fingerprint: str | None = None) -> list[Path]:
    """Complete checkpoints (``step_{n}`` folders with a readable trainer state), oldest first; ``.tmp``
    ignored. With ``run_fingerprint``: only the checkpoints of that run."""
    root = checkpoints_dir(output_dir)
    found = []
    for p in root.glob("step_*") if root.is_dir() else []:
        step = p.name[len("step_") :]
        state = _read_state(p) if step.isdigit() else None
        if state is not None and (run_fingerprint is None or state.get("run_fingerprint") == run_fingerprint):
            found.append((int(step), p))
    return [p for _, p in sorted(found)]


def _differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(saved) | set(current))
    out = []
    for k in keys:
        a, b = saved.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def _check_belongs(path: Path, state: dict, run_fp: str, config: dict) -> None:
    if state.get("run_fingerprint") != run_fp:
        diff = _differences(state.get("run_config") or {}, config) or ["(no configuration recorded)"]
        raise ValueError(
            f"checkpoint {path} was saved by a run with another configuration, so it cannot be resumed by "
            f"this one; differences (saved -> now): {'; '.join(diff[:8])}. Use the run's own arguments, "
            "another output_dir, or overwrite_output_dir to start over"
        )


def resolve_checkpoint(spec: str, output_dir, run_fp: str | None = None, config: dict | None = None) -> list[Path]:
    """The checkpoints to try, best first: ``latest`` -> the folder the pointer names (when complete and of
    this run), then this run's other complete checkpoints, newest first (a corrupt one falls back to the
    previous); a path -> that folder only."""
    if spec != "latest":
        path = Path(spec)
        state = _read_state(path)
        if state is None:
            raise ValueError(
                f"resume_from_checkpoint={spec!r}: expected 'latest' or a checkpoint folder holding "
                f"{STATE_FILE}, got a path without one"
            )
        if run_fp is not None:
            _check_belongs(path, state, run_fp, config or {})
        return [path]
    mine = list_checkpoints(output_dir, run_fp)
    if not mine and run_fp is not None:
        others = list_checkpoints(output_dir)
        if others:  # complete checkpoints exist, none of this run
            _check_belongs(others[-1], _read_state(others[-1]), run_fp, config or {})
    pointer = checkpoints_dir(output_dir) / "latest"
    if pointer.is_file():
        target = checkpoints_dir(output_dir) / pointer.read_text(encoding="utf-8").strip()
        if target in mine:
            return [target] + [p for p in reversed(mine) if p != target]
        logger.warning("the latest pointer names %s, which is incomplete: using the newest complete one", target)
    return list(reversed(mine))


def _gather(accelerator, value) -> list:
    """Every process's ``value``, in process order (``[value]`` with one process)."""
    if accelerator.num_processes == 1:
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])


def _from_main(accelerator, value):
    """The main process's ``value`` on every process."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value if accelerator.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


PROBE = ".writer-probe-"
_told: set[tuple[str, bool]] = set()  # (folder, shared) already logged


def disk_writers(accelerator, folder) -> list[int]:
    """For every process (in rank order), the rank that writes the run's files into the copy of ``folder`` that this
    process sees: the lowest-ranked local main process whose marker file it sees in ``folder``. On one disk shared by
    all that is process 0 for everyone; with a disk per node it is every node's local main process (nodes that share
    a disk among themselves share its writer too). Collective: every process must call it. ``folder`` is created."""
    folder, rank = Path(folder), accelerator.process_index
    if accelerator.num_processes == 1:
        return [rank]
    token = _from_main(accelerator, uuid.uuid4().hex[:12])
    marker = folder / f"{PROBE}{token}-{rank}"
    if accelerator.is_local_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text("written to find out which processes share this folder; removed at once\n")
    accelerator.wait_for_everyone()
    prefix = f"{PROBE}{token}-"
    # listdir rather than exists(): it refreshes a network file system's view of the folder
    seen = [int(n[len(prefix) :]) for n in os.listdir(folder) if n.startswith(prefix)] if folder.is_dir() else []
    writers = _gather(accelerator, min(seen) if seen else None)
    accelerator.wait_for_everyone()
    if accelerator.is_local_main_process:
        marker.unlink(missing_ok=True)
    blind = [r for r, w in enumerate(writers) if w is None]
    if blind:
        raise ValueError(
            f"process {blind[0]} does not see the folder {str(folder)!r} that the first process of its node writes to: "
            "every process of a node must be given the same output_dir"
        )
    return writers


def disk_writer(accelerator, folder) -> bool:
    """Whether this process writes the run's files into its copy of ``folder`` (see :func:`disk_writers`)."""
    writers = disk_writers(accelerator, folder)
    shared = len(set(writers)) == 1
    if (str(folder), shared) not in _told and accelerator.is_main_process and accelerator.num_processes > 1:
        _told.add((str(folder), shared))
        how = "shared by every process: process 0 writes" if shared else "not shared by all nodes: each node writes"
        logger.info("%s is %s the run's files (ranks %s)", folder, how, sorted(set(writers)))
    return writers[accelerator.process_index] == accelerator.process_index


def save_checkpoint(
    accelerator, output_dir, state: dict, generator: torch.Generator, total_limit: int | None, best_weights=None
):
    """Save model/optimizer/scheduler/RNG (accelerate) + the augmentation generator + ``state`` + the best
    candidate's weights (``best_weights``, a state_dict or None) atomically; keep the last ``total_limit``
    checkpoints of this run (state["run_fingerprint"]). With a disk per node, every node's local main process
    writes its node's copy (module docstring)."""
    root = checkpoints_dir(output_dir)
    final = root / f"step_{state['global_step']}"
    tmp = root / f"step_{state['global_step']}.tmp"
    writes = disk_writer(accelerator, root)
    if writes:
        shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a crash during an earlier save
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    # accelerate writes the model, optimizer and scheduler from the main process, or (save_on_each_node) from every
    # local main process: from exactly this disk's writer, then
    config = accelerator.project_configuration
    each_node, config.save_on_each_node = config.save_on_each_node, writes
    try:
        accelerator.save_state(str(tmp))
    finally:
        config.save_on_each_node = each_node
    torch.save(generator.get_state(), tmp / f"augmentation_rng_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if writes:
        if best_weights is not None:
            torch.save(best_weights, tmp / BEST_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")  # written last: completeness mark
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_text(root / "latest", final.name)
        if total_limit:
            for old in list_checkpoints(output_dir, state.get("run_fingerprint"))[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        if not accelerator.is_main_process:
            logger.info("saved this node's copy of %s", final, main_process_only=False)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path, generator: torch.Generator) -> tuple[dict, dict | None]:
    """Restore what save_checkpoint wrote; returns (the trainer state (global_step, batches_seen, ...), the best
    candidate's weights or None)."""
    rng = path / f"augmentation_rng_{accelerator.process_index}.pt"
    if not rng.is_file():
        raise ValueError(f"checkpoint {path} has no {rng.name}: it was saved with a different number of processes")
    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    best = torch.load(path / BEST_FILE, map_location="cpu", weights_only=True) if (path / BEST_FILE).is_file() else None
    if state.get("best_metric") is not None and best is None:
        raise ValueError(f"checkpoint {path} records a best dev score but has no {BEST_FILE}: it is incomplete")
    accelerator.load_state(str(path))
    generator.set_state(torch.load(rng, weights_only=True))
    return state, best


def _agreed(accelerator, candidates: list[Path], output_dir) -> list[Path]:
    """The candidates (this process's paths) that every process has, in the main process's order of preference.
    With a disk per node a node killed between a save and its rename lacks the newest checkpoint: all fall back."""
    names = _gather(accelerator, [p.name for p in candidates])
    common = [n for n in names[0] if all(n in other for other in names)]
    if any(names) and not common:
        have = "; ".join(f"process {r}: {', '.join(n) or 'none'}" for r, n in enumerate(names))
        raise ValueError(
            f"no checkpoint in {checkpoints_dir(output_dir)} is complete on every node ({have}): copy one to every "
            "node's output_dir, or start over in another output_dir"
        )
    if common[:1] != names[0][:1]:
        logger.warning(
            "checkpoint %s is not complete on every node: every process resumes from %s",
            names[0][0],
            common[0],
            main_process_only=True,
        )
    mine = {p.name: p for p in candidates}
    return [mine[n] for n in common]


def resume_state(resume_from, output_dir, accelerator, generator, run_fp: str, config: dict):
    """(TrainState, torch RNG state as saved or None when starting fresh, the best candidate's weights or None).
    Every process resumes from the same step: the newest checkpoint of this run complete on every node; one that
    fails to load on any process (a truncated file) is reported and every process tries the previous one.
    Collective (an error on one process is raised on every process)."""
    state = TrainState(run_fingerprint=run_fp, run_config=config)
    if not resume_from:
        return state, None, None
    try:
        candidates, failure = resolve_checkpoint(resume_from, output_dir, run_fp, config), None
    except ValueError as err:
        candidates, failure = [], str(err)
    failures = [f for f in _gather(accelerator, failure) if f]
    if failures:
        raise ValueError(failures[0])
    candidates = _agreed(accelerator, candidates, output_dir)
    if not candidates:
        logger.warning("no checkpoint to resume from in %s: starting fresh", output_dir, main_process_only=True)
        return state, None, None
    errors = []
    for path in candidates:
        outcome = None
        try:
            loaded, best = load_checkpoint(accelerator, path, generator)
        except ValueError as err:
            outcome = ("refused", str(err))
        except Exception as err:  # noqa: BLE001 (any unreadable file: torch, safetensors, pickle, OS errors)
            outcome = ("unreadable", f"{type(err).__name__}: {err}")
        outcomes = _gather(accelerator, outcome)
        refused = [msg for o in outcomes if o and o[0] == "refused" for msg in o[1:]]
        if refused:
            raise ValueError(refused[0])
        unreadable = [(r, o[1]) for r, o in enumerate(outcomes) if o]
        if unreadable:
            r, msg = unreadable[0]
            where = f" on process {r}" if accelerator.num_processes > 1 else ""
            errors.append(f"{path.name}{where}: {msg}")
            logger.warning(
                "checkpoint %s could not be loaded%s (%s); trying the previous one",
                path,
                where,
                msg,
                main_process_only=True,
            )
            continue
        if accelerator.is_local_main_process:  # one line per machine: each may have read its own copy
            logger.info("resumed from %s at step %d", path, loaded["global_step"], main_process_only=False)
        # the torch RNG as saved (accelerate restored it): dropout draws from it
        return TrainState.from_dict({**asdict(state), **loaded}), torch.get_rng_state(), best
    raise ValueError(f"no checkpoint in {checkpoints_dir(output_dir)} could be loaded: {'; '.join(errors)}")


def finished_run(output_dir) -> list[str]:
    """What marks ``output_dir`` as holding a finished run: ``final`` and/or ``metrics.json`` (empty: none)."""
    out = Path(output_dir)
    return [name for name in ("final", "metrics.json") if (out / name).exists()]


def check_output_dir(output_dir, overwrite: bool, resume_from: str | None = None) -> None:
    """Before any work (read-only): a finished run in ``output_dir`` (final/ or metrics.json) is replaced only when
    ``overwrite`` is set, or by resuming one of the checkpoints in that folder (``resume_from``: "latest", or a
    checkpoint folder under ``<output_dir>/checkpoints``; whether it is this run's is checked when it is loaded).
    A finished folder without a checkpoint has nothing to resume: resuming it would be a new run replacing it.
    The folder must be writable."""
    out = Path(output_dir)
    finished = finished_run(out)
    if finished and not overwrite:
        what = f"output_dir {str(out)!r} already holds a finished run ({', '.join(finished)})"
        fix = "pass --overwrite_output_dir true to replace it at the end of a new run, or choose another output_dir"
        if not resume_from:
            raise ValueError(f"{what}; {fix}")
        if resume_from == "latest" and not list_checkpoints(out):
            raise ValueError(f"{what} and no checkpoint: it is finished, there is nothing to resume; {fix}")
        if resume_from != "latest" and not _inside(Path(resume_from), checkpoints_dir(out)):
            raise ValueError(
                f"{what}, and resume_from_checkpoint {str(resume_from)!r} lies outside it: resuming would replace that "
                f"run with another; {fix}"
            )
    check_writable(out, "output_dir")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _identity(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_dev, st.st_ino


def earlier_run(output_dir) -> dict[str, tuple[int, int]]:
    """What an earlier run left in ``<output_dir>/checkpoints``, taken before a run that replaces it starts: each
    entry's name -> its (device, inode). A checkpoint the new run saves under the same name is a new folder (written
    beside, then renamed over the old one), so it no longer matches; :func:`remove_earlier_run` removes the rest."""
    root = checkpoints_dir(output_dir)
    return {p.name: _identity(p) for p in root.iterdir()} if root.is_dir() else {}


def remove_earlier_run(output_dir, before: dict[str, tuple[int, int]], keep_run: str | None = None) -> list[str]:
    """Once a run that replaces an earlier one (``--overwrite_output_dir``) has put its final/ and records in
    place: remove what the earlier run left that this run did not replace, i.e. the entries of ``before`` (see
    :func:`earlier_run`) that are still the same files, but the complete checkpoints of run ``keep_run`` (the
    fingerprint of a resumed run: its own earlier checkpoints), and the top-level best_head.pt of hf_simskip <= 0.2.
    The ``latest`` pointer goes when it names a checkpoint that is gone, ``checkpoints/`` when it is empty.
    Returns the removed paths, relative to ``output_dir``."""
    out, root, removed = Path(output_dir), checkpoints_dir(output_dir), []

    def remove(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(str(path.relative_to(out)))

    for name, identity in sorted(before.items()):
        path = root / name
        if name == "latest" or not path.exists() or _identity(path) != identity:
            continue  # the pointer is judged below; a replaced entry is this run's
        state = _read_state(path) if keep_run is not None else None
        if state is not None and state.get("run_fingerprint") == keep_run:
            continue
        remove(path)
    pointer = root / "latest"
    if pointer.is_file() and not (root / pointer.read_text(encoding="utf-8").strip()).is_dir():
        remove(pointer)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
        removed.append(root.name)
    if (out / BEST_FILE).is_file():
        remove(out / BEST_FILE)
    return removed


def check_writable(folder, what: str) -> None:
    """Create ``folder`` if needed and prove that a file can be written in it; ValueError otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # unique across machines: processes of two nodes on one shared disk can have the same pid
        probe = folder / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"{what} {str(folder)!r} is not writable: {err}") from err
