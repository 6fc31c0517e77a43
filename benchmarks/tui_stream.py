"""How fast the chat panes absorb a stream, and how quickly keys are handled while they do.

Runs the real app headless (Textual's test driver, 120x32) with a scripted backend, no model:

- absorption: the backend emits a long Markdown text as fast as it can; the figure is tokens divided by
  the time from the first token to the last one being on screen (the stage's final full render done).
  Texts: ordinary Markdown (paragraphs, lists, code) of each ``--tokens`` length, where the cost is
  mounting a widget per block; and one paragraph without a line break, a single block that
  ``Markdown.append`` re-parses whole at every append.
- paced: the backend emits at a fixed rate; reported are the latency of key presses typed into the
  composer (from posting the key to the composer holding it) while the stage streams and while its
  final full render runs, and how long the screen takes, once the producer has finished, to show
  everything (mostly that final render: Textual rebuilds every block).

    python benchmarks/tui_stream.py [--tokens 3000,10000] [--rates 50,200,1000]
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


def latency_summary(seconds: list[float]) -> dict[str, Any]:
    ms = sorted(1000 * x for x in seconds)
    if not ms:
        return {"keys": 0}
    return {
        "keys": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 1),
        "max_ms": round(ms[-1], 1),
    }


async def paced(rate: float, tokens: int) -> dict[str, Any]:
    text = markdown_text(tokens)
    backend = ScriptedBackend(stage_script(text), delay_s=1.0 / rate)
    app = make_app(backend)
    latencies: dict[str, list[float]] = {"streaming": [], "final_render": []}
    async with app.run_test(size=SIZE):
        screen = chat_screen(app)
        await until(lambda: screen.session is not None)
        await screen.send("go")
        composer = screen.composer
        await until(lambda: screen.turn_view.pane("reasoning").text)
        produced: float | None = None
        typed = 0
        while screen.busy:
            # The reasoning producer is done once the answer stage has been requested.
            if produced is None and backend.requests[-1].stage == "answer":
                produced = time.perf_counter()
            char = "abcdefghij"[typed % 10]
            typed += 1
            posted = time.perf_counter()
            app.post_message(events.Key(char, char))
            await until(lambda: len(composer.text) == typed)
            latencies["streaming" if produced is None else "final_render"].append(time.perf_counter() - posted)
            await asyncio.sleep(0.05 if produced is None else 0.01)
        catch_up = time.perf_counter() - (produced or time.perf_counter())
    return {
        "rate_tokens_per_s": rate,
        "tokens": backend.count_tokens(text),
        "key_latency_streaming": latency_summary(latencies["streaming"]),
        "key_latency_final_render": latency_summary(latencies["final_render"]),
        "catch_up_after_producer_s": round(catch_up, 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    absorbed = {f"markdown_{n}": await absorption(markdown_text(n)) for n in args.tokens}
    absorbed["one_paragraph"] = await absorption(paragraph_text(args.paragraph_tokens))
    return {"absorption": absorbed, "paced": [await paced(rate, args.paced_tokens) for rate in args.rates]}


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tokens", type=int_list, default=[3000, 10000], help="Markdown lengths for absorption (tokens)"
    )
    parser.add_argument("--paragraph-tokens", type=int, default=5000, help="tokens of the one-paragraph text")
    parser.add_argument("--paced-tokens", type=int, default=3000, help="tokens per paced run")
    parser.add_argument("--rates", type=int_list, default=[50, 200, 1000], help="paced rates (tokens/s)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
