"""``reasonchat replay ID|FILE``: re-stream a saved conversation with its recorded timing.

A file (our JSON export, or the card's history list) replays directly, without importing it; anything
else is a saved conversation's id. Everything that can be wrong is found before the screen is taken
over, and nothing is written: replaying never creates a database either.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reasonchat import config, transfer
from reasonchat.conversation import Conversation
from reasonchat.errors import UserError
from reasonchat.replay import SPEEDS, parse_speed
from reasonchat.store import Store, existing_database


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a saved conversation (or a json export) with its recorded timing",
        description="Re-stream each turn through the Reasoning and Answer panes as it happened. "
        "Needs no model. Keys: space pauses, n skips to the next turn, s changes speed, e shows the "
        "rest at once, q quits.",
    )
    parser.add_argument("target", metavar="ID|FILE", help="a conversation id (or unique prefix), or a file")
    parser.add_argument(
        "--speed",
        default="1",
        choices=list(SPEEDS),
        help="1, 2 or 4 times the recorded pace, or instant (default: 1)",
    )
    parser.add_argument(
        "--version",
        metavar="TURN:VERSION",
        action="append",
        default=[],
        help="play VERSION (R or R.A, as 'reasonchat variants' lists them) of turn TURN (from 1)"
        " instead of its active one; repeatable",
    )
    parser.set_defaults(func=run_replay)


def load_target(target: str, data_dir: str | None) -> tuple[Conversation, str]:
    """The conversation ``target`` names, and how to name its source on screen."""
    if target == "-":
        raise UserError("replay reads a file or an id, not stdin")
    try:
        path = Path(target).expanduser()
        is_file = path.is_file()
    except (OSError, RuntimeError) as err:  # ~nosuchuser, a name too long
        raise UserError(f"cannot use {target!r}: {getattr(err, 'strerror', None) or err}") from None
    # Ids are hex: anything with a suffix or a directory part is meant as a file.
    if is_file or path.suffix or "/" in target:
        return transfer.load_file(path), path.name
    database = existing_database(data_dir)
    if database is None:
        raise UserError(f"no conversation with id {target!r} (and no file of that name)")
    with Store(database) as store:
        conv_id = store.resolve(target)
        return store.get(conv_id), conv_id[:8]


def choose_versions(conversation: Conversation, specs: list[str]) -> None:
    """Make each ``TURN:VERSION`` of ``specs`` the version played (in memory: nothing is saved)."""
    if not specs:
        return  # and no import on the way to the first frame
    from reasonchat.variants import parse_version

    for spec in specs:
        turn_text, colon, version = spec.partition(":")
        if not colon or not turn_text.strip().isdigit():
            raise UserError(f"--version takes TURN:VERSION (e.g. 2:1.3), not {spec!r}")
        number = int(turn_text)
        if not 1 <= number <= len(conversation.turns):
            raise UserError(f"--version {spec}: the conversation has {len(conversation.turns)} turn(s)")
        turn = conversation.turns[number - 1]
        turn.select(*parse_version(version, turn))


def build_replay_app(args: argparse.Namespace):  # -> ReplayApp (textual is imported here, not above)
    conversation, source = load_target(args.target, args.data_dir)
    choose_versions(conversation, args.version)
    speed = parse_speed(args.speed)
    from reasonchat.tui.replay_app import ReplayApp

    # The theme is the only setting a replay uses (config, not the model options: no engine import).
    return ReplayApp(conversation, speed, source, theme=config.resolve().config.theme, data_dir=args.data_dir)


def run_replay(args: argparse.Namespace) -> int:
    from reasonchat.tui import gc_policy

    with gc_policy.starting():  # the conversation read and Textual's import hold no garbage to collect
        build_replay_app(args).run()
    return 0
