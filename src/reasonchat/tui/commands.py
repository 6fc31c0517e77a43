"""The command palette's entries for the screen in front (Ctrl+P): every action of its footer,
findable by name. A screen lists them in its ``PALETTE``: (title, action, help)."""

from __future__ import annotations

from functools import partial

from textual.command import CommandPalette, DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

PaletteEntries = tuple[tuple[str, str, str], ...]


class ScreenCommands(Provider):
    def _target(self) -> tuple[Screen[object], PaletteEntries] | None:
        # The palette is a screen of its own: look below it.
        for screen in reversed(self.app.screen_stack):
            if isinstance(screen, CommandPalette):
                continue
            entries = getattr(screen, "PALETTE", None)
            return (screen, entries) if entries else None
        return None

    async def discover(self) -> Hits:
        target = self._target()
        if target is None:
            return
        screen, entries = target
        for title, action, help_text in entries:
            yield DiscoveryHit(title, partial(screen.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        target = self._target()
        if target is None:
            return
        screen, entries = target
        matcher = self.matcher(query)
        for title, action, help_text in entries:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(screen.run_action, action), help=help_text)
