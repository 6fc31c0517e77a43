"""``Backend`` declares every attribute the UI reads: ``counts_are_estimates`` included, defined by
each backend (the UI no longer has to guess with ``getattr``)."""

from __future__ import annotations

import pytest

from reasonchat.engine.protocol import Backend
from reasonchat.engine.scripted import ScriptedBackend


def test_counts_are_estimates_is_part_of_the_protocol() -> None:
    assert isinstance(vars(Backend)["counts_are_estimates"], property)
    assert isinstance(ScriptedBackend(), Backend) and ScriptedBackend().counts_are_estimates is False

    class Lacking:  # everything but counts_are_estimates
        description = "x"

        def count_tokens(self, text: str) -> int:
            return 0

        stream = cancel = reset = close = count_tokens

    assert not isinstance(Lacking(), Backend)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("reasonchat.engine.scripted", "ScriptedBackend"),
        ("reasonchat.engine.openai_backend", "OpenAIBackend"),
        ("reasonchat.engine.transformers_backend", "TransformersBackend"),
    ],
)
def test_every_backend_defines_counts_are_estimates(module: str, name: str) -> None:
    import importlib

    backend_class = getattr(importlib.import_module(module), name)
    assert "counts_are_estimates" in vars(backend_class), f"{name} must say whether its counts are guessed"
