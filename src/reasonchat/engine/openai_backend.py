"""A model served elsewhere: an OpenAI-compatible ``/v1/completions`` server (vLLM, SGLang, llama.cpp,
LM Studio, Ollama, ``transformers serve``).

reasonchat renders each stage's prompt with its own template and sends it raw. A chat endpoint would
apply the server's template instead and lose the ``<|reasoning|>`` turn, so it is never used.

Each stage is one streamed request (server-sent events). A thread reads the response into a queue,
so the consumer waits with a timeout, never hangs on a silent server, and can cancel at once; cancel
also shuts the socket down, which tells the server to stop generating.

Token counts (the meter and the budget) come from a local copy of the served tokenizer when given,
else from vLLM's ``/tokenize``, else from a length estimate (``counts_are_estimates``).

Nothing the server sends is trusted to be bounded: the client ends a stage itself at its token budget
and at the first stop string, caps the size of one event and of one stage's text, and gives up on a
stream that sends bytes but no text for ``request_timeout`` (docs/scaling.md, "Limits").
"""

from __future__ import annotations

import functools
import json
import math
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

from reasonchat.conversation import StageStats, StopReason
from reasonchat.engine.protocol import GenerationError, StageRequest, cap_new_tokens
from reasonchat.errors import UserError
from reasonchat.template import END_OF_TEXT, IM_END, REASONING_TOKEN
from reasonchat.unicode_text import valid_text

Progress = Callable[[str], None]
TokenCounter = Literal["tokenizer", "server", "estimate"]
T = TypeVar("T")

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_REQUEST_TIMEOUT_S = 120.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 0.5
CHARS_PER_TOKEN_ESTIMATE = 3.5
# vLLM matches stop strings against text decoded without special tokens, where <|im_end|> never
# appears: the strings serve servers that keep them, and ``stop_token_ids`` (when known) serve vLLM.
STOP_STRINGS = (IM_END, END_OF_TEXT)
# vLLM/SGLang extensions of the completions request. Servers that validate strictly (``transformers
# serve``: 422 "Unexpected fields") reject them; since the client stops at the stop strings itself and
# needs no usage event, a request whose 4xx names any of them is sent again once without those, and
# the backend leaves them out from then on. Sampling options are not dropped: the user asked for them.
DROPPABLE_FIELDS = ("skip_special_tokens", "include_stop_str_in_output", "stop_token_ids", "stream_options")

# What a server may send (docs/scaling.md, "Limits"). A real event carries a token or a few (~300
# bytes); 1 MiB is thousands of times that, and bounds what one line can make us buffer.
MAX_EVENT_BYTES = 1 << 20
# One stage's text: ~30 times what a 32k-token context holds, so only a server gone wrong reaches it;
# it bounds the turn's memory and its row in the store (a 50 MB event once became a 159 MB database).
MAX_STAGE_CHARS = 4_000_000
# Without a tokenizer the budget is enforced on the text's length: real text runs 3-5 characters a
# token, so an honest server always stops first, and a server that ignores max_tokens is cut by 2x-3x.
MAX_CHARS_PER_TOKEN = 8
# An error body is read only this far: it is quoted in one line.
_ERROR_BODY_BYTES = 64 * 1024

_FINISH_REASONS: dict[str, StopReason] = {"stop": "eos", "length": "budget"}
_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)
_POLL_S = 0.05
_COUNT_CACHE = 64
_COUNT_PAUSE_S = 30.0
_MESSAGE_CHARS = 300


def normalize_base_url(url: str) -> str:
    """``url`` checked and without a trailing slash; a bare ``http://host:port`` gets ``/v1``
    (where vLLM and SGLang serve the API). Raises ``UserError`` for anything but an http(s) URL."""
    wanted = f"--base-url must be an http(s) URL such as http://localhost:8000/v1, got {url!r}"
    try:
        parsed = httpx.URL(url.strip())
    except httpx.InvalidURL:
        raise UserError(wanted) from None
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query or parsed.fragment:
        raise UserError(wanted)
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise UserError(wanted)
    if parsed.userinfo:  # the URL is shown and saved with each conversation
        raise UserError("--base-url must not carry credentials: put the key in a variable (--api-key-env)")
    return str(parsed.copy_with(path=parsed.path.rstrip("/") or "/v1"))


def estimate_tokens(text: str) -> int:
    """A rough count for servers without ``/tokenize`` and no local tokenizer (English-like text)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN_ESTIMATE)


class EventTooLarge(Exception):
    """A server-sent line or event is over ``MAX_EVENT_BYTES``."""


def sse_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[str]:
    """The lines of an event stream, however the bytes were chunked; a line longer than
    ``max_line_bytes`` raises ``EventTooLarge`` before more of it is buffered. Invalid UTF-8 becomes
    U+FFFD (the JSON parser would refuse it anyway)."""
    buffer = bytearray()
    for chunk in chunks:
        scanned = len(buffer)  # the held part has no newline: look only at what is new
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", max(start, scanned))) >= 0:
            if end - start > max_line_bytes + 1:
                raise EventTooLarge
            yield bytes(buffer[start:end]).removesuffix(b"\r").decode("utf-8", "replace")
            start = end + 1
        del buffer[:start]
        if len(buffer) > max_line_bytes:
            raise EventTooLarge
    if buffer:
        yield buffer.decode("utf-8", "replace")


def sse_data(lines: Iterable[str], max_event_chars: int | None = None) -> Iterator[str]:
    """The ``data`` of each server-sent event; an event may span several ``data:`` lines, together at
    most ``max_event_chars`` (else ``EventTooLarge``)."""
    data: list[str] = []
    size = 0
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data, size = [], 0
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
            size += len(data[-1]) + 1
            if max_event_chars is not None and size > max_event_chars:
                raise EventTooLarge
        # Other fields (event:, id:, retry:) and comments (":" keep-alives) carry nothing we use.
    if data:
        yield "\n".join(data)


class OpenAIBackend:
    """``Backend`` over an OpenAI-compatible completions server. Call ``connect()`` before use."""

    def __init__(
        self,
        base_url: str,
        *,
        served_model: str | None = None,
        api_key: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        tokenizer_dir: str | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.served_model = served_model
        self.api_key_env = api_key_env  # named in messages; the key itself is only in the header
        self.tokenizer_dir = tokenizer_dir
        self.request_timeout = request_timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.token_counter: TokenCounter = "estimate"
        self.stop_token_ids: list[int] = []
        self._has_key = bool(api_key)
        self.client = httpx.Client(
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            timeout=httpx.Timeout(request_timeout, connect=connect_timeout),
        )
        self._tokenizer: Any = None
        # The meter and the stage count the same prompt in a row: remember recent answers.
        self._server_counts = functools.lru_cache(maxsize=_COUNT_CACHE)(self._count_on_server)
        self._server_counts_paused_until = 0.0
        self._cancel: threading.Event | None = None
        self._current: _Exchange | None = None
        self.rejected_fields: set[str] = set()  # DROPPABLE_FIELDS this server refused: never sent again

    # -- the Backend protocol ---------------------------------------------------------------------

    @property
    def description(self) -> str:
        return f"{self.served_model} @ {self.base_url}"

    # One request per sample: the server's prefix cache (vLLM, SGLang) serves the shared prompt.
    batch_sampler = None
    notice = None  # the server runs as it runs: nothing of ours to fall back from

    @property
    def counts_are_estimates(self) -> bool:
        """True while token counts are guessed from the text length (show them as approximate)."""
        return self._tokenizer is None and not self._server_counting()

    def count_tokens(self, text: str) -> int:
        exact = self.exact_count(text)
        return estimate_tokens(text) if exact is None else exact

    def exact_count(self, text: str, special: bool = True) -> int | None:
        """Tokens in ``text`` by the served model's tokenizer (here or on the server), with a BOS and
        the like where a prompt gets them (``special``); None when only an estimate can be had."""
        if self._tokenizer is not None:
            return len(self._tokenizer(text, add_special_tokens=special)["input_ids"])
        if self._server_counting():
            try:
                return self._server_counts(text, special)
            except (httpx.HTTPError, LookupError):
                # Estimate for a while rather than wait on a failing server at every count; the
                # stage's own request reports the problem, and its usage corrects the count.
                self._server_counts_paused_until = time.monotonic() + _COUNT_PAUSE_S
        return None

    def stream(self, request: StageRequest) -> _CompletionStream:
        if self.served_model is None:
            raise RuntimeError("OpenAIBackend.connect() was not called")
        prompt_tokens = self.count_tokens(request.prompt)
        max_tokens = cap_new_tokens(
            request.stage, prompt_tokens, request.context_limit, request.settings.budget(request.stage)
        )
        self._cancel = request.cancel
        stream = _CompletionStream(self, request, prompt_tokens, max_tokens, self._body(request, max_tokens))
        self._current = stream.exchange
        return stream

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        if self._current is not None:
            self._current.abort()

    def reset(self) -> None:
        pass  # the server's prefix cache is shared and automatic: nothing here is per conversation

    def close(self) -> None:
        if self._current is not None:
            self._current.abort()
        self.client.close()

    # -- connecting -------------------------------------------------------------------------------

    def connect(self, progress: Progress | None = None) -> OpenAIBackend:
        """Pick the served model, learn the special tokens and how to count. Raises ``UserError``."""
        report = progress or (lambda message: None)
        report(f"connecting to {self.base_url}")
        self.served_model = self._choose_model(self._list_models())
        report(f"checking the tokens of {self.served_model}")
        server_ids = self._server_special_ids()
        if server_ids is not None:
            self.stop_token_ids = server_ids.stop_ids
            self.token_counter = "server"
        if self.tokenizer_dir:
            report(f"loading the tokenizer in {self.tokenizer_dir}")
            self._tokenizer = self._load_tokenizer(self.tokenizer_dir, server_ids)
            self.token_counter = "tokenizer"
        report("ready")
        return self

    def _list_models(self) -> list[str] | None:
        """The ids ``/models`` lists, or None where the server has no such endpoint."""
        url = f"{self.base_url}/models"
        try:
            response = self._retrying(lambda: self.client.get(url))
        except _RETRYABLE as err:
            raise UserError(self._unreachable(err)) from None
        except httpx.HTTPError as err:
            raise UserError(f"cannot list the models at {url}: {_one_line(str(err))}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise UserError(self._status_message(response))
        try:
            return [str(model["id"]) for model in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{url} did not answer with a model list; check --base-url") from None

    def _choose_model(self, served: list[str] | None) -> str:
        if served is None:
            if self.served_model:
                return self.served_model
            raise UserError(
                f"{self.base_url}/models was not found: check --base-url (vLLM and SGLang serve the API "
                "under /v1) or pass --served-model NAME"
            )
        if not served:
            raise UserError(f"the server at {self.base_url} serves no model yet")
        if self.served_model is None:
            return served[0]
        if self.served_model not in served:
            raise UserError(self._unknown_model(served))
        return self.served_model

    def _server_special_ids(self) -> _SpecialIds | None:
        """Ids of the ChatML specials from the server's own tokenizer, or None without ``/tokenize``.

        Also the one check of the served checkpoint we can make: without ``<|reasoning|>`` as a single
        token the model was not prepared, and would be fed its role as ~6 ordinary tokens."""
        try:
            im_end, end_of_text, reasoning = (
                self._server_tokens(token, special=False) for token in (IM_END, END_OF_TEXT, REASONING_TOKEN)
            )
        except httpx.HTTPError:
            return None
        if im_end is None or end_of_text is None or reasoning is None:
            return None
        if len(im_end) != 1:
            raise UserError(f"the model {self.served_model} has no {IM_END} token: it is not a ChatML model")
        if len(reasoning) != 1:
            raise UserError(
                f"the model {self.served_model} has no {REASONING_TOKEN} token (its tokenizer splits it "
                f"into {len(reasoning)} tokens): serve a checkpoint made by `reasonchat prepare-model`"
            )
        stop_ids = im_end + (end_of_text if len(end_of_text) == 1 else [])
        return _SpecialIds(reasoning_id=reasoning[0], stop_ids=stop_ids)

    def _load_tokenizer(self, directory: str, server_ids: _SpecialIds | None) -> Any:
        from reasonchat.engine.loading import check_tokenizer, load_tokenizer
        from reasonchat.token_ids import single_token_id

        if not Path(directory).expanduser().is_dir():
            raise UserError(f"--tokenizer {directory}: not a directory")
        tokenizer = load_tokenizer(str(Path(directory).expanduser()))
        reasoning_id, eos_ids = check_tokenizer(tokenizer, directory)
        if server_ids is not None:
            local = (single_token_id(tokenizer, IM_END), reasoning_id)
            served = (server_ids.stop_ids[0], server_ids.reasoning_id)
            if local != served:
                raise UserError(
                    f"the tokenizer in {directory} is not the served model's ({IM_END}, {REASONING_TOKEN} "
                    f"are {local} there and {served} on the server): pass the served checkpoint's directory"
                )
        else:
            self.stop_token_ids = eos_ids
        return tokenizer

    # -- requests ---------------------------------------------------------------------------------

    @property
    def _server_root(self) -> str:
        # vLLM serves /tokenize beside /v1, not under it.
        return self.base_url.removesuffix("/v1")

    def _server_tokens(self, text: str, special: bool = True) -> list[int] | None:
        """Token ids from vLLM's ``/tokenize`` (``special``: add BOS etc. as a completion would)."""
        response = self.client.post(
            f"{self._server_root}/tokenize",
            json={"model": self.served_model, "prompt": text, "add_special_tokens": special},
        )
        if response.status_code != 200:
            return None
        try:
            tokens = response.json()["tokens"]
        except (ValueError, KeyError, TypeError):
            return None
        return tokens if isinstance(tokens, list) else None

    def _server_counting(self) -> bool:
        return self.token_counter == "server" and time.monotonic() >= self._server_counts_paused_until

    def _count_on_server(self, text: str, special: bool = True) -> int:
        """The server's count; raises (``httpx.HTTPError``, ``LookupError``) so no failure is cached."""
        tokens = self._server_tokens(text, special)
        if tokens is None:
            raise LookupError("the server did not count")
        return len(tokens)

    def _body(self, request: StageRequest, max_tokens: int) -> dict[str, Any]:
        settings = request.settings
        body: dict[str, Any] = {
            "model": self.served_model,
            "prompt": request.prompt,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "stop": list(STOP_STRINGS),
            "skip_special_tokens": True,
            "include_stop_str_in_output": False,
        }
        if self.stop_token_ids:
            body["stop_token_ids"] = self.stop_token_ids
        # transformers' "top_k off" is 0; vLLM and SGLang spell it -1.
        top_k = -1 if settings.top_k == 0 else settings.top_k
        optional = {
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "top_k": top_k,
            "repetition_penalty": settings.repetition_penalty,
            "seed": settings.seed,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        return {name: value for name, value in body.items() if name not in self.rejected_fields}

    def _completions_request(self, body: dict[str, Any]) -> httpx.Request:
        # identity: a compressed body would let a few bytes on the wire become any size here.
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
        return self.client.build_request("POST", f"{self.base_url}/completions", json=body, headers=headers)

    def _drop_rejected_fields(self, response: httpx.Response, body: dict[str, Any]) -> bool:
        """Whether a 4xx names fields of ``DROPPABLE_FIELDS`` that ``body`` has: if so they are removed
        from it and from every later request."""
        if not 400 <= response.status_code < 500:
            return False
        text = response.text
        named = {name for name in DROPPABLE_FIELDS if name in body and re.search(rf"\b{name}\b", text)}
        self.rejected_fields |= named
        for name in named:
            del body[name]
        return bool(named)

    def _retrying(
        self,
        attempt: Callable[[], T],
        may_retry: Callable[[], bool] = lambda: True,
        stop: threading.Event | None = None,
    ) -> T:
        """``attempt()``, repeated with doubling pauses while the connection fails (and ``may_retry``).
        A set ``stop`` ends the pause at once with ``_Aborted``."""
        pause = (stop or threading.Event()).wait
        for retry in range(self.retries):
            try:
                return attempt()
            except _RETRYABLE:
                if not may_retry():
                    raise
            if pause(self.backoff_s * 2**retry):
                raise _Aborted
        return attempt()

    # -- messages ---------------------------------------------------------------------------------

    def _status_message(self, response: httpx.Response) -> str:
        status = f"{response.status_code} {response.reason_phrase}".strip()
        detail = _server_message(response)
        code = response.status_code
        if code in (401, 403):
            if self._has_key:
                hint = f"check the API key in ${self.api_key_env}"
            else:
                hint = f"it wants an API key: set ${self.api_key_env} or pass --api-key-env VAR"
            return f"the server at {self.base_url} refused access ({status}): {hint}"
        if code == 404:
            return self._not_found(detail)
        if code >= 500:
            return f"the server at {self.base_url} failed ({status}): {detail}"
        return f"the server rejected the request ({status}): {detail}"

    def _not_found(self, detail: str) -> str:
        try:
            served = self._list_models()
        except UserError:
            served = None
        if served is not None and self.served_model not in served:
            return self._unknown_model(served)
        return f"not found at {self.base_url} (404): {detail}; check --base-url (the API is under /v1)"

    def _unknown_model(self, served: list[str]) -> str:
        return (
            f"the server at {self.base_url} has no model named {self.served_model!r}; it serves "
            f"{', '.join(repr(name) for name in served) or 'nothing'} (pass --served-model NAME)"
        )

    def _unreachable(self, error: BaseException) -> str:
        return (
            f"cannot reach {self.base_url} after {self.retries + 1} attempts ({_reason(error)}): "
            "is the server running, and the SSH tunnel up?"
        )


@dataclass(frozen=True)
class _SpecialIds:
    reasoning_id: int
    stop_ids: list[int]


class _Aborted(Exception):
    """The exchange was cancelled while it waited to retry."""


@dataclass(frozen=True)
class _End:
    """The response body ended: after ``data: [DONE]`` (``clean``) or without it."""

    clean: bool


@dataclass(frozen=True)
class _Failure:
    error: BaseException


_CANCELLED = object()


class _Exchange:
    """One streamed completions request, read in a thread of its own into ``items``: JSON payloads,
    then one ``_End`` or ``_Failure``."""

    def __init__(self, backend: OpenAIBackend, body: dict[str, Any]) -> None:
        self.backend = backend
        self.body = dict(body)  # fields the server rejects are dropped from it
        self.items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.aborted = threading.Event()
        self.text_seen = False
        # When the event stream began: only then can a server keep it busy without text. Before, the
        # client's own timeouts bound each attempt, and the retries are counted.
        self.streaming_since: float | None = None
        self._lock = threading.Lock()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, name="reasonchat-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def abort(self) -> None:
        """Stop from any thread. Shutting the socket down wakes a read blocked in the other thread and
        tells the server at once; closing the socket alone would wait for the server's next byte."""
        self.aborted.set()
        with self._lock:
            if self._response is not None:
                _shutdown(self._response)

    def _run(self) -> None:
        try:
            # Retrying is safe only while nothing was shown: a repeated stage would restart its text.
            self.backend._retrying(self._attempt, may_retry=lambda: not self.text_seen, stop=self.aborted)
        except _Aborted:
            pass
        except BaseException as err:  # reaches the consumer; a thread must not die silently
            self.items.put(_Failure(err))

    def _attempt(self) -> None:
        backend = self.backend
        for resent in (False, True):
            response = backend.client.send(backend._completions_request(self.body), stream=True)
            with self._lock:
                self._response = response
            try:
                if self.aborted.is_set():
                    return
                if response.status_code != 200:
                    response = _read_capped(response, _ERROR_BODY_BYTES)
                    if not resent and backend._drop_rejected_fields(response, self.body):
                        continue  # once, without the extensions the server named
                    raise GenerationError(backend._status_message(response))
                kind = response.headers.get("content-type", "")
                if not kind.startswith("text/event-stream"):
                    answered = kind or "no content type"
                    raise GenerationError(f"the server answered with {answered}, not an event stream")
                self.streaming_since = time.monotonic()
                lines = sse_lines(response.iter_raw(), MAX_EVENT_BYTES)
                for data in sse_data(lines, MAX_EVENT_BYTES):
                    if data == "[DONE]":
                        self.items.put(_End(clean=True))
                        return
                    payload = json.loads(data)
                    self.text_seen = self.text_seen or bool(_choice(payload).get("text"))
                    self.items.put(payload)
                self.items.put(_End(clean=False))
                return
            finally:
                with self._lock:
                    self._response = None
                response.close()


class _CompletionStream:
    """A ``StageStream`` over one ``_Exchange``."""

    def __init__(
        self,
        backend: OpenAIBackend,
        request: StageRequest,
        prompt_tokens: int,
        max_tokens: int,
        body: dict[str, Any],
    ) -> None:
        self.backend = backend
        self.request = request
        self.stats = StageStats(prompt_tokens=prompt_tokens)
        self.exchange = _Exchange(backend, body)
        self.finish_reason: str | None = None
        self._budget = _OutputBudget(backend, max_tokens)
        self._stops = _StopMatcher(STOP_STRINGS)
        self._first: float | None = None
        self._last: float | None = None
        self._text_at = 0.0  # when text last came: a stall is timed from it (or from the stream's start)

    def __iter__(self) -> Iterator[str]:
        started = time.perf_counter()
        self._text_at = time.monotonic()
        self.exchange.start()
        server_ended = False
        try:
            server_ended = yield from self._deltas(started)
        finally:
            if not server_ended:  # cancelled, failed, cut here, or the consumer left: drop it now
                self.exchange.abort()

    def _deltas(self, started: float) -> Generator[str, None, bool]:
        """Yields the text; returns True when the server ended the stream, False when it was cut
        here (cancel, a stop string, the budget)."""
        stats = self.stats
        while (item := self._next()) is not _CANCELLED:
            if isinstance(item, _Failure):
                yield from self._emit(self._stops.flush(), started)  # held back, but it did arrive
                if self.request.cancel.is_set():
                    break  # the read failed because cancel shut the socket down
                raise self._error(item.error) from item.error
            if isinstance(item, _End):
                if (yield from self._emit(self._stops.flush(), started)):
                    self._end(item)
                return True
            raw = self._take(item)
            if raw:
                self._text_at = time.monotonic()
            elif self._stalled():
                # Bytes keep coming (keep-alives, empty events) but no text: a stall all the same.
                raise self._error(httpx.ReadTimeout("no text"))
            text, stopped = self._stops.feed(raw)
            if not (yield from self._emit(text, started)):
                return False
            if stopped:  # a server that does not stop at our stop strings
                stats.stop_reason = "eos"
                self._set_decode_time()
                return False
        stats.stop_reason = "cancelled"
        self._set_decode_time()
        return False

    def _emit(self, text: str, started: float) -> Generator[str, None, bool]:
        """Yields what of ``text`` fits the budget; False when the budget ended the stage."""
        if not text:
            return True
        kept, within = self._budget.take(text)
        if kept:
            if self._budget.chars > MAX_STAGE_CHARS:
                raise GenerationError(
                    f"the server sent more than {MAX_STAGE_CHARS:,} characters for the {self.request.stage}, "
                    f"after {self._progress()}; the partial text is kept"
                )
            self._last = time.perf_counter()
            if self._first is None:
                self._first = self._last
                self.stats.ttft_s = self._first - started
            # The client's own count; the server's final usage, when it comes, replaces it.
            self.stats.new_tokens = self._budget.tokens
            yield kept
        if not within:
            self.stats.stop_reason = "budget"
            self._set_decode_time()
        return within

    def _next(self) -> Any:
        # Never block without a timeout: a cancel must be seen even while the server is silent.
        while not self.request.cancel.is_set():
            try:
                return self.exchange.items.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stalled():  # the reader's own timeout sees silence, not keep-alives
                    return _Failure(httpx.ReadTimeout("no text"))
        return _CANCELLED

    def _stalled(self) -> bool:
        if (streaming := self.exchange.streaming_since) is None:
            return False
        return time.monotonic() - max(self._text_at, streaming) > self.backend.request_timeout

    def _take(self, payload: Any) -> str:
        """Apply one event's usage and finish reason; its text."""
        if not isinstance(payload, dict):
            raise GenerationError(f"the server sent an unexpected event: {_one_line(json.dumps(payload))}")
        # vLLM reports a failure after the 200 status as an event carrying an error object.
        if payload.get("error") or payload.get("object") == "error":
            detail = _error_text(payload) or _one_line(json.dumps(payload))
            raise GenerationError(f"the server reported an error after {self._progress()}: {detail}")
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self._apply_usage(usage)
        choice = _choice(payload)
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        text = choice.get("text")
        return text if isinstance(text, str) else ""

    def _apply_usage(self, usage: dict[str, Any]) -> None:
        stats = self.stats
        if isinstance(usage.get("completion_tokens"), int):
            stats.new_tokens = usage["completion_tokens"]
        if isinstance(usage.get("prompt_tokens"), int):
            stats.prompt_tokens = usage["prompt_tokens"]  # the server's count is exact; ours may not be
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            stats.cached_tokens = details["cached_tokens"]

    def _end(self, end: _End) -> None:
        if not end.clean and self.finish_reason is None:
            raise GenerationError(
                f"the server closed the {self.request.stage} stream before it finished, after "
                f"{self._progress()}; the partial text is kept"
            )
        reason = _FINISH_REASONS.get(self.finish_reason or "stop")
        if reason is None:
            raise GenerationError(
                f"the server ended the {self.request.stage} with finish reason {self.finish_reason!r} "
                f"after {self._progress()}"
            )
        self.stats.stop_reason = reason
        self._set_decode_time()

    def _set_decode_time(self) -> None:
        first, last = self._first, self._last
        self.stats.decode_s = (last - first) if first is not None and last is not None else 0.0

    def _progress(self) -> str:
        return f"{self.stats.new_tokens} tokens"

    def _error(self, error: BaseException) -> GenerationError:
        """One line for what went wrong, with what was kept."""
        backend, tokens = self.backend, self.stats.new_tokens
        if isinstance(error, GenerationError):
            return error
        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
            return GenerationError(backend._unreachable(error))
        if isinstance(error, httpx.ReadTimeout):
            if tokens:
                return GenerationError(
                    f"the server sent no text for {backend.request_timeout:g} s after {tokens} tokens "
                    "(--request-timeout); the partial text is kept"
                )
            return GenerationError(
                f"no answer from {backend.base_url} within {backend.request_timeout:g} s "
                "(--request-timeout): the server may be overloaded or stuck"
            )
        if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError):
            if tokens:
                return GenerationError(
                    f"the server dropped the connection after {tokens} tokens; the partial text is kept"
                )
            return GenerationError(
                f"the server at {backend.base_url} closed the connection without answering "
                f"({_reason(error)}) after {backend.retries + 1} attempts"
            )
        if isinstance(error, EventTooLarge):
            return GenerationError(
                f"the server sent an event larger than {MAX_EVENT_BYTES // 2**20} MiB after {tokens} tokens; "
                "the partial text is kept"
            )
        if isinstance(error, ValueError):  # json.JSONDecodeError
            return GenerationError(f"the server sent an event that is not JSON: {_reason(error)}")
        what = f"{type(error).__name__}: {_reason(error)}"
        return GenerationError(f"the request to {backend.base_url} failed: {what}")


class _OutputBudget:
    """The client's own count of a stage's new tokens, so that a server ignoring ``max_tokens`` is
    stopped at the budget all the same.

    Two lower bounds of what the server generated: the events with text (each is at least one token),
    and the text counted by the model's tokenizer (re-encoding decoded text merges what it can, so it
    gives at most the tokens that made it, bar rare cases of one). Counting the whole text at every event would cost O(n²),
    but a token is at least one UTF-8 byte of text, so after a count the text may grow by the
    budget's remaining tokens in bytes before it could be over: only then is it counted again, a few
    handful of times in a stage that runs to its budget. Without a tokenizer, the text may reach
    ``MAX_CHARS_PER_TOKEN`` characters a token."""

    def __init__(self, backend: OpenAIBackend, max_tokens: int) -> None:
        self.backend = backend
        self.max_tokens = max_tokens
        self.parts: list[str] = []
        self.chars = 0
        self.events = 0
        self.counted = 0  # the tokenizer's count of the text at its last count
        self.unchecked_bytes = 0  # bytes of text since then

    @property
    def tokens(self) -> int:
        return max(self.events, self.counted)

    def take(self, delta: str) -> tuple[str, bool]:
        """The part of ``delta`` that fits, and whether all of it did (False: the budget is spent)."""
        if self.events >= self.max_tokens:
            return "", False
        added = len(delta.encode("utf-8", "surrogatepass"))
        if self.counted + self.unchecked_bytes + added <= self.max_tokens:
            self._keep(delta, added)
            return delta, True
        if self.backend.counts_are_estimates or (whole := self._count(delta)) is None:
            kept = delta[: max(0, self.max_tokens * MAX_CHARS_PER_TOKEN - self.chars)]
            self._keep(kept, added)  # past the byte bound for good: every later event comes here
            return kept, len(kept) == len(delta)
        if whole <= self.max_tokens:
            self._keep(delta, 0)
            self.counted, self.unchecked_bytes = whole, 0
            return delta, True
        # Over: keep the longest prefix that fits (a binary search, a few counts of a rare case).
        fits, over, fits_count = 0, len(delta), self.counted
        while over - fits > 1:
            middle = (fits + over) // 2
            count = self._count(delta[:middle])
            if count is not None and count <= self.max_tokens:
                fits, fits_count = middle, count
            else:
                over = middle
        self._keep(delta[:fits], 0)
        self.counted, self.unchecked_bytes = fits_count, 0
        return delta[:fits], False

    def _keep(self, text: str, unchecked_bytes: int) -> None:
        if text:
            self.parts.append(text)
            self.chars += len(text)
            self.events += 1
            self.unchecked_bytes += unchecked_bytes

    def _count(self, delta: str) -> int | None:
        # Made valid for the tokenizer's sake only: the turn runner makes the kept text valid itself.
        # Generated text, not a prompt: no BOS.
        return self.backend.exact_count(valid_text("".join(self.parts) + delta), special=False)


class _StopMatcher:
    """Ends a stage's text at the first stop string, for servers that leave the stops to us or send
    special tokens as text; holds back a tail that may be the start of one."""

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(stop for stop in stops if stop)
        self.held = ""
        # A held tail starts with a stop's first character, within a stop's length of the end: most
        # tokens have none there, and skip the prefix comparisons (7.3 µs a token, a fifth of the
        # client's time per token; 1.0 µs with this check).
        self._starts = "".join(sorted({stop[0] for stop in self.stops}))
        self._tail = max((len(stop) for stop in self.stops), default=1) - 1

    def feed(self, delta: str) -> tuple[str, bool]:
        """What can be shown now, and whether a stop string ended the text."""
        if not delta:
            return "", False
        text, self.held = self.held + delta, ""
        hits = [at for stop in self.stops if (at := text.find(stop)) >= 0]
        if hits:
            return text[: min(hits)], True
        tail = text[-self._tail :] if self._tail else ""
        if not any(start in tail for start in self._starts):
            return text, False
        partial = max(
            (n for stop in self.stops for n in range(1, len(stop)) if text.endswith(stop[:n])), default=0
        )
        self.held = text[len(text) - partial :]
        return text[: len(text) - partial], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


def _read_capped(response: httpx.Response, limit: int) -> httpx.Response:
    """``response`` (not yet read) with at most ``limit`` bytes of its body read: it is quoted, not
    processed, and a server must not make us buffer an endless error page."""
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) >= limit:
            break
    response.close()
    kind = response.headers.get("content-type", "")
    return httpx.Response(
        response.status_code,
        headers={"content-type": kind},
        content=bytes(body[:limit]),
        request=response.request,
    )


def _choice(payload: Any) -> dict[str, Any]:
    """The first choice of a completions event (the final usage event has none)."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def _shutdown(response: httpx.Response) -> None:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the server


def _server_message(response: httpx.Response) -> str:
    """The server's own words: vLLM's ``{"error": {"message"}}`` (or its older flat form), FastAPI's
    ``{"detail"}``, else the body's first line."""
    try:
        data = response.json()
    except ValueError:
        data = None
    return _error_text(data) or _one_line(response.text) or response.reason_phrase or "no details"


def _error_text(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    error = data.get("error", data)
    if isinstance(error, str):
        return _one_line(error)
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail")
        if message:
            return _one_line(message if isinstance(message, str) else json.dumps(message))
    return None


def _reason(error: BaseException) -> str:
    return _one_line(str(error)) or type(error).__name__


def _one_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= _MESSAGE_CHARS else line[: _MESSAGE_CHARS - 1] + "…"
