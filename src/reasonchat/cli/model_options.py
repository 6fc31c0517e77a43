"""Options shared by every command that talks to a model (ask, chat, bench), and opening the backend.

Flags default to ``None`` so that an unset flag falls through to the environment, the config file and
the defaults (``reasonchat.config``); ``effective_config(args)`` is the merged result.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace

from reasonchat import config
from reasonchat.engine.protocol import Backend
from reasonchat.errors import UserError
from reasonchat.settings import DTYPE_NAMES, GENERATION_KEYS, GenerationSettings, check_flag
from reasonchat.template import DEFAULT_CONTEXT_LIMIT, DEFAULT_MAX_NEW_TOKENS

# Namespace attribute -> config key, for the flags that have a config key.
_FLAG_KEYS = {
    "model": "model",
    "device": "device",
    "dtype": "dtype",
    "threads": "threads",
    "compile": "compile",
    "max_new_tokens": "max_new_tokens",
    "reasoning_tokens": "reasoning_tokens",
    "answer_tokens": "answer_tokens",
    "context_limit": "context_limit",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "repetition_penalty": "repetition_penalty",
    "seed": "seed",
    "system": "system_prompt",
}
_RESOLVED = "resolved_config"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="PATH", help="checkpoint directory or hub id (default: the demo model)")
    group.add_argument("--device", help="cpu, cuda, cuda:1, mps … (default: device_map=auto)")
    group.add_argument("--dtype", help=f"{', '.join(DTYPE_NAMES)} (default: the checkpoint's)")
    group.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    group.add_argument("--adapter", metavar="DIR", help="a LoRA adapter (train --lora) merged into --model")
    group.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fast decoding: a static KV cache and a compiled decode step, warmed up at load "
        "(default: on with CUDA, off on CPU; config key compile)",
    )
    add_trust_remote_code(group)
    group.add_argument(
        "--no-cache-reuse", action="store_true", help="re-prefill every prompt (the card's behaviour)"
    )


def add_trust_remote_code(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The flag of every command that loads a checkpoint: without it a checkpoint's own Python
    (``auto_map``) is refused, never run and never asked about."""
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="run the checkpoint's own Python code (auto_map)"
    )


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generation")
    group.add_argument(
        "--max-new-tokens",
        type=int,
        metavar="N",
        help=f"per stage; sets both budgets below (default {DEFAULT_MAX_NEW_TOKENS})",
    )
    group.add_argument(
        "--reasoning-tokens", type=int, metavar="N", help="the reasoning's budget (0 = no reasoning)"
    )
    group.add_argument("--answer-tokens", type=int, metavar="N", help="the answer's budget")
    group.add_argument(
        "--context-limit",
        type=int,
        metavar="N",
        help=f"prompt + generated tokens (default {DEFAULT_CONTEXT_LIMIT})",
    )
    group.add_argument("--temperature", type=float, help="0 = greedy (default: the checkpoint's config)")
    group.add_argument("--top-p", type=float)
    group.add_argument("--top-k", type=int)
    group.add_argument("--repetition-penalty", type=float)
    group.add_argument("--seed", type=int)


def effective_config(args: argparse.Namespace) -> config.ResolvedConfig:
    """Flags > ``REASONCHAT_*`` > config file > defaults, merged once per parsed command line."""
    resolved = getattr(args, _RESOLVED, None)
    if resolved is None:
        flags = {key: getattr(args, attr, None) for attr, key in _FLAG_KEYS.items()}
        resolved = config.resolve(flags)
        if flags["max_new_tokens"] is not None:
            # The flag sets both stages: a stage's budget from the environment or the file gives way.
            # Left unset rather than copied, so that a later max_new_tokens (the app's settings) still
            # sets both.
            unset = [key for key in ("reasoning_tokens", "answer_tokens") if flags[key] is None]
            source = f"flag {config.FLAGS['max_new_tokens']}"
            resolved = replace(
                resolved,
                config=replace(resolved.config, **dict.fromkeys(unset)),
                sources={**resolved.sources, **dict.fromkeys(unset, source)},
            )
        setattr(args, _RESOLVED, resolved)
    return resolved


def generation_settings(args: argparse.Namespace) -> GenerationSettings:
    cfg = effective_config(args).config
    # Environment and config-file values were checked (and skipped when bad) as they were read: a bad
    # value left here came from a flag, so the message names the flag.
    for key in ("context_limit", "threads", *GENERATION_KEYS):
        check_flag(key, getattr(cfg, key), config.FLAGS[key])
    return GenerationSettings.of(cfg)


def context_limit(args: argparse.Namespace) -> int:
    return effective_config(args).config.context_limit


def model_path(args: argparse.Namespace) -> str:
    model = effective_config(args).config.model
    if model:
        return model
    try:
        from reasonchat.demo_model import model_dir
    except ImportError:
        raise UserError("no model given: pass --model PATH (a checkpoint with <|reasoning|>)") from None
    return str(model_dir())


def open_backend(
    args: argparse.Namespace,
    progress: Callable[[str], None] | None = None,
    *,
    compile: bool | None = None,
) -> Backend:
    """``compile``: overrides the ``compile`` setting (the bench loads eagerly and adds the fast path)."""
    from reasonchat.engine.transformers_backend import load_backend

    cfg = effective_config(args).config
    return load_backend(
        model_path(args),
        device=cfg.device,
        dtype=cfg.dtype,
        threads=cfg.threads,
        trust_remote_code=args.trust_remote_code,
        cache_reuse=not args.no_cache_reuse,
        compile=cfg.compile if compile is None else compile,
        adapter=args.adapter,
        progress=progress,
    )
