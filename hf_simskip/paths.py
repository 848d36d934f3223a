"""Where the SentEval-layout data folder is: explicit argument, else $HF_SIMSKIP_DATA, else
../shared/data/senteval (relative to the working directory or to this checkout) when it exists."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "HF_SIMSKIP_DATA"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_candidates() -> list[Path]:
    return [Path.cwd() / ".." / "shared" / "data" / "senteval", _REPO_ROOT / ".." / "shared" / "data" / "senteval"]


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Like :func:`resolve_data_dir`, but None (instead of an error) when no folder was named, neither as
    an argument nor in $HF_SIMSKIP_DATA, and none is at the default places. A folder that was named but
    does not exist is still an error."""
    if data_dir is None and not os.environ.get(ENV_VAR) and not any(c.is_dir() for c in default_data_candidates()):
        return None
    return resolve_data_dir(data_dir)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the data folder, or raise FileNotFoundError saying where it looked and how to fix it."""
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"data folder {str(path)!r} (given as an argument) does not exist")
        return path.resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"data folder {env!r} (from ${ENV_VAR}) does not exist")
        return path.resolve()
    for cand in default_data_candidates():
        if cand.is_dir():
            return cand.resolve()
    looked = ", ".join(str(c) for c in default_data_candidates())
    raise FileNotFoundError(
        f"no SentEval data folder: pass one explicitly, set ${ENV_VAR}, or place it at one of: {looked}. "
        "Download it with `python -m hf_simskip.evaluation.download --data-dir DIR`."
    )
