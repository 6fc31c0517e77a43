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
from reasonchat.cli import output
from reasonchat.errors import ReasonchatError
from reasonchat.sanitize import sanitize


# The module that registers each command. Parsing ``reasonchat replay ...`` imports replay_command
# alone, not the training, engine and ask code (about 30 ms of a replay's start, which must stay
# close to a bare Textual app's); anything else (help, a typo) builds the whole parser.
# tests/test_cli_startup.py checks this table against the modules' own registrations.
COMMAND_MODULES: dict[str, str] = {
    "chat": "app_commands",
    "config": "app_commands",
    "list": "store_commands",
    "export": "store_commands",
    "import": "store_commands",
    "delete": "store_commands",
    "ask": "ask_command",
    "reanswer": "reanswer_command",
    "variants": "variants_command",
    "bench": "bench_command",
    "prepare-model": "training_commands",
    "train": "training_commands",
    "demo-model": "training_commands",
    "replay": "replay_command",
}
ALL_MODULES = tuple(dict.fromkeys(COMMAND_MODULES.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``command``, only the subcommands of the module that registers it."""
    import importlib

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
    modules = (COMMAND_MODULES[command],) if command in COMMAND_MODULES else ALL_MODULES
    for name in modules:
        importlib.import_module(f"reasonchat.cli.{name}").register(subparsers)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not a global option or its value)."""
    words = iter(argv)
    for word in words:
        if word == "--data-dir":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    with output.guarded():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    try:
        try:
            code = _run(argv)
        except SystemExit:
            sys.stdout.flush()  # ``--version`` printed, then exits
            raise
        sys.stdout.flush()  # here, not at exit, so a stdout that fails is reported like any error
        return code
    except ReasonchatError as err:
        if isinstance(err, output.OutputError):
            output.discard()
        print(f"reasonchat: error: {sanitize(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("reasonchat: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # ``reasonchat export ... | head``: the reader left; nothing to report.
        output.discard()
        sys.stderr.close()
        return 0


def _run(argv: Sequence[str] | None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_of(words))
    args = parser.parse_args(words)
    if not getattr(args, "func", None):  # bare `reasonchat` opens the app
        args = parser.parse_args([*words, "chat"])
    return int(args.func(args) or 0)
