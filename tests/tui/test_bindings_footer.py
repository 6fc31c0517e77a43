"""The footer shows what Textual's would, and a run's start and end only mount or remove the keys
that came or went (Textual's own Footer remounts every key each time)."""

from __future__ import annotations

from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from reasonchat.tui.widgets.bindings_footer import BindingsFooter, key_signature
from tests.tui.helpers import WIDE, PausingBackend, chat, make_app, send, wait_for, wait_idle, wait_ready


def shown(footer: BindingsFooter) -> list[tuple[object, ...] | None]:
    return [key_signature(widget) for widget in footer.children]


def textuals(screen: object) -> list[tuple[object, ...] | None]:
    """What Textual's own Footer, mounted beside ours, shows now."""
    (reference,) = [footer for footer in screen.query(Footer) if type(footer) is Footer]  # type: ignore[attr-defined]
    return [key_signature(widget) for widget in reference.children]


def actions(footer: BindingsFooter) -> list[str]:
    return [widget.action for widget in footer.query(FooterKey)]


async def test_a_run_adds_and_removes_only_its_own_keys() -> None:
    backend = PausingBackend(pause_after=3)
    async with make_app(backend).run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = chat(pilot.app)
        footer = screen.query_one(BindingsFooter)
        await screen.mount(Footer(compact=True, show_command_palette=False))
        screen.refresh_bindings()
        await wait_for(pilot, lambda: footer.children and shown(footer) == textuals(screen))
        idle = actions(footer)
        assert "cancel" not in idle
        kept = {widget.action: widget for widget in footer.query(FooterKey)}

        await send(pilot, "hello")
        await wait_for(pilot, backend.paused.is_set)
        await wait_for(pilot, lambda: "answer_now" in actions(footer))
        await wait_for(pilot, lambda: shown(footer) == textuals(screen))
        assert "cancel" in actions(footer)
        for widget in footer.query(FooterKey):
            if widget.action in kept:
                assert widget is kept[widget.action], f"{widget.action} was remounted"

        await pilot.press("escape")
        await wait_idle(pilot)
        await wait_for(pilot, lambda: "cancel" not in actions(footer))
        await wait_for(pilot, lambda: shown(footer) == textuals(screen))
        assert actions(footer) == idle
        assert all(widget is kept[widget.action] for widget in footer.query(FooterKey))
