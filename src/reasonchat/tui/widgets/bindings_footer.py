"""Textual's Footer, updated in place.

Textual's Footer recomposes itself whenever the screen's bindings are refreshed: every key shown is
unmounted and mounted again. A run refreshes them as it starts (Esc: cancel appears) and as its
reasoning starts and ends, and each recompose held the UI thread for 10-100 ms while the first tokens
streamed. This one mounts only the keys that came and removes only those that went; what it shows is
what Textual's would (it computes the keys with Textual's own ``compose``).
"""

from __future__ import annotations

import asyncio
from difflib import SequenceMatcher

from textual.compose import compose
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey  # not exported by textual.widgets


def key_signature(widget: Widget) -> tuple[object, ...] | None:
    """What a key shows and does; ``None`` for anything that is not a plain key (a group, a label)."""
    if type(widget) is not FooterKey:
        return None
    # "-compact" comes from the footer's own style once mounted, not from the binding.
    classes = frozenset(widget.classes - {"-compact"})
    return (widget.key, widget.key_display, widget.description, widget.action, widget._disabled, widget.tooltip, classes)


class BindingsFooter(Footer):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._update_lock = asyncio.Lock()

    def bindings_changed(self, screen: Screen) -> None:
        # As Footer.bindings_changed, with the update instead of a recompose.
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen:
            self.call_after_refresh(self._update_keys)

    async def _update_keys(self) -> None:
        async with self._update_lock:  # each update starts from what the one before left
            if not self.is_attached:
                return
            wanted = compose(self)  # Textual's keys for the bindings now
            old = list(self.children)
            new_signatures = [key_signature(widget) for widget in wanted]
            old_signatures = [key_signature(widget) for widget in old]
            if None in new_signatures or None in old_signatures:
                await self.recompose()  # grouped keys: Textual's way
                return
            position = 0
            with self.app.batch_update():
                matcher = SequenceMatcher(None, old_signatures, new_signatures, autojunk=False)
                for tag, old_start, old_end, new_start, new_end in matcher.get_opcodes():
                    if tag == "equal":
                        position += old_end - old_start
                        continue
                    if tag in ("delete", "replace"):
                        await self.remove_children(old[old_start:old_end])
                    if tag in ("insert", "replace"):
                        added = wanted[new_start:new_end]
                        if position < len(self.children):
                            await self.mount_all(added, before=position)
                        else:
                            await self.mount_all(added)
                        position += len(added)
