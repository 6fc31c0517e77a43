"""SVG snapshots of the history screen (with a search typed) and of a replay paused mid-turn.

Everything on screen is fixed: ids and dates are set, times are shown in UTC, the cursor does not
blink, and the replay runs on a fake clock that only moves when the test moves it.

After an intended change of the look: ``pytest tests/tui/test_history_snapshots.py --snapshot-update``,
then review the SVGs in ``__snapshots__``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import pytest
from textual.pilot import Pilot

from reasonchat.conversation import Conversation, StageStats, Turn
from reasonchat.replay import ReplayClock, timeline
from reasonchat.store import Store
from reasonchat.tui.replay_app import ReplayApp
from reasonchat.tui.screens import replay as replay_module
from reasonchat.tui.screens.history import HistoryScreen
from reasonchat.tui.screens.replay import ReplayScreen
from reasonchat.tui.widgets.status_bar import ModelStatus
from reasonchat.tui.widgets.thinking import ThinkingIndicator
from tests.tui.helpers import SMALL, WIDE, chat, make_app, wait_for, wait_ready


@pytest.fixture(autouse=True)
def frozen_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ThinkingIndicator, "clock", staticmethod(lambda: 0.0))
    monkeypatch.setattr(ModelStatus, "clock", staticmethod(lambda: 0.0))


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Dates are shown in local time: make local time UTC, whatever the machine's zone."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def stats(prompt: int, new: int, chunks: list[tuple[float, int]] | None = None) -> StageStats:
    return StageStats(prompt_tokens=prompt, new_tokens=new, stop_reason="eos", chunks=chunks or [])


def saved_conversations(store: Store) -> None:
    rows = [
        ("c0ffee000001", "Why is the sky blue?", "2025-03-04T18:42:00.000+00:00", "qwen2.5-0.5b-reasoning", 2, 1834),
        ("c0ffee000002", "Scatter plots in matplotlib", "2025-03-03T09:15:00.000+00:00", "qwen2.5-0.5b-reasoning", 4, 2410),
        ("c0ffee000003", "Sourdough starter schedule", "2025-02-27T07:05:00.000+00:00", "demo", 1, 0),
        ("c0ffee000004", "Rust lifetimes, explained", "2025-02-20T21:30:00.000+00:00", "http://localhost:8000", 3, 977),
    ]  # fmt: skip
    texts = {
        "c0ffee000001": ("Why is the sky blue?", "Air molecules scatter short wavelengths far more than long ones.",
                         "Because air scatters **blue** light more than red."),
        "c0ffee000002": ("How do I color a scatter plot by category?", "Map each category to a colour, pass c=.",
                         "Use `plt.scatter(x, y, c=codes)` with a colormap."),
        "c0ffee000003": ("When do I feed my starter?", "Twice a day at room temperature.", "Every 12 hours."),
        "c0ffee000004": ("What is a lifetime?", "A region of code where a reference is valid.", "A scope bound."),
    }  # fmt: skip
    for conv_id, title, updated, model, turns, tokens in rows:
        user, reasoning, answer = texts[conv_id]
        conv = Conversation(id=conv_id, title=title, created=updated, updated=updated, model=model)
        for index in range(turns):
            last = index == turns - 1
            answer_stats = stats(tokens - 40, 40) if last and tokens else None
            conv.turns.append(Turn(user if index == 0 else f"{user} ({index + 1})", reasoning, answer,
                                   None, answer_stats, updated))  # fmt: skip
        store.save(conv)


def test_history_with_a_search(snap_compare, store: Store) -> None:
    saved_conversations(store)

    async def run_before(pilot: Pilot) -> None:
        await wait_ready(pilot)
        chat(pilot.app).composer.cursor_blink = False
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HistoryScreen))
        screen = pilot.app.screen
        screen.search_input.cursor_blink = False
        await wait_for(pilot, lambda: screen.loaded_query == "")
        await pilot.press(*"scatter")
        await wait_for(pilot, lambda: screen.loaded_query == "scatter")
        await pilot.press("down")
        await wait_for(pilot, lambda: screen.selected_id == "c0ffee000002")
        await pilot.pause()

    assert snap_compare(make_app(store=store), terminal_size=WIDE, run_before=run_before)


def test_history_at_80x24(snap_compare, store: Store) -> None:
    saved_conversations(store)

    async def run_before(pilot: Pilot) -> None:
        await wait_ready(pilot)
        chat(pilot.app).composer.cursor_blink = False
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HistoryScreen))
        screen = pilot.app.screen
        screen.search_input.cursor_blink = False
        await wait_for(pilot, lambda: screen.loaded_query == "" and screen.table.row_count == 4)
        await pilot.pause()

    assert snap_compare(make_app(store=store), terminal_size=SMALL, run_before=run_before)


# --- a replay, paused at a known point ---------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def timed(words: list[str]) -> tuple[str, StageStats]:
    text, chunks = "", []
    for index, word in enumerate(words):
        text += word
        chunks.append((round(0.1 * (index + 1), 3), len(text)))
    return text, stats(60, len(words), chunks)


def words(text: str) -> list[str]:
    """Each word with the spaces after it: the chunks a model streams."""
    return re.findall(r"\S+\s*", text)


def replayed_conversation() -> Conversation:
    first_reasoning, first_reasoning_stats = timed(
        words("Sunlight holds every colour. Air molecules scatter short wavelengths more (Rayleigh).")
    )
    first_answer, first_answer_stats = timed(words("Because air scatters **blue** light more than red."))
    second_reasoning, second_reasoning_stats = timed(
        words(
            "At sunset the light crosses far more air, so most of the blue is scattered away before it "
            "reaches us; what is left is orange and red, and dust or smoke makes it deeper."
        )
    )
    second_answer, second_answer_stats = timed(words("The longer path through air removes the blue."))
    return Conversation(
        id="c0ffee000001",
        title="Why is the sky blue?",
        created="2025-03-04T18:40:00.000+00:00",
        updated="2025-03-04T18:42:00.000+00:00",
        turns=[
            Turn(
                "Why is the sky blue?",
                first_reasoning,
                first_answer,
                first_reasoning_stats,
                first_answer_stats,
            ),
            Turn(
                "And why are sunsets red?",
                second_reasoning,
                second_answer,
                second_reasoning_stats,
                second_answer_stats,
            ),
        ],
    )


def test_replay_paused_mid_reasoning(snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTime()
    monkeypatch.setattr(replay_module, "ReplayClock", lambda speed=1.0: ReplayClock(speed, now=fake))
    conv = replayed_conversation()
    events = list(timeline(conv))
    second_question = next(e for e in events if e.stage is None and e.turn_index == 1)
    at = second_question.at_s + 1.25  # a dozen words into the second turn's reasoning
    shown = "".join(e.text for e in events if e.turn_index == 1 and e.stage == "reasoning" and e.at_s <= at)
    assert 0 < len(shown) < len(conv.turns[1].reasoning)

    async def run_before(pilot: Pilot) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, ReplayScreen)
        await wait_for(pilot, lambda: screen.shown_turn == 0)
        fake.t = at  # the player notices at its next wake (within 0.1 s of fake time)
        await wait_for(pilot, lambda: screen.turn_view.pane("reasoning").text == shown)
        await wait_for(pilot, lambda: screen.total_s is not None)
        await pilot.press("space")
        assert screen.clock.paused
        await pilot.pause(0.1)
        await pilot.pause()

    app = ReplayApp(conv, 1.0, "sky.json")
    assert snap_compare(app, terminal_size=WIDE, run_before=run_before)
