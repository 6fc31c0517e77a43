"""A LoRA adapter (``reasonchat train --lora``, or any peft LoRA) applied to a loaded base model.

``chat``/``ask --model BASE --adapter DIR`` load BASE as usual and then call ``apply_adapter``. The
adapter is merged into the weights (``merge_and_unload``): generation, the KV-cache reuse and
the token counts then run on a plain model, at the base model's speed.

Everything a user can get wrong is a one-line ``UserError``: not a directory, no
``adapter_config.json``, weights only as a pickle (``adapter_model.bin``: refused, as the engine
refuses pickled checkpoints), an adapter for another model (shapes, vocabulary), peft missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from reasonchat.engine.loading import LoadedModel, ModelLoadError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLED_WEIGHTS = "adapter_model.bin"


def check_adapter_dir(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The adapter's config, after checking that ``path`` holds a loadable peft adapter."""
    text = os.fspath(path)
    directory = Path(text).expanduser()
    if not directory.exists():
        raise ModelLoadError(f"adapter not found: {text}")
    if not directory.is_dir():
        raise ModelLoadError(f"adapter {text} is a file; pass the adapter directory")
    config_path = directory / ADAPTER_CONFIG
    if not config_path.is_file():
        hint = " (it is a full model: pass it as --model)" if (directory / "config.json").is_file() else ""
        raise ModelLoadError(f"{text} is not an adapter directory (no {ADAPTER_CONFIG} in it){hint}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelLoadError(f"{config_path} is not valid JSON ({type(err).__name__})") from None
    if not isinstance(config, dict) or not isinstance(config.get("peft_type"), str):
        raise ModelLoadError(f"{config_path} has no 'peft_type': not a peft adapter")
    if not (directory / ADAPTER_WEIGHTS).is_file():
        if (directory / PICKLED_WEIGHTS).is_file():
            raise ModelLoadError(
                f"{text} has its weights only as {PICKLED_WEIGHTS}, a pickle that could run code; "
                f"convert it to {ADAPTER_WEIGHTS}"
            )
        raise ModelLoadError(f"{text} has no {ADAPTER_WEIGHTS}")
    return config


def load_adapter(model: Any, path: str | os.PathLike[str], *, merge: bool = True) -> Any:
    """``model`` with the adapter in ``path`` applied: merged into a plain model by default, else the
    ``PeftModel``. Raises ``ModelLoadError`` (a ``UserError``) in one line."""
    check_adapter_dir(path)
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelLoadError("loading an adapter needs the peft package: pip install peft") from None
    directory = str(Path(os.fspath(path)).expanduser())
    try:
        adapted = PeftModel.from_pretrained(model, directory, is_trainable=False)
    except (ValueError, RuntimeError, KeyError, IndexError, TypeError, OSError) as err:
        # peft reports an adapter for another model as a size mismatch or missing target modules.
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"the adapter in {directory} does not fit this model: {reason[:300]}") from None
    if merge:
        adapted = adapted.merge_and_unload()
    adapted.eval()
    return adapted


def apply_adapter(loaded: LoadedModel, path: str | os.PathLike[str]) -> LoadedModel:
    """``loaded`` (from ``engine.loading.load_model``) with the adapter merged into its model."""
    loaded.model = load_adapter(loaded.model, path)
    return loaded
