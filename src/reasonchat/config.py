"""The settings a user sets once (model, device, sampling, system prompt, theme), and where each came from.

Precedence: command-line flags > ``REASONCHAT_*`` environment variables > the TOML config file > the
defaults. The file lives at ``platformdirs.user_config_path("reasonchat")/config.toml``. A broken file
never stops the program: a syntax error means the whole file is ignored, an unknown key or a value of the
wrong type or range means that key is ignored; each problem is reported with the key and its line.

Pure: stdlib and platformdirs only (no torch, no textual), so ``reasonchat config`` and the app's first
frame stay fast.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import platformdirs

from reasonchat.paths import APP_NAME
from reasonchat.settings import BOUNDS, GenerationFields, out_of_bounds
from reasonchat.template import DEFAULT_CONTEXT_LIMIT, DEFAULT_SYSTEM_PROMPT

CONFIG_NAME = "config.toml"
ENV_PREFIX = "REASONCHAT_"


@dataclass(frozen=True)
class Config(GenerationFields):
    """Effective values: the generation fields (``max_new_tokens`` … ``seed``) and these. ``None``
    means: nobody set it (the checkpoint or the library decides)."""

    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    threads: int | None = None
    # The compiled static-cache decode path of the local backend; None: on CUDA only.
    compile: bool | None = None
    context_limit: int = DEFAULT_CONTEXT_LIMIT
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    theme: str | None = None


# Every key with its type, in the order ``reasonchat config`` lists them (the generation fields come
# first in ``fields(Config)``, which is not the order users read them in).
_KINDS: dict[str, type] = {
    "model": str,
    "device": str,
    "dtype": str,
    "threads": int,
    "compile": bool,
    "context_limit": int,
    "max_new_tokens": int,
    "reasoning_tokens": int,
    "answer_tokens": int,
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "repetition_penalty": float,
    "seed": int,
    "system_prompt": str,
    "theme": str,
}
KEYS: tuple[str, ...] = tuple(_KINDS)
_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
# How an environment variable spells a boolean.
_ENV_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
# The flag that sets each key, for ``reasonchat config`` and for messages.
FLAGS: dict[str, str] = {key: "--" + key.replace("_", "-") for key in KEYS} | {"system_prompt": "--system"}


@dataclass(frozen=True)
class ResolvedConfig:
    """The effective ``config``, the source of each value, the file consulted, and what was wrong."""

    config: Config
    sources: Mapping[str, str]
    path: Path
    problems: tuple[str, ...] = ()

    def rows(self) -> list[tuple[str, Any, str]]:
        """``(key, value, source)`` for every key, in a stable order."""
        return [(key, getattr(self.config, key), self.sources[key]) for key in KEYS]


def config_path() -> Path:
    return platformdirs.user_config_path(APP_NAME) / CONFIG_NAME


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def resolve(
    flags: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> ResolvedConfig:
    """Merge the layers. ``flags`` maps keys to the values given on the command line (``None``: not
    given); they were typed and are checked by whoever uses them. Environment and file values are
    checked here: a bad one is reported in ``problems`` and skipped, so the next layer decides."""
    env = os.environ if env is None else env
    path = config_path() if path is None else path
    problems: list[str] = []
    values: dict[str, Any] = {}
    sources = {key: "default" for key in KEYS}

    for key, (value, line) in _read_file(path, problems).items():
        values[key] = value
        sources[key] = f"config file, line {line}" if line else "config file"
    for key in KEYS:
        raw = env.get(env_name(key))
        if raw is None or raw == "":
            continue
        value, error = _parse_env(key, raw)
        if error:
            problems.append(f"{env_name(key)}: {error}; ignored")
            continue
        values[key] = value
        sources[key] = f"env {env_name(key)}"
    for key, value in (flags or {}).items():
        if key not in sources:
            raise KeyError(f"unknown setting {key!r}")
        if value is not None:
            values[key] = value
            sources[key] = f"flag {FLAGS[key]}"
    return ResolvedConfig(replace(Config(), **values), sources, path, tuple(problems))


def _read_file(path: Path, problems: list[str]) -> dict[str, tuple[Any, int | None]]:
    """The valid ``key: (value, line)`` pairs of the file; problems are appended to ``problems``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        problems.append(f"{path}: cannot read the config file ({err}); using the defaults")
        return {}
    import tomllib  # only with a file to parse: most starts have none, and a replay's start counts

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        problems.append(f"{path}: not valid TOML: {err}; the whole file is ignored, using the defaults")
        return {}
    valid: dict[str, tuple[Any, int | None]] = {}
    for key, value in data.items():
        line = _line_of(text, key)
        where = f"{path}, line {line}" if line else str(path)
        if key not in _KINDS:
            problems.append(
                f"{where}: unknown key {key!r} (known keys: {', '.join(KEYS)}); ignored"
            )
            continue
        error = _check(key, value)
        if error:
            problems.append(f"{where}: {key!r} {error}; using the default")
            continue
        valid[key] = (float(value) if _KINDS[key] is float else value, line)
    return valid


def _check(key: str, value: Any) -> str | None:
    kind = _KINDS[key]
    if kind is bool:
        return None if isinstance(value, bool) else f"must be {_KIND_NAMES[bool]}, got {_describe(value)}"
    accepted = (int, float) if kind is float else (kind,)
    # TOML booleans are Python bools, which are ints: "threads = true" must not mean 1.
    if isinstance(value, bool) or not isinstance(value, accepted):
        return f"must be {_KIND_NAMES[kind]}, got {_describe(value)}"
    return out_of_bounds(key, value) if key in BOUNDS else None


def _parse_env(key: str, raw: str) -> tuple[Any, str | None]:
    kind = _KINDS[key]
    if kind is bool:
        flag = _ENV_BOOLS.get(raw.strip().lower())
        return (flag, None) if flag is not None else (None, f"must be true or false (or 1/0), got {raw!r}")
    if kind is str:
        value: Any = raw
    else:
        try:
            value = kind(raw.strip())
        except ValueError:
            return None, f"must be {_KIND_NAMES[kind]}, got {raw!r}"
    return value, _check(key, value)


def _describe(value: Any) -> str:
    names = {bool: "a boolean", str: "a string", int: "an integer", float: "a number",
             list: "an array", dict: "a table"}  # fmt: skip
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"


def _line_of(text: str, key: str) -> int | None:
    """The line where ``key`` is assigned (or opens a table), for messages; tomllib gives no positions."""
    quoted = re.escape(key)
    pattern = re.compile(rf"""^[ \t]*(?:\[[ \t]*)?(?:{quoted}|"{quoted}"|'{quoted}')[ \t]*(?:=|\]|\.)""", re.M)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None
