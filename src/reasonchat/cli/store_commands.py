"""``list``, ``export``, ``import`` and ``delete``: the saved conversations from the shell.

Output goes to stdout as UTF-8 bytes whatever the locale, so ``export --format history`` writes
exactly the bytes a later ``import`` reads back. Errors are ``ReasonchatError``s: ``main`` prints
them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reasonchat import curation, transfer
from reasonchat.cli.output import write_bytes, write_json, write_text
from reasonchat.conversation import Conversation, local_time, new_id
from reasonchat.errors import UserError
from reasonchat.sanitize import sanitize
from reasonchat.search_query import SEARCH_HELP, WITHIN
from reasonchat.store import ConversationSummary, Store, existing_database

SHORT_ID = 8
MIN_TITLE_WIDTH = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser("list", help="list saved conversations, most recent first")
    sub.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    sub.add_argument(
        "--search",
        metavar="TEXT",
        help=SEARCH_HELP,
    )
    sub.add_argument(
        "--in",
        dest="within",
        choices=WITHIN,
        help="look for the words of --search in the question, the reasoning or the answer only",
    )
    sub.set_defaults(func=_list)

    sub = subparsers.add_parser("export", help="write a saved conversation to stdout or a file")
    sub.add_argument(
        "id",
        metavar="ID",
        nargs="?",
        help="a conversation id, or a unique prefix of one (train and preference: every conversation"
        " when left out)",
    )
    sub.add_argument(
        "--format",
        choices=(*transfer.EXPORTERS, *curation.FORMATS),
        default="markdown",
        help="markdown (to read), json (the full record, for replay), history (the model card's"
        " role/content list), train (JSONL that 'reasonchat train --data' reads: each conversation's"
        " active path) or preference (JSONL prompt/chosen/rejected rows from turns with a version"
        " marked good and one marked bad); default: markdown",
    )
    sub.add_argument(
        "--marked",
        action="store_true",
        help="with --format train: only the versions marked good, one example each",
    )
    sub.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE: a regular file is replaced atomically (mode 0600), a FIFO or device is"
        " written in place, a symbolic link is refused",
    )
    sub.set_defaults(func=_export)

    sub = subparsers.add_parser(
        "import", help="save a history list or a json export as a new conversation"
    )
    sub.add_argument("file", metavar="FILE", help="the file to read; - reads stdin")
    sub.set_defaults(func=_import)

    sub = subparsers.add_parser("delete", help="delete a saved conversation")
    sub.add_argument("id", metavar="ID", help="a conversation id, or a unique prefix of one")
    sub.set_defaults(func=_delete)


def _list(args: argparse.Namespace) -> int:
    database = existing_database(args.data_dir)
    summaries: list[ConversationSummary] = []
    # Listing must not create the database (or its directory) on a machine that never saved one.
    if database is not None:
        with Store(database) as store:
            summaries = store.list(search=args.search, within=args.within)
    if args.json:
        write_json([_summary_dict(s) for s in summaries])
    elif summaries:
        write_text(_table(summaries))
    else:
        print("no conversations" + (" match" if args.search else " saved yet"), file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.marked and args.format != "train":
        raise UserError("--marked goes with --format train")
    if args.format in curation.FORMATS:
        data = curation.export(_conversations(args.data_dir, args.id), args.format, args.marked).encode()
    elif args.id is None:
        raise UserError(f"--format {args.format} exports one conversation: give its ID")
    else:
        with _existing(args.data_dir, args.id) as (store, conv_id):
            conv = store.get(conv_id)
        data = transfer.export_bytes(conv, args.format)
    if args.output:
        transfer.write_atomically(Path(args.output), data)
    else:
        write_bytes(data)
    return 0


def _import(args: argparse.Namespace) -> int:
    # Parsed in full before the store is opened: a bad file leaves nothing behind.
    if args.file == "-":
        conv = transfer.load_bytes(sys.stdin.buffer.read(), "<stdin>")
    else:
        conv = transfer.load_file(args.file)
    conv.id = new_id()
    with Store.open(args.data_dir) as store:
        store.save(conv)
    write_text(conv.id + "\n")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _existing(args.data_dir, args.id) as (store, conv_id):
        store.delete(conv_id)
    write_text(f"deleted {conv_id}\n")
    return 0


@contextmanager
def _existing(data_dir: str | None, id_or_prefix: str) -> Iterator[tuple[Store, str]]:
    """The store and the full id of an existing conversation, without creating a database."""
    database = existing_database(data_dir)
    if database is None:
        raise UserError(f"no conversation with id {id_or_prefix!r}")
    with Store(database) as store:
        yield store, store.resolve(id_or_prefix)


def _conversations(data_dir: str | None, id_or_prefix: str | None) -> list[Conversation]:
    """The conversation ``id_or_prefix``, or every saved one (oldest first) when it is None."""
    if id_or_prefix is not None:
        with _existing(data_dir, id_or_prefix) as (store, conv_id):
            return [store.get(conv_id)]
    database = existing_database(data_dir)
    if database is None:
        return []
    with Store(database) as store:
        return [store.get(summary.id) for summary in reversed(store.list())]


# --- output --------------------------------------------------------------------------------------


def _summary_dict(summary: ConversationSummary) -> dict[str, object]:
    return {
        "id": summary.id,
        "title": summary.title,
        "turns": summary.turns,
        "versions": summary.versions,
        "created": summary.created,
        "updated": summary.updated,
        "model": summary.model,
        "tokens": summary.tokens,
        "snippet": summary.snippet,
    }


def _table(summaries: list[ConversationSummary]) -> str:
    width = shutil.get_terminal_size().columns
    lines = [_row("ID", "UPDATED", "TURNS", "TITLE")]
    title_width = max(MIN_TITLE_WIDTH, width - len(lines[0]) + len("TITLE"))
    indent = " " * (SHORT_ID + 2)
    for s in summaries:
        title = " ".join(sanitize(s.title).split()) or "(untitled)"
        lines.append(_row(s.id[:SHORT_ID], local_time(s.updated), str(s.turns), title))
        lines[-1] = _clip(lines[-1], len(lines[-1]) - len(title) + title_width)
        if s.snippet is not None:
            lines.append(indent + _clip(s.snippet, max(width - len(indent), MIN_TITLE_WIDTH)))
    return "\n".join(lines) + "\n"


def _row(short_id: str, updated: str, turns: str, title: str) -> str:
    return f"{short_id:<{SHORT_ID}}  {updated:<16}  {turns:>5}  {title}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
