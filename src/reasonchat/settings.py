"""Generation settings, the bounds every entry point checks settings against, and the dtype spellings.

The config file, the command line, the settings dialog, the engine's loader and training all accept
these values; each bound and each dtype name is written here once so they cannot drift apart.

Pure: no torch, no textual (``reasonchat config`` and the app's first frame import it).
"""

from __future__ import annotations

import math
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
    high: int | None = None  # for counts: the most there may be (said instead when it is exceeded)


# Counts go to C (torch, tokenizers, a server's int32 fields): beyond this they overflow there, with a
# traceback, instead of being refused here.
MAX_COUNT = 2**31 - 1
# Seeds go to torch.manual_seed and to servers as a signed 64-bit integer.
MAX_SEED = 2**63 - 1


def _number(check: Callable[[float], bool]) -> Callable[[Any], bool]:
    """``check`` for a real, finite number: nan compares false with everything, so ``nan >= 0`` would
    refuse it, but ``inf >= 0`` holds; and a bool is an int that nobody means as a number."""
    return lambda v: (
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and check(v)
    )


def _count(label: str, low: int, high: int = MAX_COUNT) -> Bound:
    return Bound(label, _number(lambda v: v == int(v) and low <= v <= high), f"at least {low}", high)


def _real(label: str, check: Callable[[float], bool], wanted: str) -> Bound:
    return Bound(label, _number(check), wanted)


BOUNDS: dict[str, Bound] = {
    # Model and generation: the config file, the flags, the settings dialog, the loader.
    "threads": _count("threads", 1, 1024),
    "context_limit": _count("context limit", 2),
    "max_new_tokens": _count("max new tokens", 1),
    # 0: no reasoning at all (an empty reasoning turn, the answer straight from the question).
    "reasoning_tokens": _count("reasoning tokens", 0),
    "answer_tokens": _count("answer tokens", 1),
    "temperature": _real("temperature", lambda v: v >= 0, "a finite number >= 0"),
    "top_p": _real("top-p", lambda v: 0 < v <= 1, "in (0, 1]"),
    "top_k": _count("top-k", 0),
    "repetition_penalty": _real("repetition penalty", lambda v: v > 0, "a finite number > 0"),
    "seed": _count("seed", 0, MAX_SEED),
    "dtype": Bound("dtype", lambda v: v in DTYPE_SPELLINGS, "one of " + ", ".join(DTYPES)),
    # A served model.
    "request_timeout": _real("request timeout", lambda v: v > 0, "a positive number of seconds"),
    # bench.
    "history_tokens": _count("history tokens", 16),
    "decode_tokens": _count("decode tokens", 0),
    "stage_tokens": _count("stage tokens", 1),
    "steering_tokens": _count("steering tokens", 0),
    # train (``TrainConfig``'s field names).
    "max_length": _count("max length", 2),
    "batch_size": _count("batch size", 1),
    "grad_accum": _count("gradient accumulation", 1),
    "max_steps": _count("max steps", 1),
    "epochs": _real("epochs", lambda v: v > 0, "a finite number > 0"),
    "lr": _real("learning rate", lambda v: v > 0, "a finite number > 0"),
    "min_lr_ratio": _real("min lr ratio", lambda v: 0 <= v <= 1, "in [0, 1]"),
    "warmup_steps": _count("warmup steps", 0),
    "weight_decay": _real("weight decay", lambda v: v >= 0, "a finite number >= 0"),
    "beta1": _real("beta1", lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta2": _real("beta2", lambda v: 0 <= v < 1, "in [0, 1)"),
    "grad_clip": _real("gradient clip", lambda v: v >= 0, "a finite number >= 0 (0 = off)"),
    "eval_every": _count("eval every", 1),
    "eval_batches": _count("eval batches", 1),
    "save_every": _count("save every", 1),
    "log_every": _count("log every", 1),
    # demo-model build / eval.
    "steps": _count("steps", 1),
    "dialogs": _count("dialogs", 1),
    "turns": _count("turns", 1),
    "off_task": _count("off-task dialogs", 0),
    "show_failures": _count("failures shown", 0),
}


def out_of_bounds(key: str, value: Any) -> str | None:
    """``"must be <bound>, got <value>"`` when ``value`` breaks ``key``'s bound, else None; callers put
    the name the user knows (a flag, a config key) in front."""
    bound = BOUNDS[key]
    if bound.check(value):
        return None
    too_big = bound.high is not None and isinstance(value, int | float) and value > bound.high
    return f"must be {f'at most {bound.high}' if too_big else bound.wanted}, got {value!r}"


def check_flag(key: str, value: Any, flag: str | None = None) -> None:
    """A ``UserError`` naming ``flag`` (default: ``--`` + ``key`` with dashes) when ``value`` breaks
    ``key``'s bound; ``None`` (not given) passes."""
    if value is not None and (problem := out_of_bounds(key, value)):
        raise UserError(f"{flag or '--' + key.replace('_', '-')} {problem}")


@dataclass(frozen=True)
class GenerationFields:
    """The per-stage generation fields and their defaults, unchecked: ``config.Config`` holds them as
    the user set them, ``GenerationSettings`` checks them. ``None`` means: the checkpoint's
    ``generation_config`` decides."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    # Each stage's own budget; ``None``: ``max_new_tokens``.
    reasoning_tokens: int | None = None
    answer_tokens: int | None = None
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

    def budget(self, stage: str) -> int:
        """The new tokens ``stage`` (``"reasoning"`` or ``"answer"``) may generate, before the context
        limit caps it."""
        own = self.reasoning_tokens if stage == "reasoning" else self.answer_tokens
        return self.max_new_tokens if own is None else own

    def __post_init__(self) -> None:
        for key in GENERATION_KEYS:
            value = getattr(self, key)
            problem = None if value is None or key not in BOUNDS else out_of_bounds(key, value)
            if problem:
                raise UserError(f"{BOUNDS[key].label} {problem}")
