"""Conversations to and from files: Markdown to read, JSON to keep or replay, the card's history.

Pure (no torch, no textual). JSON is written in one canonical form, so importing a file in that form
and exporting it again gives the same bytes.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reasonchat.conversation import SOURCE_WORDS, Conversation, StageStats, Turn
from reasonchat.errors import UserError
from reasonchat.sanitize import sanitize
from reasonchat.unicode_text import valid_strings

FORMAT_NAME = "reasonchat.conversation"
FORMAT_VERSION = 1

# json.dumps escapes C0 controls itself; DEL and C1 pass through raw, and a terminal acts on C1. A
# lone surrogate cannot be encoded at all, and a stdout with ``surrogateescape`` turns U+DC9B into the
# raw byte 0x9B (an 8-bit CSI).
_UNSAFE_FOR_TERMINAL = re.compile("[\x7f-\x9f\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def canonical_json(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as UTF-8-friendly, indented JSON that is still safe to ``cat`` in a terminal
    (``indent=None``: on one line, for JSONL).

    All machine output (``--json``, exports) is this: every control character and lone surrogate is a
    ``\\uXXXX`` escape, so the text is exact once parsed and no byte of it acts on a terminal."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent) + "\n"
    # Outside strings JSON is plain ASCII, so these characters can only sit inside a string.
    return _UNSAFE_FOR_TERMINAL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def to_json(conv: Conversation) -> str:
    """The full record: everything needed to reopen or replay the conversation."""
    return canonical_json(
        {"format": FORMAT_NAME, "version": FORMAT_VERSION, "conversation": conv.to_dict()}
    )


def to_history_json(conv: Conversation) -> str:
    """The model card's ``history`` list: ``[{"role": ..., "content": ...}, ...]``."""
    return canonical_json(conv.history())


def to_markdown(conv: Conversation) -> str:
    """A human-readable transcript; all text is sanitized for the terminal."""
    lines = [f"# {_one_line(conv.title) or '(untitled)'}", ""]
    lines += [f"- id: `{conv.id}`", f"- created: {conv.created}", f"- updated: {conv.updated}"]
    if conv.model:
        lines.append(f"- model: `{_one_line(conv.model)}`")
    lines.append("")
    if conv.system_prompt is not None:
        lines += ["## System prompt", "", sanitize(conv.system_prompt), ""]
    for number, turn in enumerate(conv.turns, start=1):
        lines += _turn_markdown(number, turn)
    return "\n".join(lines).rstrip("\n") + "\n"


def _as_written(text: str) -> str:
    """Terminal-safe, with its single newlines kept as line breaks by any Markdown renderer."""
    # Imported here: markdown-it is for Markdown exports, not for reading a file to replay.
    from reasonchat.line_breaks import with_hard_breaks

    return with_hard_breaks(sanitize(text))


def _turn_markdown(number: int, turn: Turn) -> list[str]:
    lines = [f"## Turn {number}", "", "**User**", "", _as_written(turn.user), ""]
    if turn.reasoning is not None:
        # The model's own needs no note: it is what every reasoning was before users could step in.
        source = "" if turn.reasoning_source == "model" else f" *({SOURCE_WORDS[turn.reasoning_source]})*"
        lines += [f"**Reasoning**{source}", ""]
        lines += [f"> {line}".rstrip() for line in _as_written(turn.reasoning).split("\n")]
        lines += [""] + _stop_note("Reasoning", turn.reasoning_stats)
    if turn.answer is not None:
        lines += ["**Answer**", "", _as_written(turn.answer), ""]
        lines += _stop_note("Answer", turn.answer_stats)
    if turn.mark is not None:
        lines += [f"*Marked {turn.mark}.*", ""]
    for r, variant in enumerate(turn.variants):
        for a, other in enumerate(variant.answers):
            if (r, a) == turn.position:
                continue
            mark = f", marked {other.mark}" if other.mark else ""
            lines += [f"*Another version (reasoning {r + 1}, answer {a + 1}: {SOURCE_WORDS[variant.source]}{mark}):*", ""]
            if variant.reasoning is not None:
                lines += [f"> {line}".rstrip() for line in _as_written(variant.reasoning).split("\n")] + [""]
            if other.answer is not None:
                lines += [_as_written(other.answer), ""]
    return lines


def _stop_note(stage: str, stats: StageStats | None) -> list[str]:
    if stats is None or stats.stop_reason in (None, "eos"):
        return []
    note = f"*{stage} stopped: {stats.stop_reason}"
    if stats.error:
        note += f" ({_one_line(stats.error)})"
    return [note + "*", ""]


def _one_line(text: str) -> str:
    return " ".join(sanitize(text).split())


# (writer, file extension) by the name users pick: ``export --format``, the app's export dialog.
EXPORTERS: dict[str, tuple[Callable[[Conversation], str], str]] = {
    "markdown": (to_markdown, ".md"),
    "json": (to_json, ".json"),
    "history": (to_history_json, ".history.json"),
}


def export_bytes(conv: Conversation, format_name: str) -> bytes:
    return EXPORTERS[format_name][0](conv).encode("utf-8")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``; ``UserError`` (one line) if it cannot be written.

    A new path or a regular file is written (mode 0600) through a temporary file beside it: readers
    see the old file or the new one, never half of it. Nothing else is ever replaced: a FIFO or a
    character device (a terminal, ``/dev/null``; ``/dev/full`` fails with one line) is written in
    place, as a shell's ``>`` would, and a symbolic link (``/dev/stdout`` too), a directory, a block
    device or a socket is refused, naming what it is. A link is refused rather than followed: renaming over its target would bypass the
    kernel's protection against links planted in shared directories, and replacing the link itself
    would silently cut it; the message names the target to give instead.
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from None
    if mode is None or stat.S_ISREG(mode):
        _replace(path, data)
    elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        _write_in_place(path, data)
    elif stat.S_ISLNK(mode):
        raise UserError(
            f"{path} is a symbolic link to {os.readlink(path)}; exports do not follow links: give the"
            " path of its target"
        )
    else:
        raise UserError(f"cannot write {path}: it is {_kind(mode)}; only a regular file is replaced")


def _replace(path: Path, data: bytes) -> None:
    import tempfile  # here: a replay reads files and never writes one

    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        os.unlink(temporary)
        if isinstance(err, OSError):
            raise UserError(f"cannot write {path}: {err.strerror}") from None
        raise


def _write_in_place(path: Path, data: bytes) -> None:
    # No O_CREAT: if it was swapped for something else meanwhile, this fails instead of creating a
    # file; O_NOFOLLOW: nor does it follow a link put there since the check.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NOFOLLOW)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}") from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


# --- import --------------------------------------------------------------------------------------


def load_file(path: str | Path) -> Conversation:
    """Read a card-style history list or our JSON export; ``UserError`` (one line) if unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    return load_bytes(data, str(path))


def load_bytes(data: bytes, source: str) -> Conversation:
    """Parse file contents; ``source`` names the input in error messages."""
    try:
        # utf-8-sig: a byte-order mark from a Windows editor is not an error.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{source}: not UTF-8 text (byte {err.start})") from None
    try:
        obj = json.loads(text)
        # A "\\ud800" escape parses to a lone surrogate, which no store or stdout could encode. Text
        # decoded from UTF-8 holds none, so only a file with such an escape needs the walk (a 2 MB
        # export has ~90,000 strings: the walk would add tens of milliseconds to every replay).
        if _SURROGATE_ESCAPE.search(text):
            obj = valid_strings(obj)
    except json.JSONDecodeError as err:
        raise UserError(f"{source}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None
    try:
        conv = _conversation_from(obj)
    except (ValueError, TypeError) as err:
        raise UserError(f"{source}: {err}") from None
    if not conv.turns:
        raise UserError(f"{source}: no user message to import")
    return conv


def _conversation_from(obj: Any) -> Conversation:
    if isinstance(obj, list):
        return Conversation.from_history(obj)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise ValueError(
            f"not a history list or a {FORMAT_NAME} export (expected a list of role/content"
            f' messages, or an object with "format": "{FORMAT_NAME}")'
        )
    if obj.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{FORMAT_NAME} version {obj.get('version')!r} is not supported"
            f" (this reasonchat reads version {FORMAT_VERSION})"
        )
    return Conversation.from_dict(obj.get("conversation"))
