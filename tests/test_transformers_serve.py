"""Against a real server no one here wrote: ``transformers serve`` on the demo model, over loopback.

It validates requests strictly (422 "Unexpected fields" for vLLM's extensions), streams without
``data: [DONE]`` and serves no ``/tokenize``, so it exercises what our own fakes cannot: the backend must
drop the extensions once, stop by itself, and count by estimate. Greedy decoding must give exactly the
local engine's text, turn after turn. Its packages come with the test extras (``transformers[serving]``'s
fastapi, uvicorn, openai); the test skips only when they are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reasonchat.conversation import STAGES, Conversation
from reasonchat.engine.openai_backend import DROPPABLE_FIELDS, OpenAIBackend
from reasonchat.engine.turn import TurnRunner
from reasonchat.settings import GenerationSettings

pytestmark = pytest.mark.slow

QUESTIONS = ("What is 12 + 7?", "subtract 5 from 9", "Add 4821 and 5377.")
START_TIMEOUT_S = 90.0  # importing torch and loading on 2 busy cores; the demo model itself is 1.7 MB
STAGE_TIMEOUT_S = 60.0


def _serving_available() -> str | None:
    from transformers.utils.import_utils import is_serve_available

    if is_serve_available():
        return None
    return "transformers serve needs fastapi, uvicorn and openai: pip install -e '.[test]'"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx follows proxy variables: the test must never leave 127.0.0.1.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of ``transformers serve`` on a copy of the demo model (the model's id on the server
    is its path: a copy keeps the package's directory out of it)."""
    from reasonchat.demo_model import WEIGHTS_DIR, is_available

    if reason := _serving_available():
        pytest.skip(reason)
    if not is_available():
        pytest.skip("the demo model's weights are not built (reasonchat demo-model build)")
    root = tmp_path_factory.mktemp("serve")
    model = root / "demo"
    shutil.copytree(WEIGHTS_DIR, model)
    port = _free_port()
    log = (root / "serve.log").open("wb")
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(name, None)
    # The CLI module, not the `transformers` script: the venv's bin need not be on PATH.
    command = [sys.executable, "-c", "from transformers.cli.transformers import main; main()"]
    command += ["serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_listed(server, base_url, root / "serve.log")
        yield base_url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
        log.close()


def _wait_until_listed(server: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"transformers serve exited ({server.returncode}):\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"transformers serve did not answer within {START_TIMEOUT_S:g} s:\n{log.read_text()[-2000:]}")


def _dialog(runner: TurnRunner) -> Conversation:
    conversation = Conversation()
    for question in QUESTIONS:
        conversation.add_turn(question)
        runner.run(conversation)
    return conversation


def test_transformers_serve_gives_the_local_engines_greedy_dialog(served: str) -> None:
    from reasonchat.demo_model import model_dir
    from reasonchat.engine.transformers_backend import load_backend

    settings = GenerationSettings(max_new_tokens=200)  # the demo model stops well before
    remote = OpenAIBackend(served, request_timeout=STAGE_TIMEOUT_S, connect_timeout=5, retries=1).connect()
    local = load_backend(model_dir(), device="cpu", threads=1)
    try:
        served_dialog = _dialog(TurnRunner(remote, settings))
        local_dialog = _dialog(TurnRunner(local, settings))
    finally:
        remote.close()
        local.close()

    # It refused vLLM's extensions once (422), and the backend has left them out since.
    assert remote.rejected_fields == {"skip_special_tokens", "include_stop_str_in_output"}
    assert remote.rejected_fields <= set(DROPPABLE_FIELDS)
    for served_turn, local_turn in zip(served_dialog.turns, local_dialog.turns, strict=True):
        for stage in STAGES:
            stats = served_turn.stats(stage)
            assert stats is not None and (stats.stop_reason, stats.error) == ("eos", None)
            assert served_turn.text(stage) == local_turn.text(stage) != ""
            assert stats.new_tokens == local_turn.stats(stage).new_tokens  # the server's own usage
    assert "19" in served_dialog.turns[0].answer and "10198" in served_dialog.turns[2].answer
