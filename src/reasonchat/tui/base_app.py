"""What the chat app and the replay app share: the stylesheet, the breakpoints, the theme, the command
palette (Textual's own system commands plus the screen in front's ``PALETTE``), where screenshots go,
and the clipboard over tmux.

Importing this module imports neither torch, transformers nor any screen: the replay app builds on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from textual import events
from textual.app import App, SystemCommand
from textual.screen import Screen

from reasonchat import paths
from reasonchat.tui import gc_policy
from reasonchat.tui.clipboard import osc52, tmux_passthrough
from reasonchat.tui.look import HORIZONTAL_BREAKPOINTS, apply_theme

SCREENSHOTS_DIR = "screenshots"
# A screen lists its palette entries as (title, action, help); the action runs on that screen.
PaletteEntries = tuple[tuple[str, str, str], ...]


def _warm_up() -> None:
    """What any first stream would otherwise pay on the UI thread; then what has loaded so far lives
    as long as the app and is frozen out of the collector's full passes. Frozen even if the warm-up
    fails: the freeze is also what turns the collector back on after the app's start."""
    from reasonchat.tui.widgets.model_markdown import warm_up

    try:
        warm_up()
    finally:
        gc_policy.freeze_long_lived("app")


class BaseApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    HORIZONTAL_BREAKPOINTS = HORIZONTAL_BREAKPOINTS

    def __init__(self, *, theme: str | None = None, data_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.theme_name = theme
        # ``--data-dir``, else $REASONCHAT_DATA_DIR, else the user data dir (as the store finds it).
        self.data_dir = paths.data_dir(data_dir)

    def on_mount(self) -> None:
        apply_theme(self, self.theme_name)
        # After the first frame, which must not wait for it.
        self.call_after_refresh(self.run_worker, _warm_up, thread=True, group="warm-up", exit_on_error=False)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):
            gc_policy.note_input()
        await super().on_event(event)

    def on_unmount(self) -> None:
        gc_policy.restore()

    def close_screen(self, screen: Screen[None]) -> None:
        """Close ``screen`` (a replay, a comparison), or the app when it is the only one. Its workers
        stop first: its widgets must not vanish under a write in progress."""
        screen.workers.cancel_node(screen)
        if len(self.screen_stack) > 1:
            screen.dismiss(None)
        else:
            self.exit()

    # --- the command palette ---------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Textual's own (theme, quit, keys, maximize, screenshot), then the commands of the screen
        the palette was opened from: every action of its footer, findable by name."""
        yield from super().get_system_commands(screen)
        entries: PaletteEntries = getattr(screen, "PALETTE", ())
        for title, action, help_text in entries:
            yield SystemCommand(title, help_text, partial(screen.run_action, action))

    # --- screenshots -----------------------------------------------------------------------------

    @property
    def screenshot_dir(self) -> Path:
        return self.data_dir / SCREENSHOTS_DIR

    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        """Textual saves to ~/Downloads, which many machines (servers, containers) lack: ours go to the
        data dir's ``screenshots/``, created private like the data dir."""
        if path is None:
            try:
                paths.make_private_dir(self.data_dir)
                paths.make_private_dir(self.screenshot_dir)
            except OSError as err:
                self.notify(
                    f"Cannot save the screenshot: cannot create {self.screenshot_dir}: {err.strerror or err}",
                    title="Screenshot",
                    severity="error",
                    markup=False,
                )
                return None
            path = str(self.screenshot_dir)
        return super().deliver_screenshot(filename, path, time_format)

    def on_delivery_complete(self, event: events.DeliveryComplete) -> None:
        if event.name == "screenshot":
            event.prevent_default()  # instead of Textual's notice: the path as plain text
            where = f" to {event.path}" if event.path is not None else ""
            self.notify(f"Saved screenshot{where}", title="Screenshot", markup=False)

    def on_delivery_failed(self, event: events.DeliveryFailed) -> None:
        if event.name == "screenshot":
            event.prevent_default()  # instead of Textual's notice, which does not say why
            error = event.exception
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            where = getattr(error, "filename", None)
            self.notify(
                f"Could not save the screenshot{f' to {where}' if where else ''}: {reason}",
                title="Screenshot",
                severity="error",
                markup=False,
            )

    # --- the clipboard ---------------------------------------------------------------------------

    def copy_to_clipboard(self, text: str) -> None:
        # Textual writes a bare OSC 52, which tmux only forwards with set-clipboard on; the wrapped copy
        # reaches the outer terminal through passthrough as well.
        super().copy_to_clipboard(text)
        if os.environ.get("TMUX") and self._driver is not None:
            self._driver.write(tmux_passthrough(osc52(text)))
