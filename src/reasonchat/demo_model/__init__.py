"""The embedded demo model: a ~0.85M-parameter Qwen2 that adds and subtracts, shipped as package data.

It is the default model whenever ``--model`` is not given, so reasonchat works with no GPU and no
network. ``reasonchat demo-model build`` rebuilds it (``reasonchat.training.demo``); this module only
locates it and never imports torch.
"""

from __future__ import annotations

from pathlib import Path

from reasonchat.errors import UserError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


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
