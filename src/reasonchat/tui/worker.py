"""The bridge between the UI loop and the threads that load the model and generate.

Generation runs ``ChatSession.ask``/``retry`` in a thread. Every event of the run reaches the UI
through one channel, its ``TurnPipe``: a list the thread appends to, with one
``loop.call_soon_threadsafe`` wake-up per batch, which the screen drains; the panes, the meter and
the "Thinking…" line all update from the same coalesced batch (``coalesce``, ``track_usage``). The
producer never waits for the UI (a per-token ``call_from_thread`` blocks it until the UI has painted,
which capped absorption at ~130 tokens/s), and a run's pipe belongs to that run alone, so nothing
from an older run can reach the screen.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

from textual.message import Message

from reasonchat.budget import ContextUsage
from reasonchat.engine.protocol import ContextOverflow
from reasonchat.engine.turn import StageFinished, StageStarted, TextChunk, TurnEvent
from reasonchat.errors import ReasonchatError
from reasonchat.sanitize import sanitize
from reasonchat.session import ChatSession
from reasonchat.tui import gc_policy
from reasonchat.tui.messages import ModelLoaded, ModelLoadFailed, ModelLoadProgress
from reasonchat.tui.options import BackendLoader

Post = Callable[[Message], object]


@dataclass(frozen=True)
class TurnEnded:
    """The last item of a run; a prompt that did not fit, or an unexpected failure, says so."""

    overflow: ContextOverflow | None = None
    error: str | None = None


PipeItem = TurnEvent | TurnEnded
# A stage operation on the session's last turn (``think_more``, a ``reanswer``), given the event sink.
Operation = Callable[[Callable[[TurnEvent], None]], object]


class TurnPipe:
    """Ordered events from one generating thread to the UI loop. ``put`` never blocks.

    The loop is woken once per batch, not once per event: a server streaming thousands of tokens a
    second would otherwise wake it (a write to its self-pipe, a callback) for every token, between
    the appends and paints the user is waiting for."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: list[PipeItem] = []
        self._lock = threading.Lock()
        self._woken = False  # a wake-up is on its way to the loop, and will take what is queued
        self._ready = asyncio.Event()

    def put(self, item: PipeItem) -> None:
        with self._lock:
            self._items.append(item)
            if self._woken:
                return
            self._woken = True
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the app has exited and closed its loop: nobody is left to show it
            pass

    async def batches(self) -> AsyncIterator[list[PipeItem]]:
        """Everything queued so far, at each wake-up, until the run has ended."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            with self._lock:
                batch, self._items = self._items, []
                self._woken = False
            if not batch:
                continue
            yield batch
            if isinstance(batch[-1], TurnEnded):
                return


@dataclass
class Run:
    """One generation: its pipe to the UI, and the flags its thread shares with the UI."""

    pipe: TurnPipe
    # Set by the UI on Esc. The session ignores a cancel that arrives before its run has started, so
    # the thread passes this one on at every event until the run stops.
    cancel: threading.Event = field(default_factory=threading.Event)
    # Set by the thread once the turn is saved, whatever happened.
    done: threading.Event = field(default_factory=threading.Event)


def coalesce(batch: list[PipeItem]) -> list[PipeItem]:
    """Merge consecutive text chunks of one stage: one Markdown append instead of dozens. (A run
    of chunks is joined once: a ``replace`` per chunk cost the UI thread ~5 ms a batch.)"""
    merged: list[PipeItem] = []
    run: list[TextChunk] = []

    def flush() -> None:
        if len(run) == 1:
            merged.append(run[0])
        elif run:
            merged.append(replace(run[-1], text="".join(chunk.text for chunk in run)))
        run.clear()

    for item in batch:
        if isinstance(item, TextChunk) and (not run or run[-1].stage == item.stage):
            run.append(item)
            continue
        flush()
        if isinstance(item, TextChunk):
            run.append(item)
        else:
            merged.append(item)
    flush()
    return merged


def track_usage(usage: ContextUsage, event: TurnEvent) -> ContextUsage:
    """The meter after ``event``: the reasoning prompt (history plus the new message), then what each
    stage has generated so far."""
    if isinstance(event, StageStarted) and event.stage == "reasoning":
        return replace(usage, prompt=event.prompt_tokens)
    if isinstance(event, TextChunk | StageFinished):
        if isinstance(event, TextChunk):
            tokens = event.new_tokens
        else:
            tokens = event.stats.new_tokens if event.stats is not None else 0
        if event.stage == "reasoning":
            return replace(usage, reasoning=max(usage.reasoning, tokens))
        return replace(usage, answer=max(usage.answer, tokens))
    return usage


def describe(error: BaseException) -> str:
    """One line for a dialog: our errors are written for users; others get their type name."""
    if isinstance(error, ReasonchatError):
        return str(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def generate(session: ChatSession, text: str | None, run: Run, operation: Operation | None = None) -> None:
    """Thread body: ask ``text`` (or regenerate the last turn when ``None``, or run ``operation`` when
    given) and forward every event.

    Model text goes as it is: the panes sanitize it (across chunk boundaries) where it is shown.
    """
    pipe = run.pipe

    def on_event(event: TurnEvent) -> None:
        if run.cancel.is_set():
            session.cancel()
        pipe.put(event)

    try:
        if operation is not None:
            operation(on_event)
        elif text is not None:
            session.ask(text, on_event)
        else:
            session.retry(on_event)
    except ContextOverflow as err:
        pipe.put(TurnEnded(overflow=err))
    except Exception as err:  # the app must outlive any failure of a run
        pipe.put(TurnEnded(error=describe(err)))
    else:
        pipe.put(TurnEnded())
    finally:
        run.done.set()


def start_loading(load: BackendLoader, post: Post) -> None:
    """Load the model in a daemon thread, reporting through ``post``.

    Not a Textual worker: those run in the loop's default executor, which ``asyncio.run`` joins at exit,
    so quitting while a large checkpoint loads would hang until it had loaded.
    """

    def body() -> None:
        try:
            backend = load(lambda message: post(ModelLoadProgress(sanitize(message))))
        except Exception as err:  # includes torch's out-of-memory errors
            post(ModelLoadFailed(describe(err)))
        else:
            # The model (torch's modules, a tokenizer) lives as long as the app: frozen here, in
            # this thread, while the user waits for it anyway.
            gc_policy.freeze_long_lived("model")
            post(ModelLoaded(backend))

    threading.Thread(target=body, name="reasonchat-load", daemon=True).start()
