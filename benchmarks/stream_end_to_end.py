"""End to end: a loopback OpenAI-compatible server streams as fast as it can; the app runs in a real
terminal (a pseudo-terminal, the real Linux driver). How long after the server's first byte is the
whole turn on screen, and how long do keys typed meanwhile take to show?

- The server answers ``/v1/models`` and streams ``/v1/completions`` as server-sent events, one token
  an event (a word with its leading space, a run of newlines), with no delay: the stage-1 prompt
  gets a Markdown reasoning (paragraphs, lists, code, about ``--tokens`` tokens) that ends with a
  marker, the stage-2 prompt an answer that ends with another.
- The app is ``reasonchat chat --backend openai`` in a pty (120×36 by default). The question is
  typed a second after the status bar shows the model ready, as a user asks at a ready app (a
  startup's own work is measured by ``tui_first_frame.py``). The figure is the time from the
  server writing the reasoning's first byte to both markers having reached the terminal: tokens
  (both stages) / that time.
- While it streams, a key is typed into the composer every ``--key-every`` seconds (each a letter
  of its own, none in the model text); its latency is the time until the terminal shows it. Keys
  within 0.3 s of a stage's end count as "at a stage's end" too.
- ``--rate TOK_S`` paces the server at that many tokens a second instead (a GPU engine's speed: a
  0.5B bf16 model on one H200 is bound at about 4,900), flushing whenever it is due.
- ``--compare REV`` runs the same scenario with the app of an older commit (a ``git worktree`` of
  it, run from its ``src``) in the same rounds, for figures side by side.

    python benchmarks/stream_end_to_end.py [--tokens 3000,10000] [--rounds 3] [--rate 5000] [--compare 557b54b]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pty import PtyRun  # noqa: E402
from tui_stream import markdown_text  # noqa: E402

REASONING_END = "ZZQREASONEND"
ANSWER_END = "ZZQANSWEREND"
# Letters typed while streaming: none of them occurs in the model's text.
# (U+03A2 is unassigned: skipped.)
KEY_LETTERS = [
    chr(c) for c in [*range(0x3B1, 0x3CA), *range(0x430, 0x450), *range(0x391, 0x3AA), *range(0x410, 0x430)] if c != 0x3A2
]
SIZE = (120, 36)
READY = "●"  # the status bar's mark of a loaded model
SETTLE_S = 1.0


def tokens_of(text: str) -> list[str]:
    """One piece per token, roughly as a BPE splits English: a word with its leading space."""
    return re.findall(r" ?[^\s]+|\n+| +", text)


def reasoning_tokens(count: int) -> list[str]:
    pieces: list[str] = []
    words = count
    while len(pieces) < count:
        pieces = tokens_of(markdown_text(words))
        words = int(words * count / max(len(pieces), 1)) + 1
    return pieces[:count] + ["\n\n", f"Checked. {REASONING_END}"]


def answer_tokens() -> list[str]:
    return tokens_of("The result holds: every column checks out, so the sum is **2419**. ") * 10 + [f" {ANSWER_END}"]


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, reasoning: list[str], answer: list[str], rate: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.pieces = {"reasoning": reasoning, "answer": answer}
        self.rate = rate  # tokens a second; 0: as fast as it can
        self.first_byte: dict[str, float] = {}
        self.models_listed = threading.Event()


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self.server.models_listed.set()
            self._json(200, {"object": "list", "data": [{"id": "bench", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.rstrip("/").endswith("/completions"):
            self._json(404, {"error": {"message": "not found"}})
            return
        stage = "answer" if str(body.get("prompt", "")).endswith("assistant\n") else "reasoning"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(payload: dict[str, Any] | str) -> bytes:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            line = f"data: {data}\n\n".encode()
            return f"{len(line):x}\r\n".encode() + line + b"\r\n"

        pieces, rate = self.server.pieces[stage], self.server.rate
        out = bytearray()
        began = time.perf_counter()

        def flush() -> None:
            if stage not in self.server.first_byte:
                self.server.first_byte[stage] = time.time()
            self.wfile.write(out)
            out.clear()

        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            choice = {"index": 0, "text": piece, "finish_reason": "stop" if last else None}
            out += event({"id": "b", "object": "text_completion", "model": "bench", "choices": [choice]})
            # Flushed in small batches, as a fast server's socket does, not one write per token.
            if len(out) > 4096 or last:
                flush()
            if rate and not last and (ahead := (index + 1) / rate - (time.perf_counter() - began)) > 0.004:
                if out:  # what is due goes out before the wait
                    flush()
                time.sleep(ahead)
        self.wfile.write(event("[DONE]") + b"0\r\n\r\n")
        self.wfile.flush()


class Terminal(PtyRun):
    """PtyRun with a reader thread, so the app never blocks on a full terminal, and every chunk of
    output timestamped as it arrives."""

    def __init__(self, argv: list[str], env: dict[str, str], size: tuple[int, int]) -> None:
        super().__init__(argv, env, size)
        self.chunks: list[tuple[float, int, bytes]] = []  # (time, offset, data)
        self._lock = threading.Lock()
        self._alive = True
        self._reader = threading.Thread(target=self._read_all, daemon=True)
        self._reader.start()

    def _read_all(self) -> None:
        while self._alive:
            before = len(self.seen)
            if not super().read(0.02):
                return
            if len(self.seen) > before:
                with self._lock:
                    self.chunks.append((time.time(), before, self.seen[before:]))

    def read(self, timeout: float = 0.05) -> bool:  # the reader thread does the reading
        time.sleep(timeout)
        return self.proc.poll() is None

    def first_after(self, marker: bytes, offset: int = 0, timeout: float = 120.0) -> float:
        deadline = time.time() + timeout
        while time.time() < deadline:
            index = self.seen.find(marker, offset)
            if index >= 0:
                with self._lock:
                    return next(t for t, start, data in self.chunks if start + len(data) >= index + len(marker))
            time.sleep(0.005)
        tail = self.seen[-300:].decode("utf-8", "replace")
        raise TimeoutError(f"{marker!r} never appeared; last output: {tail!r}")

    def close(self, quit_keys: bytes = b"\x11") -> None:
        self._alive = False
        self._reader.join(1)
        super().close(quit_keys)


def run_once(python_path: str, tokens: int, key_every: float, rate: float = 0.0) -> dict[str, Any]:
    reasoning, answer = reasoning_tokens(tokens), answer_tokens()
    server = Server(reasoning, answer, rate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            argv = [
                sys.executable, "-m", "reasonchat", "--data-dir", data_dir, "chat",
                "--backend", "openai", "--base-url", f"http://127.0.0.1:{server.server_port}/v1",
                "--max-new-tokens", "30000", "--context-limit", "1000000",
            ]  # fmt: skip
            env = {**os.environ, "PYTHONPATH": python_path, "REASONCHAT_DATA_DIR": data_dir}
            term = Terminal(argv, env, SIZE)
            try:
                term.first_after(b"Ask anything", timeout=60)
                if not server.models_listed.wait(60):
                    raise TimeoutError("the app never listed the server's models")
                # Asked as a user asks: a moment after the model shows as ready (what the app does
                # after its first frame is not part of a stream's figures).
                term.first_after(READY.encode(), timeout=60)
                time.sleep(SETTLE_S)
                start_offset = len(term.seen)
                term.write(b"go\r")
                keys: list[tuple[float, int, str]] = []
                deadline = time.time() + 120
                answer_seen = None
                letters = iter(KEY_LETTERS)
                while answer_seen is None and time.time() < deadline:
                    if "reasoning" in server.first_byte:
                        letter = next(letters, None)
                        if letter is not None:
                            keys.append((time.time(), len(term.seen), letter))
                            term.write(letter.encode())
                    time.sleep(key_every)
                    if term.seen.find(ANSWER_END.encode(), start_offset) >= 0:
                        answer_seen = True
                # A few keys after the end too: the stage's end is when a full render used to stall.
                for _ in range(5):
                    letter = next(letters, None)
                    if letter is not None:
                        keys.append((time.time(), len(term.seen), letter))
                        term.write(letter.encode())
                    time.sleep(key_every)
                t0 = server.first_byte["reasoning"]
                answer_end = term.first_after(ANSWER_END.encode(), start_offset)
                try:
                    reasoning_end: float | None = term.first_after(REASONING_END.encode(), start_offset, timeout=2)
                except TimeoutError:  # the pane did not end scrolled to its last line
                    reasoning_end = None
                latencies = [term.first_after(letter.encode(), offset, timeout=10) - sent for sent, offset, letter in keys]
            finally:
                term.close()
    finally:
        server.shutdown()
        server.server_close()
    total_tokens = len(reasoning) + len(answer)
    elapsed = max(reasoning_end or 0.0, answer_end) - t0
    stage_ends = [end for end in (reasoning_end, answer_end) if end is not None]
    at_end = [lat for (sent, _, _), lat in zip(keys, latencies) if any(abs(sent - end) < 0.3 for end in stage_ends)]
    return {
        "tokens": total_tokens,
        "seconds": round(elapsed, 3),
        "tokens_per_s": round(total_tokens / elapsed),
        # None: the reasoning's last line was never on screen (the pane did not follow the bottom).
        "reasoning_on_screen_s": round(reasoning_end - t0, 3) if reasoning_end is not None else None,
        "keys": len(latencies),
        "key_median_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "key_max_ms": round(1000 * max(latencies), 1) if latencies else None,
        "key_max_at_stage_end_ms": round(1000 * max(at_end), 1) if at_end else None,
    }


def worktree(rev: str) -> Path:
    target = Path(tempfile.gettempdir()) / f"reasonchat-{rev}"
    if not target.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(target), rev], check=True, capture_output=True)
    return target / "src"


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float | None:
        values = [r[key] for r in runs if r[key] is not None]
        return round(statistics.median(values), 3) if values else None

    return {
        "rounds": len(runs),
        "tokens": runs[0]["tokens"],
        "median_seconds": med("seconds"),
        "median_tokens_per_s": med("tokens_per_s"),
        "worst_tokens_per_s": min(r["tokens_per_s"] for r in runs),
        "key_max_ms": max(r["key_max_ms"] or 0 for r in runs),
        "key_max_at_stage_end_ms": max(r["key_max_at_stage_end_ms"] or 0 for r in runs),
        "key_median_ms": med("key_median_ms"),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", default="3000,10000", help="reasoning lengths (tokens), comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--key-every", type=float, default=0.05, help="seconds between typed keys")
    parser.add_argument("--rate", type=float, default=0.0, metavar="TOK_S", help="pace the server (default: no pacing)")
    parser.add_argument("--compare", metavar="REV", help="also run the app of this commit, same rounds")
    args = parser.parse_args()
    apps = {"this": str(Path(__file__).resolve().parents[1] / "src")}
    if args.compare:
        apps[args.compare] = str(worktree(args.compare))
    results: dict[str, dict[str, Any]] = {}
    for tokens in [int(t) for t in args.tokens.split(",")]:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, path in apps.items():  # side by side: the apps alternate within each round
                runs[name].append(run_once(path, tokens, args.key_every, args.rate))
        for name in apps:
            results[f"{name}/{tokens}"] = summary(runs[name])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
