"""The OpenAI-compatible backend against a loopback vLLM stand-in that serves a real tiny model.

The stand-in (tests/helpers/sse_server.py) generates greedily from the prompt text it receives, so the
tests can check the bytes on the wire, streaming and stopping, and script every failure. Nothing leaves
127.0.0.1.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reasonchat.bench.served import run_http_bench
from reasonchat.cli.model_options import add_model_arguments
from reasonchat.cli.openai_options import (
    add_backend_arguments,
    open_openai_backend,
    open_selected_backend,
    selected_backend,
)
from reasonchat.conversation import STAGES, Conversation
from reasonchat.engine.openai_backend import OpenAIBackend, estimate_tokens, normalize_base_url, sse_data
from reasonchat.engine.protocol import ContextOverflow, GenerationError, StageRequest
from reasonchat.engine.turn import TextChunk, TurnRunner
from reasonchat.errors import UserError
from reasonchat.settings import GenerationSettings
from reasonchat.template import END_OF_TEXT, IM_END, REASONING_TOKEN
from tests.helpers.engine_fixtures import (  # noqa: F401 (fixtures)
    byte_tokenizer_dir,
    run_with_timeout,
    stopping_model_dir,
)
from tests.helpers.models import ANSWER_TEXT, REASONING_TEXT
from tests.helpers.sse_server import SERVED_NAME, FakeVLLM, TinyModel

QUESTION = "What is 2+2? 你好"  # non-ASCII on the wire; the stopping model answers it cleanly
SHORT_TIMEOUT_S = 0.3
SECRET = "sk-test-4f9a"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx follows proxy variables: a test must never leave 127.0.0.1.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def served_dir(request: pytest.FixtureRequest) -> Path:
    """The demo model when its weights are built, else the tiny model trained to stop (~10 s)."""
    from reasonchat.demo_model import is_available, model_dir

    return model_dir() if is_available() else request.getfixturevalue("stopping_model_dir")


@pytest.fixture(scope="module")
def tiny_model(served_dir: Path) -> TinyModel:
    return TinyModel(served_dir)


@pytest.fixture(scope="module")
def module_server(tiny_model: TinyModel) -> Iterator[FakeVLLM]:
    fake = FakeVLLM(tiny_model).start()
    yield fake
    fake.stop()


@pytest.fixture
def server(module_server: FakeVLLM) -> FakeVLLM:
    module_server.reset()
    return module_server


@pytest.fixture
def locked_server(tiny_model: TinyModel) -> Iterator[FakeVLLM]:
    fake = FakeVLLM(tiny_model, api_key=SECRET).start()
    yield fake
    fake.stop()


def make_backend(url: str, **options: Any) -> OpenAIBackend:
    defaults = {"request_timeout": 10.0, "connect_timeout": 1.0, "retries": 2, "backoff_s": 0.01}
    return OpenAIBackend(url, **(defaults | options))


@pytest.fixture
def backend(server: FakeVLLM) -> Iterator[OpenAIBackend]:
    connected = make_backend(server.base_url).connect()
    yield connected
    connected.close()


@pytest.fixture
def impatient(server: FakeVLLM) -> Iterator[OpenAIBackend]:
    """Gives up after SHORT_TIMEOUT_S of silence."""
    connected = make_backend(server.base_url, request_timeout=SHORT_TIMEOUT_S).connect()
    yield connected
    connected.close()


def reasoning_request(**fields: Any) -> StageRequest:
    conversation = Conversation()
    conversation.add_turn(QUESTION)
    return StageRequest(conversation.id, "reasoning", conversation.stage_prompt(0, "reasoning"), **fields)


def drain(backend: OpenAIBackend, request: StageRequest) -> tuple[str, Any]:
    stream = backend.stream(request)
    text = "".join(run_with_timeout(lambda: list(stream), 20))
    return text, stream.stats


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- a turn over HTTP ----------------------------------------------------------------------------


def test_a_turn_sends_our_template_bytes_and_both_stages_stream_and_stop(
    server: FakeVLLM, backend: OpenAIBackend, served_dir: Path
) -> None:
    from reasonchat.demo_model import WEIGHTS_DIR

    conversation = Conversation()
    conversation.add_turn(QUESTION)
    turn = run_with_timeout(lambda: TurnRunner(backend).run(conversation), 20)

    expected = [conversation.stage_prompt(0, stage).encode() for stage in STAGES]
    assert [c.body["prompt"].encode() for c in server.completions] == expected
    assert expected[0].endswith(b"<|im_start|><|reasoning|>\n")
    assert expected[1].endswith(b"<|im_start|>assistant\n")
    reasoning_id = server.model.tokenizer.convert_tokens_to_ids(REASONING_TOKEN)
    assert server.completions[0].prompt_ids.count(reasoning_id) == 1  # the role arrived as one token
    for stage, completion in zip(STAGES, server.completions, strict=True):
        stats = turn.stats(stage)
        assert turn.text(stage) == completion.text != ""
        assert (stats.stop_reason, completion.finish_reason) == ("eos", "stop")
        assert len(stats.chunks) == completion.text_events > 1  # streamed, not delivered at the end
        assert stats.new_tokens == completion.completion_tokens  # the server's usage
        assert stats.prompt_tokens == len(completion.prompt_ids)
        assert stats.cached_tokens == completion.cached_tokens
        assert stats.ttft_s is not None and stats.decode_s is not None
    assert turn.answer_stats.cached_tokens > 0  # stage 2 extends stage 1's prompt: the server's cache hit
    if served_dir != WEIGHTS_DIR:
        assert (turn.reasoning, turn.answer) == (REASONING_TEXT, ANSWER_TEXT)


def test_the_request_carries_the_stops_the_settings_and_the_budget(
    server: FakeVLLM, backend: OpenAIBackend
) -> None:
    tokenizer = server.model.tokenizer
    settings = GenerationSettings(
        max_new_tokens=1000, temperature=0.0, top_p=0.9, top_k=0, repetition_penalty=1.1, seed=7
    )
    prompt_tokens = backend.count_tokens(reasoning_request().prompt)
    text, stats = drain(backend, reasoning_request(settings=settings, context_limit=prompt_tokens + 5))

    body = server.completions[0].body
    assert body["max_tokens"] == 5  # the room left in the context, not the 1000 asked for
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["stop"] == [IM_END, END_OF_TEXT]
    assert body["stop_token_ids"] == tokenizer.convert_tokens_to_ids([IM_END, END_OF_TEXT])
    assert (body["skip_special_tokens"], body["include_stop_str_in_output"]) == (True, False)
    sampling = {name: body[name] for name in ("temperature", "top_p", "top_k", "repetition_penalty", "seed")}
    assert sampling == {"temperature": 0.0, "top_p": 0.9, "top_k": -1, "repetition_penalty": 1.1, "seed": 7}
    assert (stats.stop_reason, stats.new_tokens, text) == ("budget", 5, server.completions[0].text)

    drain(backend, reasoning_request())
    unset = {"temperature", "top_p", "top_k", "repetition_penalty", "seed"}
    assert not unset & set(server.completions[1].body)  # the server's defaults (the checkpoint's) apply
    with pytest.raises(ContextOverflow):
        backend.stream(reasoning_request(context_limit=prompt_tokens))
    assert len(server.completions) == 2  # refused before any request


def test_without_usage_new_tokens_are_counted_per_event(server: FakeVLLM, backend: OpenAIBackend) -> None:
    server.faults.usage = False
    _, stats = drain(backend, reasoning_request())
    assert stats.stop_reason == "eos"
    assert stats.new_tokens == server.completions[0].text_events < server.completions[0].completion_tokens


# -- token counts --------------------------------------------------------------------------------


def test_counts_come_from_a_local_tokenizer_the_server_or_a_marked_estimate(
    server: FakeVLLM, served_dir: Path
) -> None:
    request = reasoning_request()
    exact = len(server.model.encode(request.prompt))

    local = make_backend(server.base_url, tokenizer_dir=str(served_dir)).connect()
    assert (local.token_counter, local.counts_are_estimates, local.count_tokens(request.prompt)) == (
        "tokenizer", False, exact
    )  # fmt: skip
    remote = make_backend(server.base_url).connect()
    assert (remote.token_counter, remote.counts_are_estimates, remote.count_tokens(request.prompt)) == (
        "server", False, exact
    )  # fmt: skip

    server.tokenize = False  # from now on
    assert remote.count_tokens(request.prompt) == exact  # remembered
    assert remote.count_tokens(request.prompt + "?") == estimate_tokens(request.prompt + "?")
    assert remote.counts_are_estimates  # while the server does not count
    guessed = make_backend(server.base_url).connect()
    assert (guessed.token_counter, guessed.counts_are_estimates) == ("estimate", True)
    assert guessed.count_tokens(request.prompt) == estimate_tokens(request.prompt) != exact
    assert guessed.stop_token_ids == []  # unknown: the model's own eos ids stop it
    _, stats = drain(guessed, request)
    assert (stats.stop_reason, stats.prompt_tokens) == ("eos", exact)  # the server's usage corrects it


def test_a_tokenizer_that_is_not_the_served_models_is_refused(
    server: FakeVLLM, byte_tokenizer_dir: Path, tmp_path: Path  # noqa: F811
) -> None:
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(byte_tokenizer_dir)
    other.add_special_tokens(
        {"additional_special_tokens": ["<|pad|>", REASONING_TOKEN]}, replace_extra_special_tokens=False
    )
    other.save_pretrained(tmp_path)
    with pytest.raises(UserError, match="is not the served model's"):
        make_backend(server.base_url, tokenizer_dir=str(tmp_path)).connect()


# -- the served model, keys and statuses ---------------------------------------------------------


def test_the_served_model_defaults_to_the_first_listed_and_a_wrong_name_lists_the_served_ones(
    server: FakeVLLM, backend: OpenAIBackend
) -> None:
    assert backend.served_model == SERVED_NAME
    assert backend.description == f"{SERVED_NAME} @ {server.base_url}"
    listed = rf"has no model named 'nope'; it serves '{SERVED_NAME}' \(pass --served-model NAME\)"
    with pytest.raises(UserError, match=listed):
        make_backend(server.base_url, served_model="nope").connect()

    server.served_name = "renamed"  # the server was restarted with another name: 404 mid-session
    with pytest.raises(GenerationError, match=rf"has no model named '{SERVED_NAME}'; it serves 'renamed'"):
        drain(backend, reasoning_request())


def test_a_wrong_base_url_path_says_to_check_it(server: FakeVLLM) -> None:
    with pytest.raises(UserError, match="/models was not found: check --base-url"):
        make_backend(server.base_url + "/extra").connect()
    named = make_backend(server.base_url + "/extra", served_model=SERVED_NAME).connect()
    with pytest.raises(GenerationError, match=r"not found at .*/v1/extra \(404\).*check --base-url"):
        drain(named, reasoning_request())


def test_a_missing_or_wrong_api_key_names_the_variable_never_the_key(locked_server: FakeVLLM) -> None:
    url = locked_server.base_url
    refused = r"refused access \(401 Unauthorized\): "
    with pytest.raises(UserError, match=refused + r"it wants an API key: set \$OPENAI_API_KEY"):
        make_backend(url).connect()
    with pytest.raises(UserError, match=refused + r"check the API key in \$MY_KEY") as caught:
        make_backend(url, api_key="sk-wrong-77", api_key_env="MY_KEY").connect()
    assert "sk-wrong-77" not in str(caught.value)
    _, stats = drain(make_backend(url, api_key=SECRET).connect(), reasoning_request())
    assert stats.stop_reason == "eos"


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (403, "forbidden", r"refused access \(403 Forbidden\): it wants an API key"),
        (
            400,
            "This model's maximum context length is 4096 tokens",
            r"rejected the request \(400 Bad Request\): This model's maximum context length is 4096 tokens$",
        ),
        (
            500,
            "CUDA out of memory\nTraceback ...",  # one line of it
            r"failed \(500 Internal Server Error\): CUDA out of memory$",
        ),
    ],
)
def test_error_statuses_become_one_line_errors_and_are_not_retried(
    server: FakeVLLM, backend: OpenAIBackend, status: int, message: str, expected: str
) -> None:
    server.faults.status, server.faults.message = status, message
    with pytest.raises(GenerationError, match=expected):
        drain(backend, reasoning_request())
    assert len(server.completions) == 1


# -- broken streams, timeouts, retries -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"drop_after": 3}, "the server dropped the connection after 3 tokens; the partial text is kept"),
        ({"end_without_done_after": 3}, "closed the reasoning stream before it finished, after 3 tokens"),
        ({"error_event_after": 3, "message": "engine died"}, "reported an error after 3 tokens: engine died"),
        ({"stall_after": 3}, f"the server sent no text for {SHORT_TIMEOUT_S:g} s after 3 tokens"),
    ],
)
def test_a_stream_that_breaks_keeps_its_partial_text_and_the_turn_records_the_error(
    server: FakeVLLM, impatient: OpenAIBackend, fault: dict[str, Any], expected: str
) -> None:
    for name, value in fault.items():
        setattr(server.faults, name, value)
    conversation = Conversation()
    conversation.add_turn(QUESTION)
    turn = run_with_timeout(lambda: TurnRunner(impatient).run(conversation), 20)

    stats = turn.reasoning_stats
    assert stats.stop_reason == "error" and expected in stats.error
    assert turn.reasoning == server.completions[0].text and len(stats.chunks) == 3
    assert turn.answer is None  # the answer stage did not run
    assert len(server.completions) == 1  # text was shown: never retried


def test_a_connection_dropped_before_the_first_token_is_retried(
    server: FakeVLLM, backend: OpenAIBackend
) -> None:
    server.faults.drop_before_headers = 1
    text, stats = drain(backend, reasoning_request())
    assert len(server.completions) == 2
    assert (stats.stop_reason, text) == ("eos", server.completions[1].text)


def test_a_server_that_never_answers_times_out_without_retrying(
    server: FakeVLLM, impatient: OpenAIBackend
) -> None:
    server.faults.hang = True
    started = time.perf_counter()
    expected = rf"no answer from {server.base_url} within {SHORT_TIMEOUT_S:g} s \(--request-timeout\)"
    with pytest.raises(GenerationError, match=expected):
        drain(impatient, reasoning_request())
    assert time.perf_counter() - started < 3
    assert len(server.completions) == 1


def test_a_refused_connection_is_retried_with_backoff_then_explained() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.perf_counter()
    expected = rf"cannot reach {url} after 3 attempts \(.*refused.*\): is the server running, and the SSH"
    with pytest.raises(UserError, match=expected):
        make_backend(url, retries=2, backoff_s=0.05).connect()
    assert time.perf_counter() - started >= 0.05 + 0.1


def test_a_server_gone_mid_session_fails_the_stage_clearly(tiny_model: TinyModel) -> None:
    fake = FakeVLLM(tiny_model).start()
    backend = make_backend(fake.base_url, retries=1).connect()
    fake.stop()
    with pytest.raises(GenerationError, match=r"cannot reach .* after 2 attempts"):
        drain(backend, reasoning_request())


# -- cancel --------------------------------------------------------------------------------------


def test_cancel_from_another_thread_ends_the_stage_at_once_and_the_server_sees_it(
    server: FakeVLLM, backend: OpenAIBackend
) -> None:
    server.faults.stall_after = 2  # then silent, connection open: only a cancel can end it
    conversation = Conversation()
    conversation.add_turn(QUESTION)
    runner = TurnRunner(backend)
    chunks: list[TextChunk] = []
    def on_event(event: object) -> None:
        if isinstance(event, TextChunk):
            chunks.append(event)

    worker = threading.Thread(target=runner.run, args=(conversation, on_event))
    worker.start()
    wait_for(lambda: len(chunks) == 2)

    started = time.perf_counter()
    runner.cancel()
    worker.join(5)
    assert not worker.is_alive() and time.perf_counter() - started < 0.5
    assert server.disconnected.wait(1)  # the socket was shut down, not left to the next byte
    turn = conversation.turns[0]
    assert (turn.reasoning_stats.stop_reason, turn.reasoning) == ("cancelled", server.completions[0].text)
    assert turn.answer is None


def test_cancel_before_the_server_answers_returns_at_once(server: FakeVLLM, backend: OpenAIBackend) -> None:
    server.faults.hang = True
    request = reasoning_request()
    stream = backend.stream(request)
    worker = threading.Thread(target=lambda: list(stream))
    worker.start()
    wait_for(lambda: len(server.completions) == 1)

    started = time.perf_counter()
    request.cancel.set()  # what TurnRunner.cancel does before calling the backend's
    backend.cancel()
    worker.join(5)
    assert not worker.is_alive() and time.perf_counter() - started < 0.5
    assert (stream.stats.stop_reason, stream.stats.new_tokens) == ("cancelled", 0)


# -- pieces --------------------------------------------------------------------------------------


def test_sse_events_may_span_lines_and_comments_and_other_fields_are_skipped() -> None:
    lines = [": keep-alive", "", "event: completion", 'data: {"a":', "data:1}", "", "id: 7", "data: [DONE]"]
    assert list(sse_data(lines)) == ['{"a":\n1}', "[DONE]"]


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("http://localhost:8000", "http://localhost:8000/v1"),
        ("http://localhost:8000/v1/", "http://localhost:8000/v1"),
        (" https://gpu.example/proxy/v1 ", "https://gpu.example/proxy/v1"),
    ],
)
def test_base_urls_are_normalized(url: str, normalized: str) -> None:
    assert normalize_base_url(url) == normalized


@pytest.mark.parametrize(
    "url",
    ["localhost:8000", "ftp://host/v1", "http://", "http://host:99999/v1", "http://h/v1?x=1", "not a url"],
)
def test_malformed_base_urls_are_user_errors(url: str) -> None:
    with pytest.raises(UserError, match="--base-url must be an http"):
        normalize_base_url(url)


def test_a_base_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(UserError, match="must not carry credentials") as caught:
        normalize_base_url("http://me:sk-hidden@gpu-box:8000/v1")
    assert "sk-hidden" not in str(caught.value)


# -- command-line options ------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    add_backend_arguments(parser)
    return parser.parse_args(argv)


def test_cli_options_are_checked_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connecting would fail differently
    assert selected_backend(parse()) == "transformers"
    assert selected_backend(parse("--base-url", url)) == "openai"
    cases = [
        (("--backend", "openai"), "--backend openai needs --base-url URL"),
        (("--base-url", "localhost:8000"), "--base-url must be an http"),
        (("--base-url", url, "--device", "cuda"), "--device is for a model loaded here"),
        (("--base-url", url, "--request-timeout", "0"), "--request-timeout must be a positive number"),
        (("--base-url", url, "--api-key-env", "RC_UNSET"), "the environment variable RC_UNSET is not set"),
        (("--base-url", url, "--api-key-env", "not a name"), "--api-key-env takes the name"),
        (("--backend", "transformers", "--base-url", url), "--base-url is for a served model"),
        (("--tokenizer", "/tmp"), "--tokenizer is for a served model"),
    ]
    monkeypatch.delenv("RC_UNSET", raising=False)
    for argv, expected in cases:
        with pytest.raises(UserError, match=expected):
            open_selected_backend(parse(*argv))


def test_cli_opens_a_connected_backend_with_the_key_from_the_environment(
    locked_server: FakeVLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = locked_server.base_url
    monkeypatch.setenv("RC_TEST_KEY", SECRET)
    progress: list[str] = []
    backend = open_openai_backend(parse("--base-url", url, "--api-key-env", "RC_TEST_KEY"), progress.append)
    assert backend.served_model == SERVED_NAME and progress[-1] == "ready"
    assert SECRET not in " ".join(progress) + backend.description

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match=r"401"):
        open_selected_backend(parse("--base-url", url))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # the default variable, when set
    assert open_selected_backend(parse("--base-url", url)).served_model == SERVED_NAME


# -- bench over HTTP -----------------------------------------------------------------------------


def test_the_http_bench_measures_stage_two_and_decode(server: FakeVLLM, backend: OpenAIBackend) -> None:
    result = run_with_timeout(lambda: run_http_bench(backend, [120], decode_tokens=12, stage_tokens=6), 30)
    (history,) = result.history
    assert history.stage2_prompt_tokens >= 120
    assert min(history.cold_stage2_ttft_s, history.warm_stage2_ttft_s, history.next_turn_ttft_s) > 0
    system_prompts = [c.body["prompt"].split("<|im_end|>", 1)[0] for c in server.completions]
    assert sum("[" in prompt for prompt in system_prompts) == 1  # exactly one request behind an unseen prefix
    assert result.decode_tokens_per_s is not None and result.decode_tokens_per_s > 0
    assert len(result.lines()) == 3 and result.to_json()["history"][0]["cache_speedup"] > 0


def test_ask_over_http_saves_the_turn(module_server: FakeVLLM, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from reasonchat.cli import main
    from reasonchat.store import Store

    module_server.reset()
    code = main(["ask", "--json", "--backend", "openai", "--base-url", module_server.base_url, "What is 12 + 7?"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stages"]["reasoning"]["stop_reason"] == "eos"
    assert data["stages"]["answer"]["stop_reason"] == "eos"
    with Store.open() as store:
        conv = store.get(data["conversation_id"])
    assert conv.turns[0].answer == data["answer"] and data["answer"]
    assert conv.model  # the served model, recorded with the turn


# -- what the client enforces itself (a server is not trusted to stop) ----------------------------


def sse_event(payload: Any) -> bytes:
    import json

    return f"data: {json.dumps(payload)}\n\n".encode()


def text_event(text: str, finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "text": text, "finish_reason": finish_reason}
    return sse_event({"object": "text_completion", "choices": [choice]})


@pytest.mark.parametrize("counter", ["tokenizer", "server", "estimate"])
def test_a_server_that_ignores_max_tokens_is_cut_at_the_budget_and_the_stream_closed(
    server: FakeVLLM, served_dir: Path, counter: str
) -> None:
    server.tokenize = counter == "server"
    options = {"tokenizer_dir": str(served_dir)} if counter == "tokenizer" else {}
    backend = make_backend(server.base_url, **options).connect()
    assert backend.token_counter == counter
    server.faults.ignore_max_tokens, server.faults.endless = True, "7 "
    started = time.perf_counter()
    text, stats = drain(backend, reasoning_request(settings=GenerationSettings(max_new_tokens=10)))

    assert time.perf_counter() - started < 5
    assert stats.stop_reason == "budget" and stats.new_tokens == 10
    assert server.completions[0].body["max_tokens"] == 10  # asked for, ignored
    assert text and server.completions[0].text.startswith(text)
    assert server.model.encode(text, special=False).__len__() <= 10
    assert server.disconnected.wait(2)  # the client hung up: the server stops generating


@pytest.mark.parametrize("counter", ["tokenizer", "estimate"])
def test_one_huge_event_is_trimmed_to_the_budget(
    server: FakeVLLM, served_dir: Path, counter: str
) -> None:
    server.tokenize = False
    options = {"tokenizer_dir": str(served_dir)} if counter == "tokenizer" else {}
    backend = make_backend(server.base_url, **options).connect()
    digits = "1 2 3 4 5 6 7 8 9 " * 1000
    server.faults.body = [text_event(digits), text_event("", "length")]
    text, stats = drain(backend, reasoning_request(settings=GenerationSettings(max_new_tokens=10)))

    assert stats.stop_reason == "budget" and digits.startswith(text)
    if counter == "tokenizer":
        assert backend.count_tokens(text) == stats.new_tokens == 10  # the longest prefix that fits
    else:
        from reasonchat.engine.openai_backend import MAX_CHARS_PER_TOKEN

        assert len(text) == 10 * MAX_CHARS_PER_TOKEN


def test_the_client_ends_the_text_at_a_stop_string_the_server_sends_as_text(server: FakeVLLM) -> None:
    backend = make_backend(server.base_url).connect()
    server.faults.body = [text_event(t) for t in ("Hello", " wor", "ld <|im", "_end|>and more", "!")]
    text, stats = drain(backend, reasoning_request())
    assert (text, stats.stop_reason) == ("Hello world ", "eos")
    # A stop string's first characters are held back until they turn out to be text.
    server.faults.body = [text_event("a <|im"), text_event("_ok"), text_event("", "stop")]
    assert drain(backend, reasoning_request())[0] == "a <|im_ok"


STOP_TEXTS = [
    "plain text with no stop",
    "a <|im_end|> and after",
    "x <<|endoftext|>",
    "ends on a start <|im_e",
    "a <|im_ok, not a stop",
    "<<<|<|im_end|",
    "<|im_end|><|endoftext|>",
    "less < than, <| almost, <|endoftext",
]


def split_everywhere(text: str) -> Iterator[list[str]]:
    """``text`` as one piece, then cut at every pair of positions (three pieces, empty ones kept)."""
    yield [text]
    for first in range(len(text) + 1):
        for second in range(first, len(text) + 1):
            yield [text[:first], text[first:second], text[second:]]


@pytest.mark.parametrize("text", STOP_TEXTS)
def test_the_stop_matcher_ends_at_the_first_stop_however_the_text_is_split(text: str) -> None:
    from reasonchat.engine.openai_backend import STOP_STRINGS, _StopMatcher

    hits = [at for stop in STOP_STRINGS if (at := text.find(stop)) >= 0]
    expected = text[: min(hits)] if hits else text
    for pieces in split_everywhere(text):
        matcher, shown, stopped, fed = _StopMatcher(STOP_STRINGS), "", False, ""
        for piece in pieces:
            fed += piece
            part, stopped = matcher.feed(piece)
            shown += part
            if stopped:
                break
            # Held back: only what may still become a stop string, and nothing else.
            assert shown + matcher.held == fed
            assert not matcher.held or any(stop.startswith(matcher.held) for stop in STOP_STRINGS)
            longer_tails = [fed[len(fed) - n :] for n in range(len(matcher.held) + 1, len(fed) + 1)]
            assert not any(stop.startswith(tail) for stop in STOP_STRINGS for tail in longer_tails), pieces
        if not stopped:
            shown += matcher.flush()
        assert (shown, stopped) == (expected, bool(hits)), pieces


def test_extensions_the_server_rejects_are_dropped_once_and_for_all(server: FakeVLLM) -> None:
    from reasonchat.engine.openai_backend import DROPPABLE_FIELDS

    server.faults.reject_fields = DROPPABLE_FIELDS  # what `transformers serve` answers with 422
    backend = make_backend(server.base_url).connect()
    conversation = Conversation()
    conversation.add_turn(QUESTION)
    turn = run_with_timeout(lambda: TurnRunner(backend).run(conversation), 20)

    assert (turn.reasoning_stats.stop_reason, turn.answer_stats.stop_reason) == ("eos", "eos")
    sent = [set(c.body) & set(DROPPABLE_FIELDS) for c in server.completions]
    assert sent == [set(DROPPABLE_FIELDS), set(), set()]  # one retry, then never again
    assert turn.reasoning == server.completions[1].text and turn.answer == server.completions[2].text

    server.faults.reject_fields = ("top_k",)  # the user's own setting is never dropped silently
    with pytest.raises(GenerationError, match=r"422 Unprocessable Entity\): Unexpected fields .*top_k"):
        drain(backend, reasoning_request(settings=GenerationSettings(top_k=5)))
    assert len(server.completions) == 4


@pytest.mark.parametrize(
    "huge",
    [
        b"data: " + b"x" * (2 << 20),  # one endless line
        b"data: xxxxxxx\n" * (1 << 18) + b"\n",  # one event of many short lines
    ],
    ids=["line", "event"],
)
def test_an_event_over_the_cap_is_an_error_that_keeps_the_partial_text(
    server: FakeVLLM, backend: OpenAIBackend, huge: bytes
) -> None:
    server.faults.body = [text_event("kept "), text_event("too"), huge, text_event("never")]
    conversation = Conversation()
    conversation.add_turn(QUESTION)
    turn = run_with_timeout(lambda: TurnRunner(backend).run(conversation), 20)
    stats = turn.reasoning_stats
    assert (turn.reasoning, stats.stop_reason) == ("kept too", "error")
    expected = "the server sent an event larger than 1 MiB after 2 tokens; the partial text is kept"
    assert stats.error == expected


def test_a_stage_text_over_the_cap_is_an_error(
    server: FakeVLLM, backend: OpenAIBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reasonchat.engine import openai_backend

    monkeypatch.setattr(openai_backend, "MAX_STAGE_CHARS", 12)
    server.faults.body = [text_event("0123456789"), text_event("abc"), text_event("", "stop")]
    with pytest.raises(GenerationError, match="more than 12 characters for the reasoning, after 1 tokens"):
        drain(backend, reasoning_request())


def test_keep_alives_without_text_time_out_like_silence(server: FakeVLLM, impatient: OpenAIBackend) -> None:
    import itertools

    server.faults.body = itertools.chain([text_event("one")], itertools.repeat(b": keep-alive\n\n"))
    started = time.perf_counter()
    with pytest.raises(GenerationError, match=rf"sent no text for {SHORT_TIMEOUT_S:g} s after 1 tokens"):
        drain(impatient, reasoning_request())
    assert time.perf_counter() - started < 3


def test_sse_lines_survive_any_chunking_and_refuse_an_endless_line() -> None:
    from reasonchat.engine.openai_backend import EventTooLarge, sse_lines

    stream = b'data: {"a": "\xc3\xa9"}\r\n\r\n: ping\ndata: [DONE]\n'
    for size in (1, 2, 3, 7, len(stream)):
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert list(sse_lines(chunks, 64)) == ['data: {"a": "é"}', "", ": ping", "data: [DONE]"]
    with pytest.raises(EventTooLarge):
        list(sse_lines([b"x" * 40, b"x" * 40], 64))
    with pytest.raises(EventTooLarge):
        list(sse_lines([b"x" * 100 + b"\n"], 64))
