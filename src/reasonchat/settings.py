"""Generation settings, the bounds every entry point checks settings against, and the dtype spellings.

The config file, the command line, the settings dialog, the engine's loader and training all accept
these values; each bound and each dtype name is written here once so they cannot drift apart.

Pure: no torch, no textual (``reasonchat config`` and the app's first frame import it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from reasonchat.errors import UserError
from reasonchat.template import DEFAULT_MAX_NEW_TOKENS

# Every spelling a user may give for a dtype, and the torch dtype it names ("auto": whatever the
# checkpoint was stored in).
DTYPE_SPELLINGS: dict[str, str] = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
DTYPES: tuple[str, ...] = tuple(DTYPE_SPELLINGS)
# The canonical names: what the commands offer as choices and show in help.
DTYPE_NAMES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Bound:
    """What a setting's value must satisfy, and how messages say it."""

    label: str  # the setting in a sentence: "max new tokens"
    check: Callable[[Any], bool]
    wanted: str  # completes "must be ...": "at least 1"


BOUNDS: dict[str, Bound] = {
    "threads": Bound("threads", lambda v: v >= 1, "at least 1"),
    "context_limit": Bound("context limit", lambda v: v >= 2, "at least 2"),
    "max_new_tokens": Bound("max new tokens", lambda v: v >= 1, "at least 1"),
    "temperature": Bound("temperature", lambda v: v >= 0, ">= 0"),
    "top_p": Bound("top-p", lambda v: 0 < v <= 1, "in (0, 1]"),
    "top_k": Bound("top-k", lambda v: v >= 0, ">= 0"),
    "repetition_penalty": Bound("repetition penalty", lambda v: v > 0, "> 0"),
    "dtype": Bound("dtype", lambda v: v in DTYPE_SPELLINGS, "one of " + ", ".join(DTYPES)),
}


def out_of_bounds(key: str, value: Any) -> str | None:
    """``"must be <bound>, got <value>"`` when ``value`` breaks ``key``'s bound, else None; callers put
    the name the user knows (a flag, a config key) in front."""
    bound = BOUNDS[key]
    return None if bound.check(value) else f"must be {bound.wanted}, got {value!r}"


@dataclass(frozen=True)
class GenerationFields:
    """The per-stage generation fields and their defaults, unchecked: ``config.Config`` holds them as
    the user set them, ``GenerationSettings`` checks them. ``None`` means: the checkpoint's
    ``generation_config`` decides."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None


GENERATION_KEYS: tuple[str, ...] = tuple(f.name for f in fields(GenerationFields))


@dataclass(frozen=True)
class GenerationSettings(GenerationFields):
    """Per-stage generation settings, within their bounds (a ``UserError`` says which is not)."""

    @classmethod
    def of(cls, values: GenerationFields) -> GenerationSettings:
        """The settings ``values`` (a ``config.Config``, say) hold, checked."""
        return cls(**{key: getattr(values, key) for key in GENERATION_KEYS})

    def __post_init__(self) -> None:
        for key in GENERATION_KEYS:
            value = getattr(self, key)
            problem = None if value is None or key not in BOUNDS else out_of_bounds(key, value)
            if problem:
                raise UserError(f"{BOUNDS[key].label} {problem}")
