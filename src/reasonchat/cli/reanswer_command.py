"""``reasonchat reanswer``: a saved conversation's last answer again, from its reasoning or another one."""

from __future__ import annotations

import argparse
import sys

from reasonchat.cli.ask_command import (
    Output,
    add_reasoning_file_argument,
    cancel_on_sigint,
    exit_code,
    read_reasoning_file,
)
from reasonchat.cli.model_options import (
    add_generation_arguments,
    add_model_arguments,
    context_limit,
    effective_config,
    generation_settings,
)
from reasonchat.cli.openai_options import add_backend_arguments, open_selected_backend
from reasonchat.engine.protocol import ContextOverflow
from reasonchat.errors import UserError
from reasonchat.sanitize import sanitize


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reanswer",
        help="answer a conversation's last turn again, from its reasoning or another one",
        description=(
            "Generate the answer of the last turn of conversation ID again, from its current reasoning"
            " or from the one in --reasoning-file. The model's first reasoning and answer are kept."
        ),
    )
    parser.add_argument("id", metavar="ID", help="the conversation (an id or a unique prefix)")
    add_reasoning_file_argument(parser, "answer from the reasoning in FILE ('-': stdin) instead")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    add_model_arguments(parser)
    add_backend_arguments(parser)
    add_generation_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonchat.session import ChatSession
    from reasonchat.store import Store

    reasoning = None if args.reasoning_file is None else read_reasoning_file(args.reasoning_file)
    for problem in effective_config(args).problems:
        print(f"reasonchat: warning: {sanitize(problem)}", file=sys.stderr)
    settings = generation_settings(args)
    limit = context_limit(args)
    with Store.open(args.data_dir) as store:
        conversation = store.get(store.resolve(args.id))
        if not conversation.turns:
            raise UserError(f"conversation {conversation.id} has no turn to answer again")
        if reasoning is None and conversation.turns[-1].reasoning is None:
            raise UserError(
                f"the last turn of {conversation.id} has no reasoning; give one with --reasoning-file"
            )
        out = Output(json_mode=args.json)
        backend = open_selected_backend(args, progress=out.progress)
        session = ChatSession(backend, conversation, store=store, settings=settings, context_limit=limit)
        try:
            with cancel_on_sigint(session):
                turn = session.reanswer(reasoning, on_event=out.event)
            code = exit_code(turn)
        except ContextOverflow as err:
            # The answer's stats carry the message, shown already; the reasoning was saved.
            turn, code = conversation.turns[-1], err.exit_code
    out.finish(conversation, turn, limit, saved=True)
    return code
