"""How fast the chat panes absorb a stream, and how quickly keys are handled while they do.

Runs the real app headless (Textual's test driver, 120x32) with a scripted backend, no model:

- absorption: the backend emits a long Markdown text as fast as it can; the figure is tokens divided by
  the time from the first token to the last one being on screen (the stage's final full render done).
  Two texts: ordinary Markdown (paragraphs, lists, code) and one paragraph without a line break, the
  worst case for ``Markdown.append`` (it re-parses the open block).
- paced: the backend emits at a fixed rate; reported are the lag behind the producer when it stops
  (how long the screen takes to catch up) and the latency of key presses typed into the composer
  meanwhile (from posting the key to the composer holding it).

    python benchmarks/tui_stream.py [--tokens 20000] [--rates 50,200,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from textual import events

from reasonchat.engine.protocol import GenerationSettings, StageRequest
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.tui.app import ReasonchatApp
from reasonchat.tui.options import AppOptions
from reasonchat.tui.screens.chat import ChatScreen

SIZE = (120, 32)


def markdown_text(words: int) -> str:
    blocks = [
        "Let me work through this step by step, checking each part as I go. ",
        "- first, the **premise** holds because the sum is even\n",
        "- second, `x + y` stays below the bound we derived\n\n",
        "```python\nfor i in range(10):\n    total += i\n```\n\n",
        "So the *intermediate* result is consistent; now the next column. ",
    ]
    out: list[str] = []
    count = 0
    while count < words:
        for block in blocks:
            out.append(block)
            count += len(block.split())
        out.append("\n\n")
    return "".join(out)


def paragraph_text(words: int) -> str:
    return " ".join(f"word{i}" for i in range(words))


def stage_script(text: str):
    def script(request: StageRequest) -> str:
        return text if request.stage == "reasoning" else "Done."

    return script


def make_app(backend: ScriptedBackend) -> ReasonchatApp:
    # Limits out of the way: the whole text must stream.
    return ReasonchatApp(
        AppOptions(
            load_backend=lambda progress: backend,
            model_label="bench",
            settings=GenerationSettings(max_new_tokens=10**7),
            context_limit=10**8,
        )
    )


async def until(condition, timeout: float = 600.0, step: float = 0.001) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("benchmark step timed out")
        await asyncio.sleep(step)


def chat_screen(app: ReasonchatApp) -> ChatScreen:
    screen = app.screen
    assert isinstance(screen, ChatScreen)
    return screen


async def absorption(text: str) -> dict[str, Any]:
    backend = ScriptedBackend(stage_script(text))
    tokens = backend.count_tokens(text)
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = chat_screen(app)
        await until(lambda: screen.session is not None)
        started = time.perf_counter()
        await screen.send("go")
        await until(lambda: not screen.busy)  # both stages streamed and rendered in full
        elapsed = time.perf_counter() - started
        assert screen.turn_view.pane("reasoning").text == text
    return {"tokens": tokens, "seconds": round(elapsed, 2), "tokens_per_s": round(tokens / elapsed)}


async def paced(rate: float, tokens: int, keys: int = 40) -> dict[str, Any]:
    text = markdown_text(tokens)
    backend = ScriptedBackend(stage_script(text), delay_s=1.0 / rate)
    app = make_app(backend)
    latencies: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        screen = chat_screen(app)
        await until(lambda: screen.session is not None)
        await screen.send("go")
        pane = screen.turn_view.pane("reasoning")
        composer = screen.composer
        await until(lambda: pane.text)
        expected = ""
        for i in range(keys):
            if not screen.busy:
                break
            char = "abcdefghij"[i % 10]
            expected += char
            posted = time.perf_counter()
            app.post_message(events.Key(char, char))
            await until(lambda: composer.text == expected)
            latencies.append(time.perf_counter() - posted)
            await asyncio.sleep(0.05)
        # The producer stops when the last token is yielded; the screen then has to catch up.
        await until(lambda: backend.requests and backend.requests[-1].stage == "answer")
        produced = time.perf_counter()
        await until(lambda: not screen.busy)
        lag = time.perf_counter() - produced
    ms = sorted(1000 * x for x in latencies)
    return {
        "rate_tokens_per_s": rate,
        "keys": len(ms),
        "key_latency_ms_median": round(statistics.median(ms), 1) if ms else None,
        "key_latency_ms_p95": round(ms[int(0.95 * (len(ms) - 1))], 1) if ms else None,
        "key_latency_ms_max": round(ms[-1], 1) if ms else None,
        "catch_up_s": round(lag, 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "absorption": {
            "markdown": await absorption(markdown_text(args.tokens)),
            "one_paragraph": await absorption(paragraph_text(args.paragraph_tokens)),
        },
        "paced": [await paced(rate, args.paced_tokens) for rate in args.rates],
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=20000, help="tokens of Markdown for absorption")
    parser.add_argument("--paragraph-tokens", type=int, default=5000, help="tokens of the one-paragraph text")
    parser.add_argument("--paced-tokens", type=int, default=3000, help="tokens per paced run")
    parser.add_argument(
        "--rates", type=lambda s: [float(x) for x in s.split(",")], default=[50.0, 200.0, 1000.0]
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
