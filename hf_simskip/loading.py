"""Loading a saved SimSkip model by name for the command line and the evaluator, with one-line errors."""

from __future__ import annotations

import logging
import os


def load_simskip(model: str, device: str = "cpu"):
    """A SimSkipModel from a folder or Hub id, in eval mode; a clear error when it is neither."""
    from transformers.utils import logging as hf_logging

    from .models.simskip import SimSkipModel

    if not logging.getLogger().isEnabledFor(logging.INFO):
        hf_logging.disable_progress_bar()  # keep stderr for errors unless --verbose
    local = os.path.isdir(model)
    if not local and (model.startswith((".", "/", "~")) or model.count("/") != 1):
        raise FileNotFoundError(f"model folder {model!r} does not exist")
    if local and not os.path.isfile(os.path.join(model, "config.json")):
        raise FileNotFoundError(
            f"{model!r} has no config.json: expected a folder saved by SimSkipModel.save_pretrained"
        )
    try:
        return SimSkipModel.from_pretrained(model).to(device).eval()
    except OSError as err:
        where = "folder" if local else "folder, nor a reachable Hub repo"
        raise FileNotFoundError(
            f"could not load a SimSkip model from {model!r} (not a saved model {where}): {err}"
        ) from err
    except (ValueError, TypeError) as err:
        # our own refusals (missing tensors, a bad config.json) say what is wrong: pass them on, naming the folder
        message = " ".join(str(err).split())
        if model in message or str(os.path.abspath(model)) in message:
            raise
        raise type(err)(f"could not load a SimSkip model from {model!r}: {message}") from err
    except Exception as err:  # noqa: BLE001 (safetensors/torch errors of a truncated or corrupt weight file)
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(
            f"could not load the weights of {model!r} (a truncated or corrupt file?): {type(err).__name__}: {first_line}"
        ) from err


__all__ = ["load_simskip"]
