"""The embedded demo model: a ~0.85M-parameter Qwen2 that adds and subtracts, shipped as package data.

It is the default model whenever ``--model`` is not given, so reasonchat works with no GPU and no
network. ``reasonchat demo-model build`` rebuilds it (``reasonchat.training.demo``); this module only
locates it and never imports torch.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from reasonchat.errors import UserError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
BUILD_INFO, WEIGHTS_FILE = "build_info.json", "model.safetensors"
# How a conversation names this model: its path belongs to one install, often a temporary one
# (uvx, pipx run, a throwaway virtualenv), and means nothing once that is gone.
LABEL = "demo model"
# Where any install keeps the weights: .../reasonchat/demo_model/weights (site-packages or a checkout).
_INSTALLED_PARTS = ("reasonchat", "demo_model", "weights")


def names_this_model(model: str) -> bool:
    """Whether ``model`` (a conversation's saved model: a path, a hub id, a served name) is the demo
    model: the label itself, its weights directory (or a path inside it) in this install or any other
    one, or a copy of those weights elsewhere (a temporary directory, say) that still exists."""
    if not model or model == LABEL:
        return model == LABEL
    parts = tuple(part for part in re.split(r"[\\/]+", model.strip()) if part and part != ".")
    n = len(_INSTALLED_PARTS)
    if any(parts[i : i + n] == _INSTALLED_PARTS for i in range(len(parts) - n + 1)):
        return True
    return len(parts) > 1 and _is_a_copy(model)


@functools.lru_cache(maxsize=64)
def _is_a_copy(model: str) -> bool:
    """The same build: its ``build_info.json`` (timings included, so one per build) and weights size."""
    try:
        path = Path(model).expanduser()
        if not (path / BUILD_INFO).is_file():
            return False
        return (path / BUILD_INFO).read_bytes() == (WEIGHTS_DIR / BUILD_INFO).read_bytes() and (
            (path / WEIGHTS_FILE).stat().st_size == (WEIGHTS_DIR / WEIGHTS_FILE).stat().st_size
        )
    except (OSError, RuntimeError, ValueError):
        return False


def label(model: str) -> str:
    """``model`` as a conversation shows and saves it: ``LABEL`` for the demo model, else unchanged."""
    return LABEL if names_this_model(model) else model


def is_available() -> bool:
    """Whether the weights are present (a source checkout without them, or a broken install, lacks them)."""
    return all((WEIGHTS_DIR / name).is_file() for name in REQUIRED_FILES)


def model_dir(check: bool = True) -> Path:
    """The directory of the shipped demo model (loadable with ``--model``).

    With ``check`` (the default), a missing file raises ``UserError`` saying how to rebuild it.
    """
    if check and not is_available():
        missing = [name for name in REQUIRED_FILES if not (WEIGHTS_DIR / name).is_file()]
        raise UserError(
            f"the demo model is missing from {WEIGHTS_DIR} ({', '.join(missing)}); rebuild it with "
            f"`reasonchat demo-model build --out {WEIGHTS_DIR} --overwrite`"
        )
    return WEIGHTS_DIR
