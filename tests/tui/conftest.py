"""Fixtures for the app's tests: an open store in the test's own data directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reasonchat.store import Store


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open() as opened:
        yield opened
