"""Saved conversations: browse, search as you type, open (continue), replay, rename, delete, export.

The list comes from the store in a thread (a search over a large store must not stall typing); a
result that arrives after the query changed again is dropped. Store errors are notifications: the
screen stays usable and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from reasonchat import demo_model
from reasonchat.conversation import Conversation, local_time
from reasonchat.errors import ReasonchatError
from reasonchat.sanitize import for_screen, sanitize
from reasonchat.store import ConversationSummary, Store
from reasonchat.tui.dialogs.confirm import ConfirmDialog
from reasonchat.tui.dialogs.export import ExportDialog
from reasonchat.tui.dialogs.rename import RenameDialog
from reasonchat.tui.widgets.bindings_footer import BindingsFooter

# More rows than anyone scrolls through; a search narrows it down.
LIST_LIMIT = 1000
COLUMNS = (("Title", "title"), ("Updated", "updated"), ("Turns", "turns"), ("Tokens", "tokens"), ("Model", "model"))
MODEL_WIDTH = 24


@dataclass
class HistoryOutcome:
    """What the history screen did that the chat must know: a conversation to open or replay, and
    the conversations deleted (the chat's own one among them, perhaps)."""

    action: Literal["open", "replay"] | None = None
    conversation: Conversation | None = None
    deleted: set[str] = field(default_factory=set)


class SearchResults(Message):
    def __init__(self, query: str, summaries: list[ConversationSummary] | None, error: str | None) -> None:
        super().__init__()
        self.query = query
        self.summaries = summaries
        self.error = error


def _one_line(text: str) -> str:
    return " ".join(for_screen(text).split())


class HistoryScreen(Screen[HistoryOutcome]):
    BINDINGS = [
        Binding("enter", "open", "Open", id="history.open", priority=True),
        Binding("ctrl+r", "replay", "Replay", id="history.replay"),
        Binding("f2", "rename", "Rename", id="history.rename"),
        Binding("ctrl+s", "export", "Export", id="history.export"),
        Binding("f8", "delete", "Delete", id="history.delete"),
        Binding("down", "cursor(1)", "Down", id="history.down", show=False),
        Binding("up", "cursor(-1)", "Up", id="history.up", show=False),
        Binding("escape", "back", "Back", id="history.back"),
    ]
    PALETTE: tuple[tuple[str, str, str], ...] = (
        ("Open conversation", "open", "Continue the selected conversation with the loaded model"),
        ("Replay conversation", "replay", "Re-stream it with its recorded timing"),
        ("Rename conversation", "rename", "Give the selected conversation a new title"),
        ("Export conversation", "export", "Markdown, JSON or the card's history list, to a file"),
        ("Delete conversation", "delete", "After a confirmation"),
        ("Back to the chat", "back", "Esc"),
    )

    def __init__(
        self,
        store: Store,
        *,
        current: Callable[[], Conversation | None] = lambda: None,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__()
        self.store = store
        # Both asked when needed: the chat may switch conversations (an overflow dialog over this
        # screen) or finish generating while this screen is open.
        self._current = current
        self._busy = busy
        self.outcome = HistoryOutcome()
        self.summaries: dict[str, ConversationSummary] = {}
        self.loaded_query: str | None = None  # the query the table shows (None: not loaded yet)

    @property
    def current(self) -> Conversation | None:
        """The chat's conversation: renaming it renames this object too, or the chat's next autosave
        (perhaps from a generation running now) would write the old title back."""
        return self._current()

    @property
    def busy(self) -> bool:
        """Whether the chat is generating, now (a generation may end while this screen is open)."""
        return self._busy()

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="Search as you type (every word; source:edited, stop:answer_now…)",
            id="history-search",
        )
        table: DataTable[str] = DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="history-detail", markup=False)
        yield BindingsFooter(compact=True)

    @property
    def current_id(self) -> str | None:
        current = self.current
        return current.id if current is not None else None

    @property
    def table(self) -> DataTable[str]:
        return self.query_one("#history-table", DataTable)

    @property
    def search_input(self) -> Input:
        return self.query_one("#history-search", Input)

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.table.add_column(label, key=key)
        self.search_input.focus()
        self.refresh_list()

    # --- the list ------------------------------------------------------------------------------

    @on(Input.Changed, "#history-search")
    def _search_changed(self) -> None:
        self.refresh_list()

    def refresh_list(self) -> None:
        self._load(self.search_input.value.strip())

    @work(thread=True, group="history-search", exclusive=True, exit_on_error=False)
    def _load(self, query: str) -> None:
        try:
            summaries = self.store.list(search=query or None, limit=LIST_LIMIT)
        except Exception as err:  # noqa: BLE001 - whatever it is, the screen must say it and stay usable
            message = str(err) if isinstance(err, ReasonchatError) else f"{type(err).__name__}: {err}"
            self.post_message(SearchResults(query, None, message))
            return
        self.post_message(SearchResults(query, summaries, None))

    def on_search_results(self, message: SearchResults) -> None:
        if message.query != self.search_input.value.strip():
            return  # typed on since: a newer search is coming
        if message.summaries is None:
            error = sanitize(message.error or "the store could not be read")
            self.notify(error, severity="error", markup=False)
            if self.loaded_query is None:  # nothing was ever shown: say why instead of "Loading…"
                self.query_one("#history-detail", Static).update(f"Could not list the conversations: {error}")
            return
        selected = self.selected_id
        self.summaries = {s.id: s for s in message.summaries}
        self.loaded_query = message.query
        table = self.table
        table.clear()
        for s in message.summaries:
            # Text cells: a plain string would be read as markup, and titles are anybody's text.
            cells = (
                _one_line(s.title) or "(untitled)",
                local_time(s.updated),
                # A conversation with other versions of its turns says so: "3+4" is 3 turns, 4 more versions.
                f"{s.turns}+{s.versions - s.turns}" if s.versions > s.turns else f"{s.turns:>5}",
                f"{s.tokens:>7,}",
                _one_line(demo_model.label(s.model))[:MODEL_WIDTH] or "-",
            )
            table.add_row(*map(Text, cells), key=s.id)
        if selected in self.summaries:
            table.move_cursor(row=table.get_row_index(selected), animate=False)
        self._show_detail()

    @on(DataTable.RowHighlighted, "#history-table")
    def _highlighted(self) -> None:
        self._show_detail()

    @on(DataTable.RowSelected, "#history-table")
    def _row_selected(self) -> None:
        self.action_open()

    def _show_detail(self) -> None:
        detail = self.query_one("#history-detail", Static)
        summary = self.selected
        if summary is None:
            query = self.search_input.value.strip()
            empty = f"Nothing matches {query!r}." if query else "No saved conversations yet."
            detail.update(empty if self.loaded_query is not None else "Loading…")
            return
        versions = f" · {summary.versions} versions of its turns" if summary.versions > summary.turns else ""
        lines = [
            f"{summary.id} · created {local_time(summary.created)} · updated {local_time(summary.updated)}{versions}"
        ]
        if summary.snippet:
            lines.append(_one_line(summary.snippet))
        detail.update("\n".join(lines))

    @property
    def selected_id(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - an out-of-range cursor while the table refills
            return None

    @property
    def selected(self) -> ConversationSummary | None:
        conv_id = self.selected_id
        return self.summaries.get(conv_id) if conv_id is not None else None

    def _load_selected(self) -> Conversation | None:
        summary = self.selected
        if summary is None:
            self.notify("No conversation selected.", severity="warning")
            return None
        try:
            return self.store.get(summary.id)
        except ReasonchatError as err:
            self.notify(sanitize(str(err)), title="Cannot open", severity="error", markup=False)
            return None

    # --- actions -------------------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        table = self.table
        if table.row_count:
            table.move_cursor(row=max(0, min(table.cursor_row + delta, table.row_count - 1)))

    def action_open(self) -> None:
        if self.selected is not None and self.busy and self.selected_id != self.current_id:
            self.notify(
                "Still generating in the chat: wait for it, or cancel it (Esc there) first.",
                severity="warning",
            )
            return
        conversation = self._load_selected()
        if conversation is not None:
            self.outcome.action, self.outcome.conversation = "open", conversation
            self.dismiss(self.outcome)

    def action_replay(self) -> None:
        conversation = self._load_selected()
        if conversation is not None:
            self.outcome.action, self.outcome.conversation = "replay", conversation
            self.dismiss(self.outcome)

    def action_back(self) -> None:
        self.dismiss(self.outcome)

    def action_rename(self) -> None:
        summary = self.selected
        if summary is None:
            self.notify("No conversation selected.", severity="warning")
            return

        def renamed(title: str | None) -> None:
            if title is None or title == summary.title:
                return
            current = self.current
            if current is not None and current.id != summary.id:
                current = None
            if current is not None:  # first, so no autosave can come between and write the old title
                current.title = title
            try:
                self.store.rename(summary.id, title)
            except ReasonchatError as err:
                if current is not None:
                    current.title = summary.title
                self.notify(sanitize(str(err)), title="Not renamed", severity="error", markup=False)
                return
            self.refresh_list()

        self.app.push_screen(RenameDialog(summary.title), renamed)

    def action_delete(self) -> None:
        summary = self.selected
        if summary is None:
            self.notify("No conversation selected.", severity="warning")
            return
        if self.busy and summary.id == self.current_id:
            self.notify("This conversation is generating: cancel it (Esc in the chat) first.", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.store.delete(summary.id)
            except ReasonchatError as err:
                self.notify(sanitize(str(err)), title="Not deleted", severity="error", markup=False)
                return
            self.outcome.deleted.add(summary.id)
            self.notify(f"Deleted {_one_line(summary.title) or summary.id!r}.", markup=False)
            self.refresh_list()

        turns = f"{summary.turns} turn" + ("" if summary.turns == 1 else "s")
        message = f"Delete {_one_line(summary.title) or '(untitled)'!r} ({turns})? This cannot be undone."
        self.app.push_screen(ConfirmDialog("Delete conversation", message, "Delete"), confirmed)

    def action_export(self) -> None:
        conversation = self._load_selected()
        if conversation is None:
            return

        def exported(path: Path | None) -> None:
            if path is not None:
                self.notify(f"Exported to {sanitize(str(path))}", markup=False)

        self.app.push_screen(ExportDialog(conversation), exported)
