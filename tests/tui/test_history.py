"""The history screen (ctrl+o) driven by a Pilot over a real store on disk: browse, search as you type,
open and continue, rename, delete, export, replay, the command palette, a busy chat, a damaged row."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.command import CommandList
from textual.pilot import Pilot
from textual.widgets import Input, RadioButton, Static

from reasonchat import transfer
from reasonchat.conversation import Conversation, StageStats, Turn, local_time
from reasonchat.engine.protocol import StageRequest, StageStream
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.errors import UserError
from reasonchat.store import Store
from reasonchat.tui.app import ReasonchatApp
from reasonchat.tui.dialogs.confirm import ConfirmDialog
from reasonchat.tui.dialogs.export import ExportDialog
from reasonchat.tui.dialogs.rename import RenameDialog
from reasonchat.tui.screens.chat import ChatScreen
from reasonchat.tui.screens.history import HistoryScreen
from reasonchat.tui.screens.replay import ReplayScreen
from reasonchat.tui.widgets.transcript import TranscriptTurn
from tests.tui.helpers import (
    WIDE,
    PausingBackend,
    chat,
    make_app,
    send,
    wait_for,
    wait_idle,
    wait_ready,
)

SKY, RUST, BREAD = "5ca1ab1e0001", "5ca1ab1e0002", "5ca1ab1e0003"


def stats(prompt: int, new: int) -> StageStats:
    return StageStats(prompt_tokens=prompt, new_tokens=new, stop_reason="eos")


def seeded(store: Store) -> dict[str, Conversation]:
    """Three saved conversations, updated on three different days (the sky one last)."""
    sky = Conversation(
        id=SKY,
        title="Why is the sky blue?",
        created="2025-01-03T09:00:00.000+00:00",
        updated="2025-01-03T09:30:00.000+00:00",
        model="scripted",
        turns=[
            Turn("Why is the sky blue?", "Air scatters short wavelengths: Rayleigh scattering.",
                 "Because of **Rayleigh** scattering.", stats(40, 9), stats(55, 6), "2025-01-03T09:00:00.000+00:00"),
            Turn("And sunsets?", "Long path through air; blue is scattered away.",
                 "The light travels through more air, so red remains.", stats(80, 8), stats(1200, 34),
                 "2025-01-03T09:30:00.000+00:00"),
        ],
    )  # fmt: skip
    rust = Conversation(
        id=RUST,
        title="Rust lifetimes",
        created="2025-01-02T12:00:00.000+00:00",
        updated="2025-01-02T12:00:00.000+00:00",
        model="other-model",
        turns=[Turn("What does the borrow checker do?", "It checks references.", "It proves references stay valid.",
                    created="2025-01-02T12:00:00.000+00:00")],
    )  # fmt: skip
    bread = Conversation(
        id=BREAD,
        title="Sourdough starter",
        created="2025-01-01T08:00:00.000+00:00",
        updated="2025-01-01T08:20:00.000+00:00",
        model="scripted",
        turns=[
            Turn(f"Step {n}: flour and water?", f"Feeding number {n}.", f"Feed it again ({n}).", stats(10 * n, 3),
                 stats(20 * n, 4), f"2025-01-01T08:{n:02d}:00.000+00:00")
            for n in range(1, 4)
        ],
    )  # fmt: skip
    for conv in (bread, rust, sky):
        store.save(conv)
    return {c.id: store.get(c.id) for c in (sky, rust, bread)}


@pytest.fixture
def saved(store: Store) -> dict[str, Conversation]:
    return seeded(store)


# --- driving the screen --------------------------------------------------------------------------


async def open_history(pilot: Pilot) -> HistoryScreen:
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, HistoryScreen))
    screen = pilot.app.screen
    assert isinstance(screen, HistoryScreen)
    await wait_loaded(pilot, screen)
    return screen


async def wait_loaded(pilot: Pilot, screen: HistoryScreen) -> None:
    """Until the table shows the results for what the search box holds."""
    await wait_for(pilot, lambda: screen.loaded_query == screen.search_input.value.strip())
    await pilot.pause()


async def type_search(pilot: Pilot, screen: HistoryScreen, text: str) -> None:
    await pilot.press(*text)
    await wait_loaded(pilot, screen)


async def select(pilot: Pilot, screen: HistoryScreen, conv_id: str) -> None:
    """Move the row cursor with the arrow keys (the search box keeps the focus) to ``conv_id``."""
    ids = rows(screen)
    target = ids.index(conv_id)
    key = "down" if target > screen.table.cursor_row else "up"
    for _ in range(abs(target - screen.table.cursor_row)):
        await pilot.press(key)
    await wait_for(pilot, lambda: screen.selected_id == conv_id)
    assert screen.search_input.has_focus


def rows(screen: HistoryScreen) -> list[str]:
    table = screen.table
    return [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]


def cells(screen: HistoryScreen, conv_id: str) -> list[str]:
    return [str(cell) for cell in screen.table.get_row(conv_id)]


def detail(screen: HistoryScreen) -> str:
    return str(screen.query_one("#history-detail", Static).content)


def notifications(app: ReasonchatApp) -> list[str]:
    return [n.message for n in app._notifications]


async def back_to_chat(pilot: Pilot) -> ChatScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ChatScreen))
    await pilot.pause()
    return chat(pilot.app)


def transcript_users(view: ChatScreen) -> list[str]:
    return [t.turn.user for t in view.query(TranscriptTurn)]


def stored_ids(store: Store) -> list[str]:
    return [s.id for s in store.list()]


# --- browse and search ---------------------------------------------------------------------------


async def test_rows_are_listed_most_recent_first_with_turns_and_tokens(
    store: Store, saved: dict[str, Conversation]
) -> None:
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        assert rows(screen) == [SKY, RUST, BREAD]
        sky = saved[SKY]
        assert cells(screen, SKY) == [
            "Why is the sky blue?",
            local_time(sky.updated),
            "    2",
            "  1,234",
            "scripted",
        ]
        assert cells(screen, RUST)[2:] == ["    1", "      0", "other-model"], "no stats: 0 tokens"
        assert cells(screen, BREAD)[2:4] == ["    3", "     64"]
        assert screen.selected_id == SKY and screen.search_input.has_focus
        assert detail(screen) == (
            f"{SKY} · created {local_time(sky.created)} · updated {local_time(sky.updated)}"
        )
        await select(pilot, screen, BREAD)
        assert detail(screen).startswith(f"{BREAD} · created {local_time(saved[BREAD].created)}")
        await pilot.press("up")
        assert screen.selected_id == RUST
        await pilot.press("up", "up")
        assert screen.selected_id == SKY, "the cursor stops at the first row"
        await pilot.press("escape")
        screen_after = await back_to_chat(pilot)
        assert screen_after.conversation.turns == [], "esc changes nothing in the chat"
        assert screen_after.composer.has_focus


async def test_an_empty_store_says_so(store: Store) -> None:
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        assert rows(screen) == [] and detail(screen) == "No saved conversations yet."
        for key in ("enter", "f2", "f8", "ctrl+s", "ctrl+r"):
            await pilot.press(key)
            assert app.screen is screen
        assert set(notifications(app)) == {"No conversation selected."}


async def test_search_as_you_type_narrows_the_rows_and_shows_where_it_matched(
    store: Store, saved: dict[str, Conversation]
) -> None:
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        seen = []
        for letter in "rayl":
            await type_search(pilot, screen, letter)
            seen.append(rows(screen))
        assert seen[0] == [SKY, RUST, BREAD], "'r' is in every conversation"
        assert seen[-1] == [SKY]
        assert all(set(later) <= set(earlier) for earlier, later in itertools.pairwise(seen)), seen
        assert detail(screen).splitlines()[1] == "…r scatters short wavelengths: Rayleigh scattering."

        await pilot.press(*["backspace"] * 4)
        await wait_loaded(pilot, screen)
        assert rows(screen) == [SKY, RUST, BREAD]

        await type_search(pilot, screen, "FLOUR water")
        assert rows(screen) == [BREAD], "every word must match, in any case"
        assert "flour and water" in detail(screen).splitlines()[1]

        await type_search(pilot, screen, "s zzz")
        assert rows(screen) == [] and screen.selected_id is None
        assert detail(screen) == "Nothing matches 'FLOUR waters zzz'."
        await pilot.press("enter")
        assert app.screen is screen and "No conversation selected." in notifications(app)

        screen.search_input.value = "lifetimes"  # in the title only: no snippet
        await wait_loaded(pilot, screen)
        assert rows(screen) == [RUST]
        assert detail(screen).splitlines() == [
            f"{RUST} · created {local_time(saved[RUST].created)} · updated {local_time(saved[RUST].updated)}"
        ]


async def test_titles_with_terminal_escapes_are_shown_safe(store: Store) -> None:
    conv = Conversation(title="\x1b]52;c;aGk=\x07Clip \x1b[31mred\x1b[0m\nline", model="\x1b[2Jmodel")
    conv.turns.append(Turn("hi \x1b[5mthere", "r", "a"))
    store.save(conv)
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        title, _, _, _, model = cells(screen, conv.id)
        assert (title, model) == ("Clip red line", "model")
        await type_search(pilot, screen, "there")
        assert "\x1b" not in detail(screen) and "hi there" in detail(screen)


async def test_titles_and_models_that_look_like_markup_are_shown_as_written(store: Store) -> None:
    """A title is the user's first message (or anything in an imported file): "[/b]" once crashed
    the table (MarkupError) and "[b]" was rendered as styling."""
    odd = Conversation(title="a [/b] c [b]bold?[/b] [@click=app.quit]x[/]", model="[/m] model")
    odd.turns.append(Turn("hi", "r", "a"))
    odd.updated = "[/yesterday]"
    store.save(odd)
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        title, updated, _, _, model = cells(screen, odd.id)
        assert (title, updated, model) == (odd.title, "[/yesterday]", "[/m] model")
        await select(pilot, screen, odd.id)
        await pilot.press("f8", "y")
        await wait_for(pilot, lambda: not screen.table.row_count)
        assert any("a [/b] c" in n for n in notifications(app))


# --- open and continue ---------------------------------------------------------------------------


async def test_open_continues_the_conversation_in_the_chat_and_saves_under_its_id(
    store: Store, saved: dict[str, Conversation]
) -> None:
    sky = saved[SKY]
    app = make_app(ScriptedBackend(), store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await open_history(pilot)
        await pilot.press("enter")
        view = await back_to_chat(pilot)
        assert view.conversation == sky
        assert f"Continuing {sky.title!r}." in notifications(app)
        # The earlier turn goes to the transcript (right after the frame that shows the current one).
        await wait_for(pilot, lambda: transcript_users(view) == ["Why is the sky blue?"])
        assert view.turn_view.pane("reasoning").text == sky.turns[1].reasoning
        assert view.turn_view.pane("answer").text == sky.turns[1].answer
        assert view.composer.has_focus

        await send(pilot, "And at noon?")
        await wait_idle(pilot)
        assert [t.user for t in view.conversation.turns] == [
            "Why is the sky blue?",
            "And sunsets?",
            "And at noon?",
        ]
        assert transcript_users(view) == ["Why is the sky blue?", "And sunsets?"]
        assert view.turn_view.pane("answer").text == "You said: **And at noon?**"
    again = store.get(SKY)
    assert [t.user for t in again.turns] == ["Why is the sky blue?", "And sunsets?", "And at noon?"]
    assert again.turns[:2] == sky.turns and again.title == sky.title
    assert again.turns[2].answer == "You said: **And at noon?**"
    assert sorted(stored_ids(store)) == sorted(saved), "no new conversation was stored"


async def test_a_click_highlights_a_row_and_a_second_click_opens_it(
    store: Store, saved: dict[str, Conversation]
) -> None:
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        third_row = (4, 3)  # below the header line: rows 1, 2, 3
        await pilot.click("#history-table", offset=third_row)
        await wait_for(pilot, lambda: screen.selected_id == BREAD)
        assert app.screen is screen and detail(screen).startswith(BREAD)
        await pilot.click("#history-table", offset=third_row)
        view = await back_to_chat(pilot)
        assert view.conversation == saved[BREAD]
        await wait_for(pilot, lambda: transcript_users(view) == [t.user for t in saved[BREAD].turns[:2]])


async def test_a_search_the_store_cannot_run_is_a_notification(
    store: Store, saved: dict[str, Conversation]
) -> None:
    with sqlite3.connect(store.path) as conn:  # the search index is gone (a damaged file)
        for trigger in ("turns_fts_insert", "turns_fts_delete", "turns_fts_update"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DROP TABLE turns_fts")
    conn.close()
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        assert rows(screen) == [SKY, RUST, BREAD], "listing needs no index"
        await type_search(pilot, screen, "sk")  # short terms need no index
        assert rows(screen) == [SKY] and not notifications(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: notifications(app))
        (message,) = notifications(app)
        assert "no such table: turns_fts" in message and str(store.path) in message
        # The list stays as the last search that ran, and usable.
        assert screen.loaded_query == "sk" and rows(screen) == [SKY] and app.screen is screen
        await pilot.press("enter")
        view = await back_to_chat(pilot)
        assert view.conversation == saved[SKY]


# --- rename --------------------------------------------------------------------------------------


async def rename_selected(pilot: Pilot, title: str) -> None:
    await pilot.press("f2")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RenameDialog))
    field = pilot.app.screen.query_one("#rename-title", Input)
    assert field.has_focus
    field.value = title
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, HistoryScreen))


async def test_rename_changes_the_title_in_the_store_and_the_list(
    store: Store, saved: dict[str, Conversation]
) -> None:
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        await select(pilot, screen, RUST)

        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, RenameDialog))
        assert app.screen.query_one("#rename-title", Input).value == "Rust lifetimes"
        app.screen.query_one("#rename-title", Input).value = "   "
        await pilot.press("enter")
        assert isinstance(app.screen, RenameDialog), "an empty title is refused"
        assert str(app.screen.query_one("#rename-error", Static).content) == "A title cannot be empty."
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        assert store.get(RUST).title == "Rust lifetimes"

        await rename_selected(pilot, "  Borrowing\nin   Rust ")
        await wait_for(pilot, lambda: cells(screen, RUST)[0] == "Borrowing in Rust")
        assert screen.selected_id == RUST, "the cursor stays on the renamed row"
        renamed = store.get(RUST)
        assert renamed.title == "Borrowing in Rust"
        assert renamed.updated == saved[RUST].updated, "a rename does not date the content"
        assert rows(screen) == [SKY, RUST, BREAD]
        await pilot.press("escape")
        view = await back_to_chat(pilot)
        assert view.conversation.turns == []


async def test_renaming_the_open_conversation_survives_the_next_autosave(
    store: Store, saved: dict[str, Conversation]
) -> None:
    app = make_app(ScriptedBackend(), store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await open_history(pilot)
        await pilot.press("enter")  # open the sky conversation
        view = await back_to_chat(pilot)
        opened = view.conversation
        screen = await open_history(pilot)
        await select(pilot, screen, SKY)
        await rename_selected(pilot, "Light and air")
        await pilot.press("enter")  # open it again: it is the open one, kept as it is
        await back_to_chat(pilot)
        assert view.conversation is opened and opened.title == "Light and air"
        await send(pilot, "One more?")
        await wait_idle(pilot)
    again = store.get(SKY)
    assert again.title == "Light and air", "the autosave wrote the old title back"
    assert len(again.turns) == 3


class GatedBackend(ScriptedBackend):
    """Streams ``pause_after`` words of the reasoning, then holds until ``gate`` is set (and the turn
    ends normally) or the run is cancelled."""

    def __init__(self, pause_after: int = 2) -> None:
        super().__init__()
        self.pause_after = pause_after
        self.paused = threading.Event()
        self.gate = threading.Event()

    def stream(self, request: StageRequest) -> StageStream:
        inner = super().stream(request)
        return inner if request.stage != "reasoning" else _Gated(self, inner, request)


class _Gated:
    def __init__(self, backend: GatedBackend, inner: StageStream, request: StageRequest) -> None:
        self.backend, self.inner, self.request = backend, inner, request
        self.stats = inner.stats

    def __iter__(self) -> Iterator[str]:
        for index, word in enumerate(self.inner):
            yield word
            if index + 1 == self.backend.pause_after:
                self.backend.paused.set()
                while not (self.backend.gate.wait(0.01) or self.request.cancel.is_set()):
                    pass


async def test_renaming_the_conversation_that_is_generating_is_not_lost(store: Store) -> None:
    """The generation's autosave writes the whole conversation row: it must carry the new title."""
    backend = GatedBackend()
    app = make_app(backend, store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await send(pilot, "Tell me about tides")
        await wait_for(pilot, backend.paused.is_set)
        conv_id = chat(app).conversation.id
        screen = await open_history(pilot)
        assert screen.busy and rows(screen) == [conv_id]
        await rename_selected(pilot, "Tides")
        assert store.get(conv_id).title == "Tides"
        backend.gate.set()  # the turn goes on and ends while the history is open
        await wait_for(pilot, lambda: not chat(app).busy)
        assert store.get(conv_id).title == "Tides", "the autosaves at the end of each stage kept it"
        await pilot.press("escape")
        view = await back_to_chat(pilot)
        assert view.conversation.title == "Tides"
        assert store.get(conv_id).title == "Tides"


# --- delete --------------------------------------------------------------------------------------


async def test_delete_asks_first_n_keeps_y_removes(store: Store, saved: dict[str, Conversation]) -> None:
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        await select(pilot, screen, RUST)
        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        message = str(app.screen.query_one(".dialog-message", Static).content)
        assert message == "Delete 'Rust lifetimes' (1 turn)? This cannot be undone."
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)
        assert store.get(RUST).title == "Rust lifetimes" and rows(screen) == [SKY, RUST, BREAD]

        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("enter")  # the focus is on Cancel: enter is the safe answer
        await wait_for(pilot, lambda: app.screen is screen)
        assert stored_ids(store) == [SKY, RUST, BREAD]

        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: rows(screen) == [SKY, BREAD])
        assert "Deleted 'Rust lifetimes'." in notifications(app)
        with pytest.raises(UserError):
            store.get(RUST)
        assert stored_ids(store) == [SKY, BREAD]
        assert screen.selected_id in (SKY, BREAD) and detail(screen).startswith(screen.selected_id)
        await pilot.press("escape")
        view = await back_to_chat(pilot)
        assert view.conversation.turns == []


async def test_deleting_the_open_conversation_switches_the_chat_to_a_fresh_one(
    store: Store, saved: dict[str, Conversation]
) -> None:
    app = make_app(ScriptedBackend(), store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await open_history(pilot)
        await pilot.press("enter")
        view = await back_to_chat(pilot)
        assert view.conversation.id == SKY
        screen = await open_history(pilot)
        await select(pilot, screen, SKY)
        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: rows(screen) == [RUST, BREAD])
        await pilot.press("escape")
        await back_to_chat(pilot)
        assert view.conversation.id != SKY and view.conversation.turns == []
        assert "The open conversation was deleted: this is a new one." in notifications(app)
        await wait_for(pilot, lambda: transcript_users(view) == [])
        assert view.turn_view.pane("answer").text == "" and view.turn_view.has_class("-empty")

        await send(pilot, "Fresh start")
        await wait_idle(pilot)
        fresh = view.conversation.id
    assert SKY not in stored_ids(store), "the deleted conversation is not saved back"
    assert sorted(stored_ids(store)) == sorted([fresh, RUST, BREAD])
    assert [t.user for t in store.get(fresh).turns] == ["Fresh start"]


async def test_deleting_the_open_conversation_then_opening_another(
    store: Store, saved: dict[str, Conversation]
) -> None:
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await open_history(pilot)
        await pilot.press("enter")
        view = await back_to_chat(pilot)
        screen = await open_history(pilot)
        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: rows(screen) == [RUST, BREAD])
        await select(pilot, screen, BREAD)
        await pilot.press("enter")
        await back_to_chat(pilot)
        assert view.conversation == saved[BREAD]


# --- export --------------------------------------------------------------------------------------


async def open_export(pilot: Pilot) -> ExportDialog:
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ExportDialog))
    dialog = pilot.app.screen
    assert isinstance(dialog, ExportDialog)
    return dialog


async def pick_format(pilot: Pilot, dialog: ExportDialog, name: str) -> None:
    button = next(b for b in dialog.query(RadioButton) if b.name == name)
    await pilot.click(button)
    await wait_for(pilot, lambda: dialog.format_name == name)


def export_error(dialog: ExportDialog) -> str:
    return str(dialog.query_one("#export-error", Static).content)


async def test_export_writes_each_format_to_the_chosen_file(
    store: Store, saved: dict[str, Conversation], tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    targets = {name: exports / f"rust{extension}" for name, (_, extension) in transfer.EXPORTERS.items()}
    assert list(targets) == ["markdown", "json", "history"]
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        await select(pilot, screen, RUST)
        for format_name, target in targets.items():
            dialog = await open_export(pilot)
            await pick_format(pilot, dialog, format_name)
            dialog.path_input.value = str(target)
            await pilot.click("#export")
            await wait_for(pilot, lambda: app.screen is screen)
            assert f"Exported to {target}" in notifications(app)
    for format_name, target in targets.items():
        assert target.read_bytes() == transfer.export_bytes(store.get(RUST), format_name), format_name
        assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in exports.iterdir()) == sorted(t.name for t in targets.values()), (
        "no temporary file is left"
    )
    assert transfer.load_file(targets["json"]) == saved[RUST], "the JSON export is the whole record"
    assert [t.user for t in transfer.load_file(targets["history"]).turns] == [saved[RUST].turns[0].user]


async def test_the_suggested_file_follows_the_format_until_edited(
    store: Store, saved: dict[str, Conversation], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        await select(pilot, screen, RUST)
        dialog = await open_export(pilot)
        assert dialog.path_input.value == str(tmp_path / "reasonchat-5ca1ab1e.md")
        assert dialog.path_input.has_focus
        await pick_format(pilot, dialog, "history")
        assert dialog.path_input.value == str(tmp_path / "reasonchat-5ca1ab1e.history.json")
        await pick_format(pilot, dialog, "json")
        assert dialog.path_input.value == str(tmp_path / "reasonchat-5ca1ab1e.json")
        dialog.path_input.value = "mine.json"
        await pick_format(pilot, dialog, "markdown")
        assert dialog.path_input.value == "mine.json", "an edited name is kept"
        dialog.path_input.focus()
        await pilot.press("enter")  # a relative name is in the current directory
        await wait_for(pilot, lambda: app.screen is screen)
    assert (tmp_path / "mine.json").read_bytes() == transfer.export_bytes(store.get(RUST), "markdown")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "mine.json"]


async def test_an_existing_file_is_replaced_only_on_the_second_press_for_it(
    store: Store, saved: dict[str, Conversation], tmp_path: Path
) -> None:
    first, second = tmp_path / "a.md", tmp_path / "b.md"
    first.write_bytes(b"keep a")
    second.write_bytes(b"keep b")
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        dialog = await open_export(pilot)
        dialog.path_input.value = str(first)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog
        assert export_error(dialog) == "a.md already exists: press Export again to replace it."
        dialog.path_input.value = str(second)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog, "the first press was for another file: this one is asked about too"
        assert export_error(dialog) == "b.md already exists: press Export again to replace it."
        assert (first.read_bytes(), second.read_bytes()) == (b"keep a", b"keep b")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen)
    assert first.read_bytes() == b"keep a"
    assert second.read_bytes() == transfer.export_bytes(store.get(SKY), "markdown")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.md", "b.md", "data"]


async def test_a_path_that_cannot_be_written_is_shown_and_the_dialog_stays(
    store: Store, saved: dict[str, Conversation], tmp_path: Path
) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "sky.md"
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        dialog = await open_export(pilot)
        dialog.path_input.value = str(missing)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog
        assert export_error(dialog).startswith(f"cannot write {missing}")
        dialog.path_input.value = str(tmp_path)
        await pilot.press("enter")
        await pilot.pause()
        assert (
            app.screen is dialog and export_error(dialog) == f"{tmp_path} is a directory: give a file name."
        )
        dialog.path_input.value = "  "
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog and export_error(dialog) == "Give a file name."
        # Paths pathlib itself refuses: an unknown user's home, a name longer than the system allows.
        for value, reason in [("~nosuchuser/sky.md", "home directory"), ("x" * 300 + ".md", "too long")]:
            dialog.path_input.value = value
            await pilot.press("enter")
            await pilot.pause()
            assert app.screen is dialog and reason in export_error(dialog), export_error(dialog)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        assert not [n for n in notifications(app) if n.startswith("Exported")]
    assert not (tmp_path / "no").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# --- replay --------------------------------------------------------------------------------------


async def test_replay_from_the_history_and_back_to_the_chat(
    store: Store, saved: dict[str, Conversation]
) -> None:
    app = make_app(ScriptedBackend(), store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        view = chat(app)
        before = view.conversation
        screen = await open_history(pilot)
        await select(pilot, screen, RUST)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen))
        replay = app.screen
        assert replay.conversation == saved[RUST] and replay.source == RUST[:8]
        await wait_for(pilot, lambda: replay.shown_turn == 0)
        assert [type(s) for s in app.screen_stack] == [ChatScreen, ReplayScreen], "the history is closed"
        await pilot.press("escape")
        await back_to_chat(pilot)
        assert view.conversation is before, "a replay changes nothing in the chat"
        await send(pilot, "still here")
        await wait_idle(pilot)
        assert view.turn_view.pane("answer").text == "You said: **still here**"
    assert sorted(stored_ids(store)) == sorted([*saved, before.id])


# --- the command palette -------------------------------------------------------------------------


async def palette_run(pilot: Pilot, query: str, title: str) -> None:
    await pilot.press("ctrl+p", *query)
    commands = pilot.app.screen.query_one(CommandList)
    await wait_for(pilot, lambda: commands.option_count > 0)
    prompts = [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]
    assert any(title in p for p in prompts), prompts
    assert title in prompts[0], prompts
    await pilot.press("enter")


async def test_the_command_palette_opens_the_history_and_lists_its_commands(
    store: Store, saved: dict[str, Conversation]
) -> None:
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await palette_run(pilot, "histo", "Open history")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        screen = app.screen
        await wait_loaded(pilot, screen)
        await select(pilot, screen, BREAD)
        await pilot.press("ctrl+p")  # nothing typed: the palette lists what the screen in front offers
        commands = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: commands.option_count >= len(HistoryScreen.PALETTE))
        prompts = [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]
        for title, _, _ in HistoryScreen.PALETTE:
            assert any(title in p for p in prompts), (title, prompts)
        assert not any("Open history" in p for p in prompts), "the chat's entries are not offered here"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        await palette_run(pilot, "renam", "Rename conversation")
        await wait_for(pilot, lambda: isinstance(app.screen, RenameDialog))
        assert app.screen.query_one("#rename-title", Input).value == "Sourdough starter"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        await palette_run(pilot, "open c", "Open conversation")
        view = await back_to_chat(pilot)
        assert view.conversation.id == BREAD


async def test_without_a_store_the_history_is_not_opened() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, ChatScreen)
        assert "Nothing is saved in this session (no store)." in notifications(app)


# --- a busy chat ---------------------------------------------------------------------------------


async def test_while_the_chat_is_generating_opening_another_is_refused(
    store: Store, saved: dict[str, Conversation]
) -> None:
    backend = PausingBackend(pause_after=3)
    app = make_app(backend, store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await send(pilot, "Count slowly")
        await wait_for(pilot, backend.paused.is_set)
        view = chat(app)
        current = view.conversation
        screen = await open_history(pilot)
        assert screen.busy and screen.current_id == current.id
        assert rows(screen) == [current.id, SKY, RUST, BREAD], "the generating one is saved already"

        await select(pilot, screen, SKY)
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert "Still generating in the chat: wait for it, or cancel it (Esc there) first." in notifications(
            app
        )

        await select(pilot, screen, current.id)
        await pilot.press("f8")
        await pilot.pause()
        assert app.screen is screen, "no confirmation: the generating conversation cannot be deleted"
        assert "This conversation is generating: cancel it (Esc in the chat) first." in notifications(app)

        await pilot.press("enter")  # the generating one itself: back to it
        await back_to_chat(pilot)
        assert view.conversation is current and view.busy
        await pilot.press("escape")
        await wait_idle(pilot)
    assert sorted(stored_ids(store)) == sorted([current.id, *saved])
    assert store.get(SKY) == saved[SKY]
    assert store.get(current.id).turns[0].reasoning_stats.stop_reason == "cancelled"


async def test_a_generation_that_ends_while_the_history_is_open_no_longer_blocks_opening(
    store: Store, saved: dict[str, Conversation]
) -> None:
    backend = GatedBackend()
    app = make_app(backend, store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await send(pilot, "Count slowly")
        await wait_for(pilot, backend.paused.is_set)
        screen = await open_history(pilot)
        backend.gate.set()
        await wait_for(pilot, lambda: not chat(app).busy)
        await select(pilot, screen, RUST)
        await pilot.press("enter")
        await pilot.pause()
        assert not any(n.startswith("Still generating") for n in notifications(app))
        view = await back_to_chat(pilot)
        assert view.conversation == saved[RUST]


# --- a damaged row -------------------------------------------------------------------------------


def table_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return [
            *conn.execute("SELECT * FROM conversations ORDER BY id").fetchall(),
            *conn.execute("SELECT * FROM turns ORDER BY id").fetchall(),
        ]


async def test_a_damaged_conversation_is_a_notification_and_the_screen_stays_usable(
    store: Store, saved: dict[str, Conversation], tmp_path: Path
) -> None:
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE turns SET reasoning_stats = '{bad' WHERE conversation_id = ?", (SKY,))
    conn.close()
    before = table_rows(store.path)
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        assert rows(screen) == [SKY, RUST, BREAD], "the list does not read the stats"
        for key in ("enter", "ctrl+r", "ctrl+s"):
            app.clear_notifications()
            await pilot.press(key)
            await wait_for(pilot, lambda: notifications(app))
            assert app.screen is screen, key
            (message,) = notifications(app)
            assert f"conversation {SKY} has a damaged turn" in message and str(store.path) in message
        assert table_rows(store.path) == before, "nothing is written, nothing is repaired"

        await select(pilot, screen, RUST)
        await pilot.press("enter")
        view = await back_to_chat(pilot)
        assert view.conversation == saved[RUST]
    assert table_rows(store.path) == before
