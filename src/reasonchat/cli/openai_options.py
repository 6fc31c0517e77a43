"""Options for a model on an OpenAI-compatible server (vLLM, SGLang), and choosing the backend.

``--backend openai`` (implied by ``--base-url``) sends each stage to the server's ``/v1/completions``;
``--backend transformers`` (the default otherwise) loads the model in-process. Importing this module
imports neither httpx nor torch.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from reasonchat.errors import UserError
from reasonchat.settings import check_flag

if TYPE_CHECKING:
    from reasonchat.engine.openai_backend import OpenAIBackend
    from reasonchat.engine.protocol import Backend

BACKENDS = ("transformers", "openai")
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"  # the same default as reasonchat.engine.openai_backend
DEFAULT_REQUEST_TIMEOUT_S = 120.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Options of the in-process model that mean nothing for a served one (dest, flag).
_LOCAL_OPTIONS = (
    ("model", "--model"),
    ("device", "--device"),
    ("dtype", "--dtype"),
    ("threads", "--threads"),
    ("trust_remote_code", "--trust-remote-code"),
    ("no_cache_reuse", "--no-cache-reuse"),
)
_SERVER_OPTIONS = (
    ("base_url", "--base-url"),
    ("served_model", "--served-model"),
    ("api_key_env", "--api-key-env"),
    ("tokenizer", "--tokenizer"),
    ("request_timeout", "--request-timeout"),
)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("served model (an OpenAI-compatible server: vLLM, SGLang)")
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        help="where the model runs (default: openai when --base-url is given, else transformers)",
    )
    group.add_argument(
        "--base-url", metavar="URL", help="the server's API root, e.g. http://localhost:8000/v1"
    )
    group.add_argument(
        "--served-model", metavar="NAME", help="the model's name on the server (default: the first listed)"
    )
    group.add_argument(
        "--api-key-env",
        metavar="VAR",
        help=f"environment variable holding the API key (default: {DEFAULT_API_KEY_ENV}, if set)",
    )
    group.add_argument(
        "--tokenizer",
        metavar="DIR",
        help="the served checkpoint's directory, for exact token counts (default: the server's /tokenize, "
        "else estimates)",
    )
    group.add_argument(
        "--request-timeout",
        type=float,
        metavar="S",
        help=f"seconds to wait for the server's next byte (default {DEFAULT_REQUEST_TIMEOUT_S:g})",
    )


def selected_backend(args: argparse.Namespace) -> str:
    """``openai`` or ``transformers``; options that belong to the other one are a ``UserError``."""
    backend = args.backend or ("openai" if args.base_url else "transformers")
    if backend == "openai":
        if not args.base_url:
            raise UserError("--backend openai needs --base-url URL (for example http://localhost:8000/v1)")
        for dest, flag in _LOCAL_OPTIONS:
            if getattr(args, dest, None):
                raise UserError(
                    f"{flag} is for a model loaded here; with --base-url the server holds the model"
                )
    else:
        for dest, flag in _SERVER_OPTIONS:
            if getattr(args, dest, None) is not None:
                raise UserError(f"{flag} is for a served model: add --base-url URL")
    return backend


def api_key(args: argparse.Namespace) -> str | None:
    """The key from ``--api-key-env`` (which must then be set), else from $OPENAI_API_KEY if set."""
    name = args.api_key_env
    if name is None:
        return os.environ.get(DEFAULT_API_KEY_ENV) or None
    if not _ENV_NAME.match(name):
        raise UserError(f"--api-key-env takes the name of an environment variable, got {name!r}")
    key = os.environ.get(name)
    if not key:
        raise UserError(f"--api-key-env {name}: the environment variable {name} is not set")
    return key


def open_openai_backend(
    args: argparse.Namespace, progress: Callable[[str], None] | None = None
) -> OpenAIBackend:
    """Connect to the server named by the options. Raises ``UserError`` with what to fix."""
    selected_backend(args)
    timeout = DEFAULT_REQUEST_TIMEOUT_S if args.request_timeout is None else args.request_timeout
    check_flag("request_timeout", timeout)
    key = api_key(args)
    from reasonchat.engine.openai_backend import OpenAIBackend

    backend = OpenAIBackend(
        args.base_url,
        served_model=args.served_model,
        api_key=key,
        api_key_env=args.api_key_env or DEFAULT_API_KEY_ENV,
        tokenizer_dir=args.tokenizer,
        request_timeout=timeout,
    )
    try:
        return backend.connect(progress)
    except BaseException:
        backend.close()
        raise


def open_selected_backend(args: argparse.Namespace, progress: Callable[[str], None] | None = None) -> Backend:
    """The backend the options ask for: a served model, or one loaded here (``model_options``)."""
    if selected_backend(args) == "openai":
        return open_openai_backend(args, progress)
    from reasonchat.cli.model_options import open_backend

    return open_backend(args, progress)
