"""Session fixtures for the engine tests: tiny real checkpoints and the backends that load them.

Import the fixtures you need into a test module (``from tests.helpers.engine_fixtures import ...``).
pytest registers an imported fixture once per importing module, so a session fixture imported into
four modules would run four times: the expensive work is memoized here, once per process.

Backends are shared and stateful (one prefix cache each): a test that uses one must use fresh
conversation ids (``Conversation()`` draws one) and must undo any monkeypatching (use ``monkeypatch``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.models import save_byte_tokenizer, save_random_model, save_stopping_model
from tests.helpers.qwen import QWEN25_VOCAB_SIZE

_MEMO: dict[str, Any] = {}
_LOCK = threading.Lock()


def _once(key: str, build: Callable[[], Any]) -> Any:
    with _LOCK:
        if key not in _MEMO:
            _MEMO[key] = build()
        return _MEMO[key]


@pytest.fixture(scope="session")
def byte_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 259-token byte-level Qwen2Tokenizer (ChatML specials, no ``<|reasoning|>``)."""
    return _once("byte_tokenizer", lambda: save_byte_tokenizer(tmp_path_factory.mktemp("byte-tok")))


@pytest.fixture(scope="session")
def byte_random_model_dir(tmp_path_factory: pytest.TempPathFactory, byte_tokenizer_dir: Path) -> Path:
    """A random tiny Qwen2 on the byte tokenizer (+ ``<|reasoning|>``): cheap to copy and to load."""
    return _once(
        "byte_random_model",
        lambda: save_random_model(byte_tokenizer_dir, tmp_path_factory.mktemp("byte-random")),
    )


@pytest.fixture(scope="session")
def stopping_model_dir(tmp_path_factory: pytest.TempPathFactory, byte_tokenizer_dir: Path) -> Path:
    """The tiny Qwen2 trained (~10 s) to reason ``REASONING_TEXT``, answer ``ANSWER_TEXT`` and stop."""
    return _once(
        "stopping_model",
        lambda: save_stopping_model(byte_tokenizer_dir, tmp_path_factory.mktemp("stopping")),
    )


@pytest.fixture(scope="session")
def qwen_random_model_dir(tmp_path_factory: pytest.TempPathFactory, qwen_tokenizer_dir: Path) -> Path:
    """A random tiny Qwen2 with the real Qwen2.5 tokenizer and Qwen2.5's embedding size (151,936 rows,
    more than the tokenizer's 151,666 ids, as in the real checkpoint)."""
    return _once(
        "qwen_random_model",
        lambda: save_random_model(
            qwen_tokenizer_dir, tmp_path_factory.mktemp("qwen-random"), vocab_size=QWEN25_VOCAB_SIZE
        ),
    )


@pytest.fixture(scope="session")
def qwen_backend(qwen_random_model_dir: Path) -> Any:
    """``load_backend`` on the random Qwen model, with prefix-cache reuse (loading takes ~5 s)."""
    from reasonchat.engine.transformers_backend import load_backend

    return _once("qwen_backend", lambda: load_backend(qwen_random_model_dir))


@pytest.fixture(scope="session")
def qwen_backend_fresh(qwen_backend: Any) -> Any:
    """The same loaded model without prefix-cache reuse (re-prefills everything, as the card did)."""
    from reasonchat.engine.transformers_backend import TransformersBackend

    return _once(
        "qwen_backend_fresh", lambda: TransformersBackend(qwen_backend.loaded, cache_reuse=False)
    )


@pytest.fixture(scope="session")
def stopping_backend(stopping_model_dir: Path) -> Any:
    from reasonchat.engine.transformers_backend import load_backend

    return _once("stopping_backend", lambda: load_backend(stopping_model_dir))


@pytest.fixture(scope="session")
def stopping_backend_fresh(stopping_backend: Any) -> Any:
    from reasonchat.engine.transformers_backend import TransformersBackend

    return _once(
        "stopping_backend_fresh",
        lambda: TransformersBackend(stopping_backend.loaded, cache_reuse=False),
    )


class ForwardHook:
    """Wraps ``model.forward`` (one call per generated token) to count calls and run ``action(call)``
    inside the generating thread before the forward pass of that call."""

    def __init__(self, model: Any, action: Callable[[int], None] | None = None) -> None:
        self.model = model
        self.inner = model.forward
        self.action = action
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.action is not None:
            self.action(self.calls)
        return self.inner(*args, **kwargs)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> ForwardHook:
        monkeypatch.setattr(self.model, "forward", self)
        return self


def run_with_timeout(fn: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Run ``fn`` in a thread; fail the test (instead of hanging the suite) if it does not return.

    Returns fn's result, or re-raises its exception in the caller."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as err:  # handed back to the test thread
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        pytest.fail(f"did not finish within {timeout_s} s (a hang)")
    if "error" in box:
        raise box["error"]
    return box.get("result")
