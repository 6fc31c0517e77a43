"""Options shared by every command that talks to a model (ask, chat, bench), and opening the backend."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from reasonchat.engine.protocol import Backend, GenerationSettings
from reasonchat.errors import UserError
from reasonchat.template import DEFAULT_CONTEXT_LIMIT, DEFAULT_MAX_NEW_TOKENS


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="PATH", help="checkpoint directory or hub id (default: the demo model)")
    group.add_argument("--device", help="cpu, cuda, cuda:1, mps … (default: device_map=auto)")
    group.add_argument("--dtype", help="auto, float32, bfloat16, float16 (default: the checkpoint's)")
    group.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    group.add_argument("--trust-remote-code", action="store_true", help="allow the checkpoint's own code")
    group.add_argument(
        "--no-cache-reuse", action="store_true", help="re-prefill every prompt (the card's behaviour)"
    )


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generation")
    group.add_argument(
        "--max-new-tokens",
        type=int,
        metavar="N",
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"per stage (default {DEFAULT_MAX_NEW_TOKENS})",
    )
    group.add_argument(
        "--context-limit",
        type=int,
        metavar="N",
        default=DEFAULT_CONTEXT_LIMIT,
        help=f"prompt + generated tokens (default {DEFAULT_CONTEXT_LIMIT})",
    )
    group.add_argument("--temperature", type=float, help="0 = greedy (default: the checkpoint's config)")
    group.add_argument("--top-p", type=float)
    group.add_argument("--top-k", type=int)
    group.add_argument("--repetition-penalty", type=float)
    group.add_argument("--seed", type=int)


def generation_settings(args: argparse.Namespace) -> GenerationSettings:
    if args.context_limit < 2:
        raise UserError(f"--context-limit must be at least 2, got {args.context_limit}")
    return GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )


def model_path(args: argparse.Namespace) -> str:
    if args.model:
        return args.model
    from reasonchat.demo_model import model_dir

    return str(model_dir())


def open_backend(args: argparse.Namespace, progress: Callable[[str], None] | None = None) -> Backend:
    from reasonchat.engine.transformers_backend import load_backend

    return load_backend(
        model_path(args),
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        trust_remote_code=args.trust_remote_code,
        cache_reuse=not args.no_cache_reuse,
        progress=progress,
    )
