"""``reasonchat variants``: a saved turn's versions, one line each; choose the active one, or mark it."""

from __future__ import annotations

import argparse

from reasonchat.cli.output import write_json, write_text
from reasonchat.conversation import MARKS
from reasonchat.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "variants",
        help="list the versions of a saved turn; --select makes one active, --mark marks it",
        description=(
            "List every version of turn TURN (from 1; default: the last) of conversation ID: name"
            " (R.A: reasoning R, answer A), what it varied, who wrote the reasoning, its mark, first"
            " words. The active one is starred; it is what later prompts and exports use."
        ),
    )
    parser.add_argument("id", metavar="ID", help="the conversation (an id or a unique prefix)")
    parser.add_argument("turn", metavar="TURN", nargs="?", type=int, help="the turn, from 1 (default: the last)")
    parser.add_argument("--select", metavar="VERSION", help="make VERSION (R or R.A) the active one")
    parser.add_argument(
        "--mark", choices=(*MARKS, "none"), help="mark the active version (after --select) good or bad"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonchat.store import Store
    from reasonchat.variants import first_words, parse_version, versions

    with Store.open(args.data_dir) as store:
        conversation = store.get(store.resolve(args.id))
        count = len(conversation.turns)
        if not count:
            raise UserError(f"conversation {conversation.id} has no turn yet")
        number = count if args.turn is None else args.turn
        if not 1 <= number <= count:
            raise UserError(f"conversation {conversation.id} has {count} turn(s); there is no turn {number}")
        turn = conversation.turns[number - 1]
        if args.select is not None or args.mark is not None:
            if args.select is not None:
                turn.select(*parse_version(args.select, turn))
            if args.mark is not None:
                turn.mark = None if args.mark == "none" else args.mark
            conversation.touch()
            store.save_turn(conversation, number - 1)
    listed = versions(turn)
    if args.json:
        write_json([
            {
                "version": v.name, "active": v.active, "stage": v.stage, "source": v.source,
                "mark": v.mark, "reasoning": v.reasoning_text, "answer": v.answer_text,
            }
            for v in listed
        ])  # fmt: skip
        return 0
    width = max(len(v.name) for v in listed)
    lines = [
        f"{'*' if v.active else ' '} {v.name:<{width}}  {v.stage:<9}  {v.source:<6}  {v.mark or '-':<4}  "
        f"{first_words(v.reasoning_text)} → {first_words(v.answer_text)}"
        for v in listed
    ]
    write_text("\n".join(lines) + "\n")
    return 0
