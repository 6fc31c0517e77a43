"""Subcommands that later work will fill in; until then they say so and exit 2."""

from __future__ import annotations

import argparse

from reasonchat.errors import UserError

RESERVED = {
    "ask": "ask one question (reasoning, then answer)",
    "chat": "open the chat app",
    "replay": "replay a saved conversation with its recorded timing",
    "bench": "measure the engine against the model card's loop",
    "prepare-model": "add <|reasoning|> to a base checkpoint",
    "train": "fine-tune with the loss on reasoning and answer",
    "demo-model": "build, locate or evaluate the embedded demo model",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    existing = set(subparsers.choices)
    for name, help_text in RESERVED.items():
        if name in existing:
            continue
        sub = subparsers.add_parser(name, help=f"{help_text} (not available yet)")
        sub.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        sub.set_defaults(func=_not_yet, reserved=name)


def _not_yet(args: argparse.Namespace) -> int:
    raise UserError(f"'{args.reserved}' is not available in this version yet")
