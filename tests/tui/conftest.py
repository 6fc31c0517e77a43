"""Fixtures for the app's tests: an open store in the test's own data directory, and snapshot names
that survive ``--count N`` (pytest-repeat adds ``[3-20]`` to every test id, which would make each
repetition look for a snapshot of its own)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pytest_textual_snapshot import SVGImageExtension

from reasonchat.store import Store

_REPEAT_ID = re.compile(r"(?:\[|-)\d+-\d+\]$")
_snapshot_name = SVGImageExtension.get_snapshot_name.__func__


def _name_without_repeat(cls, *, test_location, index=0) -> str:  # type: ignore[no-untyped-def]
    name = _snapshot_name(cls, test_location=test_location, index=index)
    stripped = _REPEAT_ID.sub("", name)
    # "test_x[param-3-20]" keeps its own parameter: "test_x[param]".
    return stripped + "]" if "[" in stripped else stripped


SVGImageExtension.get_snapshot_name = classmethod(_name_without_repeat)  # type: ignore[method-assign]


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open() as opened:
        yield opened
