"""The project's own exceptions: each carries a one-line message fit to show a user."""

from __future__ import annotations


class ReasonchatError(Exception):
    """Base class. ``str(err)`` is a complete, single-line message for the user."""

    exit_code = 1


class UserError(ReasonchatError):
    """The user's input is wrong (a path, an id, a file): the CLI exits with code 2."""

    exit_code = 2


class StoreError(ReasonchatError):
    """The conversation database cannot be used (corrupt, newer schema, locked)."""
