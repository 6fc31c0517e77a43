"""What the chat app and the replay app share about their looks: the breakpoint and the theme."""

from __future__ import annotations

from textual.app import App

# Below this many columns the Reasoning and Answer panes are stacked instead of side by side.
NARROW_BELOW = 100
HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-wide")]


def apply_theme(app: App[None], theme: str | None) -> None:
    """The configured theme; an unknown name is a notice, not an error."""
    if theme and theme in app.available_themes:
        app.theme = theme
    elif theme:
        app.notify(
            f"Unknown theme {theme!r}; available: {', '.join(sorted(app.available_themes))}",
            severity="warning",
            timeout=10,
            markup=False,
        )
