"""Building the app around a scripted (or given) backend, and waiting on it from a Pilot."""

from __future__ import annotations

import argparse
import html
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from textual.pilot import Pilot

from reasonchat.cli.app_commands import register as register_app_commands
from reasonchat.conversation import Stage, StageStats
from reasonchat.engine.protocol import Backend, StageRequest, StageStream
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.store import Store
from reasonchat.tui.app import ReasonchatApp
from reasonchat.tui.options import AppOptions
from reasonchat.tui.screens.chat import ChatScreen

WIDE = (120, 32)
SMALL = (80, 24)


def make_app(
    backend: Backend | None = None,
    *,
    loader: Callable[[Callable[[str], None]], Backend] | None = None,
    store: Store | None = None,
    **options: Any,
) -> ReasonchatApp:
    backend = backend or ScriptedBackend()
    return ReasonchatApp(
        AppOptions(
            load_backend=loader or (lambda progress: backend),
            model_label="scripted",
            store=store,
            **options,
        )
    )


def chat_args(*argv: str) -> argparse.Namespace:
    """``reasonchat chat ARGV`` parsed as the real command line does (``--data-dir`` included)."""
    parser = argparse.ArgumentParser(prog="reasonchat")
    parser.add_argument("--data-dir")
    register_app_commands(parser.add_subparsers())
    return parser.parse_args(["chat", *argv])


def chat(app: ReasonchatApp) -> ChatScreen:
    for screen in app.screen_stack:
        if isinstance(screen, ChatScreen):
            return screen
    raise AssertionError("no chat screen")


async def wait_for(pilot: Pilot, condition: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await pilot.pause(0.02)


async def wait_ready(pilot: Pilot, timeout: float = 60.0) -> None:
    await wait_for(pilot, lambda: chat(pilot.app).session is not None, timeout)


async def wait_idle(pilot: Pilot, timeout: float = 60.0) -> None:
    screen = chat(pilot.app)
    await wait_for(pilot, lambda: not screen.busy, timeout)
    await pilot.pause()


async def send(pilot: Pilot, text: str) -> None:
    composer = chat(pilot.app).composer
    composer.focus()
    composer.load_text(text)
    await pilot.press("enter")


class PausingBackend(ScriptedBackend):
    """Plays ``pause_after`` tokens of a stage, then holds until the run is cancelled: a generation
    frozen mid-stage, for snapshots and for tests that must act while a stage is streaming."""

    def __init__(self, pause_stage: Stage = "reasoning", pause_after: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pause_stage = pause_stage
        self.pause_after = pause_after
        self.paused = threading.Event()

    def stream(self, request: StageRequest) -> StageStream:
        inner = super().stream(request)
        if request.stage != self.pause_stage:
            return inner
        return _Pausing(self, inner, request)


class _Pausing:
    def __init__(self, backend: PausingBackend, inner: StageStream, request: StageRequest) -> None:
        self.backend = backend
        self.inner = inner
        self.request = request
        self.stats: StageStats = inner.stats

    def __iter__(self) -> Iterator[str]:
        for index, word in enumerate(self.inner):
            yield word
            if index + 1 == self.backend.pause_after:
                self.backend.paused.set()
                self.request.cancel.wait()


def editor_open(app: ReasonchatApp) -> bool:
    """The reasoning (or question) editor is in front, its text area focused: ready for keys."""
    from textual.widgets import TextArea

    from reasonchat.tui.dialogs.edit_reasoning import EditReasoningDialog

    return isinstance(app.screen, EditReasoningDialog) and isinstance(app.focused, TextArea)


def screen_lines(pilot: Pilot) -> list[str]:
    """The screen as text, row by row (from Textual's own SVG export)."""
    svg = pilot.app.export_screenshot()
    rows: dict[float, list[str]] = {}
    for match in re.finditer(r'<text[^>]*y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        rows.setdefault(float(match.group(1)), []).append(html.unescape(match.group(2)))
    return ["".join(parts).replace("\xa0", " ") for _, parts in sorted(rows.items())]
