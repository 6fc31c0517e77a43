"""The ``reasonchat`` command line.

Each subcommand lives in a module of this package with a ``register(subparsers)`` function; a command
imports what it needs (torch, transformers, textual) inside its handler, so ``reasonchat --help`` and
the store commands start without loading any of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reasonchat import __version__
from reasonchat.errors import ReasonchatError
from reasonchat.sanitize import sanitize


def build_parser() -> argparse.ArgumentParser:
    from reasonchat.cli import (
        app_commands,
        ask_command,
        bench_command,
        replay_command,
        store_commands,
        training_commands,
    )

    parser = argparse.ArgumentParser(
        prog="reasonchat",
        description="Chat with a reasoning model in the terminal: its reasoning and its answer, live.",
    )
    parser.add_argument("--version", action="version", version=f"reasonchat {__version__}")
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where conversations are stored (default: $REASONCHAT_DATA_DIR, else the user data dir)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    app_commands.register(subparsers)
    store_commands.register(subparsers)
    ask_command.register(subparsers)
    bench_command.register(subparsers)
    training_commands.register(subparsers)
    replay_command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):  # bare `reasonchat` opens the app
        args = parser.parse_args([*(sys.argv[1:] if argv is None else argv), "chat"])
    try:
        return int(args.func(args) or 0)
    except ReasonchatError as err:
        print(f"reasonchat: error: {sanitize(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("reasonchat: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # ``reasonchat export ... | head``: the reader left; nothing to report.
        sys.stderr.close()
        return 0
