"""``reasonchat ask``: one question through both stages, streamed to the terminal and saved."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reasonchat.cli.openai_options import add_backend_arguments, open_selected_backend
from reasonchat.cli.output import OutputError, write_json
from reasonchat.cli.model_options import (
    add_generation_arguments,
    add_model_arguments,
    context_limit,
    effective_config,
    generation_settings,
)
from reasonchat.conversation import STAGES, Conversation, StageStats, Turn
from reasonchat.engine.protocol import ContextOverflow
from reasonchat.errors import UserError
from reasonchat.sanitize import ScreenStream, StreamSanitizer, sanitize
from reasonchat.template import DEFAULT_SYSTEM_PROMPT
from reasonchat.variants import versions
from reasonchat.vote import MAX_SAMPLES, final_answer, vote


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ask",
        help="ask one question (reasoning, then answer)",
        description="Ask one question: the model reasons, then answers. The turn is saved.",
    )
    parser.add_argument("question", help="the question ('-' reads it from stdin)")
    parser.add_argument("--continue", dest="continue_id", metavar="ID", help="add the turn to a saved conversation")
    parser.add_argument(
        "--system", metavar="TEXT", help=f"system prompt (default: the config's, else {DEFAULT_SYSTEM_PROMPT!r})"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--no-save", action="store_true", help="do not store the turn")
    parser.add_argument(
        "--samples",
        type=int,
        default=1,
        metavar="N",
        help="think N times (needs --temperature above 0): N reasonings, each with its answer, kept as"
        " the turn's versions, and how many answers agree",
    )
    written = parser.add_mutually_exclusive_group()
    written.add_argument(
        "--reasoning", metavar="TEXT", help="answer from this reasoning instead of the model's own"
    )
    add_reasoning_file_argument(written, "answer from the reasoning in FILE ('-': stdin)")
    written.add_argument(
        "--no-reasoning", action="store_true", help="no reasoning: the model answers straight away"
    )
    add_model_arguments(parser)
    add_backend_arguments(parser)
    add_generation_arguments(parser)
    parser.set_defaults(func=run)


def read_question(text: str) -> str:
    if text == "-":
        # Decoded here, not by the locale: its strict decoding would end in a traceback at the first
        # byte that is not UTF-8.
        raw = getattr(sys.stdin, "buffer", None)
        text = raw.read().decode("utf-8", "replace") if raw is not None else sys.stdin.read()
        if text.endswith("\n"):
            text = text[:-1]
    if not text.strip():
        raise UserError("the question is empty")
    return text


def add_reasoning_file_argument(parser: argparse._ActionsContainer, help: str) -> None:
    parser.add_argument("--reasoning-file", metavar="FILE", help=help)


def read_reasoning_file(path: str) -> str:
    """A reasoning the user wrote, from a file or ('-') stdin; a trailing newline (every editor adds
    one) is not part of it."""
    if path == "-":
        raw = getattr(sys.stdin, "buffer", None)
        text = raw.read().decode("utf-8", "replace") if raw is not None else sys.stdin.read()
    else:
        try:
            text = Path(path).read_bytes().decode("utf-8", "replace")
        except OSError as err:
            raise UserError(f"cannot read the reasoning file {path}: {err.strerror or err}") from None
    return text[:-1] if text.endswith("\n") else text


def given_reasoning(args: argparse.Namespace) -> str | None:
    """The reasoning ``ask`` was given to answer from ("": none at all), or None: the model's own."""
    if getattr(args, "no_reasoning", False):
        return ""
    if getattr(args, "reasoning", None) is not None:
        return args.reasoning
    if args.reasoning_file is not None:
        return read_reasoning_file(args.reasoning_file)
    return None


def run(args: argparse.Namespace) -> int:
    from reasonchat.session import ChatSession, placed_after_notice
    from reasonchat.store import Store

    if args.question == "-" and args.reasoning_file == "-":
        raise UserError("the question and the reasoning cannot both come from stdin")
    question = read_question(args.question)
    reasoning = given_reasoning(args)
    for problem in effective_config(args).problems:
        print(f"reasonchat: warning: {sanitize(problem)}", file=sys.stderr)
    settings = generation_settings(args)
    limit = context_limit(args)
    store = None if args.no_save else Store.open(args.data_dir)
    if args.continue_id:
        if store is None:
            store = Store.open(args.data_dir)
        conversation = store.get(store.resolve(args.continue_id))
        if args.system is not None:
            raise UserError("--system cannot change the system prompt of a saved conversation")
        if args.no_save:
            store.close()
            store = None
    else:
        conversation = Conversation(system_prompt=effective_config(args).config.system_prompt)

    if args.samples != 1 and (reasoning is not None or not settings.temperature or not 1 <= args.samples <= MAX_SAMPLES):
        if reasoning is not None:
            raise UserError("--samples samples the model's reasoning: it cannot go with a given one")
        if not settings.temperature:
            raise UserError("--samples needs --temperature above 0 (greedy decoding gives one answer)")
        raise UserError(f"--samples must be from 1 to {MAX_SAMPLES}, not {args.samples}")
    out = Output(json_mode=args.json, samples=args.samples)
    backend = open_selected_backend(args, progress=out.progress)
    session = ChatSession(
        backend, conversation, store=store, settings=settings, context_limit=limit
    )
    try:
        with cancel_on_sigint(session):
            turn = session.ask(question, on_event=out.event, reasoning=reasoning)
            if args.samples > 1 and exit_code(turn) == 0:
                session.sample(args.samples - 1, on_event=out.event)
        code = exit_code(turn)
    except ContextOverflow as err:
        if err.stage == "reasoning":
            raise
        # The reasoning was generated and saved; the answer's stats carry the message, shown already.
        turn, code = conversation.turns[-1], err.exit_code
    finally:
        if store is not None:
            store.close()
    out.finish(conversation, turn, limit, saved=store is not None)
    if session.placed_after:
        print(f"reasonchat: note: {placed_after_notice(session.placed_after)}", file=sys.stderr)
    return code


def exit_code(turn: Turn) -> int:
    reasons = [s.stop_reason for s in (turn.reasoning_stats, turn.answer_stats) if s]
    if "error" in reasons:
        return 1
    if "cancelled" in reasons:
        return 130
    return 0


@contextmanager
def cancel_on_sigint(session: Any) -> Iterator[None]:
    """First Ctrl+C cancels generation (the partial turn is saved); a second one interrupts."""
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, previous)
        session.cancel()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Output:
    """Streams events to stdout: dim, labelled reasoning then the answer on a TTY; plain text when piped."""

    def __init__(self, json_mode: bool, samples: int = 1) -> None:
        from rich.console import Console

        self.json_mode = json_mode
        self.samples = samples  # more than 1: the turn's versions were sampled, and are voted on
        self.tty = sys.stdout.isatty()
        self.console = Console(soft_wrap=True, highlight=False)
        # Rich's own answer to a reader that left (``| head``) is SystemExit, mid-turn: the turn would
        # be lost. The pipe error is kept like any stdout failure instead.
        self.console.on_broken_pipe = _reader_left  # type: ignore[method-assign]
        self.err = Console(stderr=True, soft_wrap=True, highlight=False)
        self.stage: str | None = None
        # One per stage: a sequence split across two chunks must not show its second half. On a
        # terminal, invisible characters (bidi overrides, zero-width spaces) are shown as <U+XXXX>;
        # piped output keeps them, as the stored text does.
        self.sanitizer: ScreenStream | StreamSanitizer = StreamSanitizer()
        # Set when stdout fails: generation goes on and the turn is saved; ``finish`` reports it.
        self.failure: BaseException | None = None

    def progress(self, message: str) -> None:
        if self.err.is_terminal:
            self.err.print(f"[dim]{sanitize(message)}…[/dim]")

    def event(self, event: Any) -> None:
        from reasonchat.engine.turn import StageFinished, TextChunk

        if isinstance(event, StageFinished) and self.json_mode:
            self._report_stop(event.stage, event.stats)
        if self.json_mode:
            return
        if isinstance(event, TextChunk):
            if event.stage != self.stage:
                self._label(event.stage)
            self._write(self.sanitizer.feed(event.text), event.stage)
        elif isinstance(event, StageFinished):
            if event.stage != self.stage:
                self._label(event.stage)
            self._write(self.sanitizer.flush() + "\n", event.stage)
            self._report_stop(event.stage, event.stats)

    def _label(self, stage: str) -> None:
        # A line between the two stages; none before an answer alone (a reasoning not generated).
        between = stage == "answer" and self.stage is not None
        self.stage = stage
        self.sanitizer = ScreenStream() if self.tty else StreamSanitizer()
        label = "Reasoning" if stage == "reasoning" else "Answer"
        if between:
            self._write("\n", stage)
        if self.tty:
            self._print(f"[bold]{label}[/bold]", style="dim" if stage == "reasoning" else None)
        else:
            self._print(f"{label}:", markup=False)

    def _write(self, text: str, stage: str) -> None:
        if not text:
            return  # all held back: printing "" would still flush for nothing
        style = "dim" if self.tty and stage == "reasoning" else None
        self._print(text, end="", style=style, markup=False)

    def _print(self, text: str, **options: Any) -> None:
        if self.failure is not None:
            return
        try:
            self.console.print(text, **options)
            self.console.file.flush()
        except (OSError, OutputError) as err:
            self.failure = err

    def _report_stop(self, stage: str, stats: StageStats) -> None:
        if stats.stop_reason in ("budget", "max_new_tokens"):
            then = "; answering from it" if stage == "reasoning" else ""
            self.err.print(f"({stage} cut at its budget: {stats.new_tokens} tokens{then})", markup=False)
        elif stats.stop_reason == "answer_now":
            self.err.print(f"(reasoning ended at {stats.new_tokens} tokens; answering now)", markup=False)
        elif stats.stop_reason == "cancelled":
            self.err.print(f"({stage} cancelled; the partial turn was kept)", markup=False)
        elif stats.stop_reason == "error":
            self.err.print(f"reasonchat: error: {sanitize(stats.error or 'generation failed')}", markup=False)

    def finish(self, conversation: Conversation, turn: Turn, limit: int, saved: bool) -> None:
        """The JSON object or the saved note, then the stdout failure if there was one."""
        if self.failure is None:
            try:
                self._finish(conversation, turn, limit, saved)
            except (OSError, OutputError) as err:
                self.failure = err
        failure = self.failure
        if failure is None:
            return
        if isinstance(failure, BrokenPipeError):
            raise failure  # the reader left (``| head``): ``main`` ends quietly
        if isinstance(failure, OSError):  # unguarded (``main`` turns these into ``OutputError``)
            failure = OutputError.from_os_error(failure)
        raise OutputError(f"{failure}" + (f"; the turn was saved as {conversation.id}" if saved else ""))

    def _finish(self, conversation: Conversation, turn: Turn, limit: int, saved: bool) -> None:
        if not self.json_mode:
            if self.samples > 1:  # the answers' agreement
                agreed = vote(v.answer_text for v in versions(turn)).describe()
                self._print("\nvote: " + sanitize(agreed), markup=False)
            if saved and self.err.is_terminal:
                self.err.print(f"[dim]saved as {conversation.id}[/dim]")
            return
        data = {
            "conversation_id": conversation.id,
            "saved": saved,
            "reasoning": turn.reasoning,
            "reasoning_source": turn.reasoning_source,
            "answer": turn.answer,
            "context": {"used": turn.context_tokens(), "limit": limit},
            "stages": {stage: stage_json(turn.stats(stage)) for stage in STAGES},
        } | {
            # What the model first wrote, when the answer came from another reasoning (``reanswer``).
            key: value
            for key in ("original_reasoning", "original_answer")
            if (value := getattr(turn, key)) is not None
        }
        if turn.changed:
            data["variants"] = [
                {"version": v.name, "active": v.active, "source": v.source, "mark": v.mark,
                 "reasoning": v.reasoning_text, "answer": v.answer_text, "final": final_answer(v.answer_text)}
                for v in versions(turn)
            ]  # fmt: skip
        if self.samples > 1:
            agreed = vote(v.answer_text for v in versions(turn))
            data["vote"] = {"answer": agreed.answer, "count": agreed.count, "samples": agreed.samples,
                            "share": agreed.share}  # fmt: skip
        write_json(data)


def _reader_left() -> None:
    raise BrokenPipeError(errno.EPIPE, "the reader of stdout left")


def stage_json(stats: StageStats | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {
        "prompt_tokens": stats.prompt_tokens,
        "cached_tokens": stats.cached_tokens,
        "new_tokens": stats.new_tokens,
        "ttft_s": stats.ttft_s,
        "decode_s": stats.decode_s,
        "tokens_per_s": stats.tokens_per_s,
        "stop_reason": stats.stop_reason,
        "error": stats.error,
    }
