"""A loopback stand-in for vLLM's OpenAI-compatible server, backed by a real tiny model.

It serves ``GET /v1/models``, ``POST /v1/completions`` (streamed as server-sent events in an HTTP/1.1
chunked body, as uvicorn sends them) and, optionally, vLLM's ``POST /tokenize``. Generation is greedy on
the prompt text exactly as received; it stops on the model's eos ids and the request's
``stop_token_ids``, and matches ``stop`` strings against text decoded without special tokens, as vLLM
does. Every request and every generated text is recorded for the tests, and ``Faults`` scripts the
failures: an error status, a connection dropped (or reset) before the headers or mid-stream, a stream
that stalls or ends without ``[DONE]``, an error event, a server that never answers, one that ignores
``max_tokens`` or streams forever, one that rejects vLLM's extensions as ``transformers serve`` does,
and any body at all (garbage, huge or hostile events).

``CannedModel`` stands in for the model where only the wire matters: it "generates" given deltas.

Listens on 127.0.0.1 only, on an ephemeral port.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SERVED_NAME = "reasonchat-test"


@dataclass
class Faults:
    status: int | None = None  # answer completions with this status and a vLLM-style error body
    message: str = "scripted failure"
    drop_before_headers: int = 0  # close this many completion connections without a response
    drop_after: int | None = None  # close the connection after this many text events
    stall_after: int | None = None  # go silent (connection open) after this many text events
    end_without_done_after: int | None = None  # end the body cleanly, no finish reason, no [DONE]
    error_event_after: int | None = None  # send vLLM's in-stream error event after this many
    hang: bool = False  # read the request and never answer
    usage: bool = True  # honour stream_options.include_usage
    reset_before_headers: bool = False  # reset (RST) every completion connection without a response
    reset_after: int | None = None  # reset the connection after this many text events
    ignore_max_tokens: bool = False  # generate until the model stops, whatever max_tokens says
    endless: str | None = None  # after the model's text, send this delta forever (no stop, no limit)
    body: Iterable[bytes] | None = None  # send these chunks as the event stream instead (may be endless)
    # Answer 422 like `transformers serve` when the request has any of these fields.
    reject_fields: tuple[str, ...] = ()


@dataclass
class Completion:
    """What one completions request brought and what the model generated for it."""

    body: dict[str, Any]
    prompt_ids: list[int] = field(default_factory=list)
    text: str = ""
    text_events: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # reported in the usage event
    finish_reason: str | None = None


class TinyModel:
    """A checkpoint directory loaded once, generating greedily token by token."""

    def __init__(self, directory: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {eos} if isinstance(eos, int) else set(eos or [])

    def encode(self, text: str, special: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def generate(
        self, record: Completion, max_tokens: int, stop_ids: set[int], stop: list[str]
    ) -> Iterator[str]:
        """Text deltas; fills ``record`` (tokens, finish reason) as it goes."""
        from transformers import DynamicCache

        torch = self.torch
        with torch.no_grad():
            cache = DynamicCache(config=self.model.config)
            logits = self.model(input_ids=torch.tensor([record.prompt_ids]), cache=cache).logits
            generated: list[int] = []
            emitted = ""
            while record.completion_tokens < max_tokens:
                token = int(logits[0, -1].argmax())
                record.completion_tokens += 1
                if token in stop_ids or token in self.eos_ids:
                    record.finish_reason = "stop"
                    return
                generated.append(token)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                hit = min((text.find(s) for s in stop if s in text), default=-1)
                if hit >= 0:
                    text, record.finish_reason = text[:hit], "stop"
                if not text.endswith("\ufffd") and len(text) > len(emitted):
                    delta, emitted = text[len(emitted) :], text
                    yield delta
                if record.finish_reason:
                    return
                logits = self.model(input_ids=torch.tensor([[token]]), cache=cache).logits
            record.finish_reason = "length"


class CannedModel:
    """A "model" that streams given deltas, one token each, for tests of the wire rather than the
    model. Its tokenizer counts characters, with each ChatML special as one token."""

    SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|reasoning|>")

    def __init__(self, deltas: Iterable[str]) -> None:
        self.deltas = list(deltas)
        self.eos_ids = {0, 2}

    def encode(self, text: str, special: bool = True) -> list[int]:
        ids: list[int] = []
        while text:
            known = next((s for s in self.SPECIALS if text.startswith(s)), None)
            token = known or text[0]
            ids.append(self.SPECIALS.index(known) if known else 100 + ord(token))
            text = text[len(token) :]
        return ids

    def generate(
        self, record: Completion, max_tokens: int, stop_ids: set[int], stop: list[str]
    ) -> Iterator[str]:
        for delta in self.deltas:
            if record.completion_tokens >= max_tokens:
                record.finish_reason = "length"
                return
            record.completion_tokens += 1
            yield delta
        record.finish_reason = "stop"


class FakeVLLM:
    def __init__(self, model: TinyModel | CannedModel, *, api_key: str | None = None) -> None:
        self.model = model
        self.api_key = api_key
        self.tokenize = True  # serve /tokenize
        self.served_name = SERVED_NAME
        self.faults = Faults()
        self.completions: list[Completion] = []
        self.connections: set[socket.socket] = set()
        self.disconnected = threading.Event()
        self.closing = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeVLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut the kept-alive connections: the server is gone, as after a crash."""
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for connection in list(self.connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def reset(self) -> None:
        self.faults = Faults()
        self.served_name = SERVED_NAME
        self.tokenize = True
        self.completions.clear()
        self.disconnected.clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    @property
    def fake(self) -> FakeVLLM:
        return self.server.fake

    def setup(self) -> None:
        super().setup()
        self.fake.connections.add(self.connection)

    def finish(self) -> None:
        self.fake.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path != "/v1/models":
            return self._json(404, {"detail": "Not Found"})
        if self._authorized():
            self._json(200, {"object": "list", "data": [{"id": self.fake.served_name, "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/tokenize" and self.fake.tokenize:
            tokens = self.fake.model.encode(body["prompt"], body.get("add_special_tokens", True))
            return self._json(200, {"count": len(tokens), "max_model_len": 4096, "tokens": tokens})
        if self.path != "/v1/completions":
            return self._json(404, {"detail": "Not Found"})
        if self._authorized():
            self._complete(body)

    def _authorized(self) -> bool:
        key = self.fake.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._json(401, {"error": "Unauthorized"})
        return False

    def _complete(self, body: dict[str, Any]) -> None:
        fake, faults = self.fake, self.fake.faults
        record = Completion(body=body)
        fake.completions.append(record)
        if faults.hang:
            return self._wait_for_disconnect()
        if faults.drop_before_headers >= len(fake.completions):
            self.close_connection = True
            return
        if faults.reset_before_headers:
            return self._reset()
        if faults.status is not None:
            return self._error(faults.status, faults.message)
        if rejected := {name for name in faults.reject_fields if name in body}:
            return self._json(422, {"detail": f"Unexpected fields in the request: {rejected}"})
        if body.get("model") != fake.served_name:
            return self._error(404, f"The model `{body.get('model')}` does not exist.")
        record.prompt_ids = fake.model.encode(body["prompt"])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if faults.body is not None:
                for data in faults.body:
                    self._chunk(data)
                return self._chunk(b"")
            self._stream(record, body)
        except (BrokenPipeError, ConnectionResetError):
            fake.disconnected.set()

    def _stream(self, record: Completion, body: dict[str, Any]) -> None:
        faults = self.fake.faults
        max_tokens = 1 << 62 if faults.ignore_max_tokens else body["max_tokens"]
        deltas = self.fake.model.generate(
            record, max_tokens, set(body.get("stop_token_ids", [])), body.get("stop", [])
        )
        if faults.endless is not None:
            deltas = _then_forever(deltas, faults.endless)
        for delta in deltas:
            record.text += delta
            record.text_events += 1
            self._event(_chunk_payload(delta, None))
            n = record.text_events
            if n == faults.drop_after:
                self.close_connection = True  # no terminating chunk: the body is cut off
                return
            if faults.endless is not None and self._client_gone():
                # As uvicorn does: a client's FIN is a disconnect (writes alone may not fail soon).
                self.fake.disconnected.set()
                return
            if n == faults.reset_after:
                # Linux drops what the client has received but not yet read when the RST lands: give
                # it time to read the events, so the partial text the test expects is the one sent.
                time.sleep(0.3)
                return self._reset()
            if n == faults.stall_after:
                return self._wait_for_disconnect()
            if n == faults.end_without_done_after:
                return self._chunk(b"")
            if n == faults.error_event_after:
                error = {"message": faults.message, "type": "InternalServerError", "code": 500}
                self._event({"error": error})
                return self._chunk(b"")
        self._event(_chunk_payload("", record.finish_reason))
        if faults.usage and body.get("stream_options", {}).get("include_usage"):
            prompt = len(record.prompt_ids)
            record.cached_tokens = self._cached(record)
            usage = {"prompt_tokens": prompt, "completion_tokens": record.completion_tokens,
                     "total_tokens": prompt + record.completion_tokens,
                     "prompt_tokens_details": {"cached_tokens": record.cached_tokens}}  # fmt: skip
            self._event({"object": "text_completion", "choices": [], "usage": usage})
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _cached(self, record: Completion) -> int:
        """What a prefix cache would hold: the prompt's common prefix with the previous request's."""
        index = self.fake.completions.index(record)
        if index == 0:
            return 0
        cached = 0
        for ours, theirs in zip(record.prompt_ids, self.fake.completions[index - 1].prompt_ids):
            if ours != theirs:
                break
            cached += 1
        return cached

    def _event(self, payload: dict[str, Any]) -> None:
        self._chunk(f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode())

    def _chunk(self, data: bytes) -> None:
        """One chunk of the chunked body; an empty one ends the body."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "Error", "param": None, "code": status}})

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        """Close with an RST (SO_LINGER 0), as a crashed server or a middlebox does."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _wait_for_disconnect(self) -> None:
        """Stay silent until the client goes away (recorded) or the server stops."""
        self.close_connection = True
        while not self.fake.closing.is_set():
            if self._client_gone(0.02):
                self.fake.disconnected.set()
                return

    def _client_gone(self, wait_s: float = 0.0) -> bool:
        """Whether the client closed its side (a FIN or a reset), waiting up to ``wait_s`` to know."""
        readable, _, _ = select.select([self.connection], [], [], wait_s)
        try:
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except ConnectionResetError:
            return True


def _then_forever(deltas: Iterator[str], delta: str) -> Iterator[str]:
    yield from deltas
    while True:
        yield delta


def _chunk_payload(text: str, finish_reason: str | None) -> dict[str, Any]:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return {"id": "cmpl-test", "object": "text_completion", "model": SERVED_NAME, "choices": [choice]}
