"""The replay screen (ReplayApp, as ``reasonchat replay`` runs it): instant, recorded timing at 4×, pause,
next turn, speed, jump to the end, steady rate without timing, a JSON export, terminal escapes."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Markdown, Static

from reasonchat.conversation import Conversation, StageStats, Turn
from reasonchat.replay import ReplayClock
from reasonchat.sanitize import sanitize
from reasonchat.transfer import to_json
from reasonchat.tui.replay_app import ReplayApp
from reasonchat.tui.screens import replay as replay_module
from reasonchat.tui.screens.replay import ReplayScreen
from reasonchat.tui.widgets.transcript import TranscriptTurn
from tests.tui.helpers import WIDE, wait_for

CHUNK_S = 0.1  # recorded seconds between two chunks


class FakeTime:
    """A wall clock for the replay that moves only when the test moves it."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def timed_text(words: list[str], start: float = CHUNK_S) -> tuple[str, StageStats]:
    """``words`` as one text whose chunks (a word each) were recorded ``CHUNK_S`` apart."""
    text, chunks = "", []
    for index, word in enumerate(words):
        text += word
        chunks.append((round(start + index * CHUNK_S, 3), len(text)))
    return text, StageStats(prompt_tokens=10, new_tokens=len(words), stop_reason="eos", chunks=chunks)


def timed_turn(number: int, reasoning_words: int = 30, answer_words: int = 5) -> Turn:
    reasoning, reasoning_stats = timed_text([f"step{number}.{i} " for i in range(reasoning_words)])
    answer, answer_stats = timed_text([f"answer{number}.{i} " for i in range(answer_words)])
    return Turn(
        f"Question {number}?",
        reasoning,
        answer,
        reasoning_stats,
        answer_stats,
        "2025-02-01T10:00:00.000+00:00",
    )


def timed_conversation(turns: int = 2, reasoning_words: int = 30) -> Conversation:
    """At 4×, each turn takes about (reasoning_words + 5) × 0.1 / 4 s: 0.9 s with the defaults."""
    return Conversation(
        id="7e57c0de0001",
        title="Timed replay",
        created="2025-02-01T10:00:00.000+00:00",
        turns=[timed_turn(n, reasoning_words) for n in range(1, turns + 1)],
    )


def replay_screen(app: ReplayApp) -> ReplayScreen:
    screen = app.screen
    assert isinstance(screen, ReplayScreen)
    return screen


def status(screen: ReplayScreen) -> str:
    return str(screen.query_one("#replay-status", Static).content)


def pane_text(screen: ReplayScreen, stage: str) -> str:
    return screen.turn_view.pane(stage).text


def question(screen: ReplayScreen) -> str:
    return str(screen.turn_view.query_one("#question", Static).content)


def transcript_turns(screen: ReplayScreen) -> list[TranscriptTurn]:
    return list(screen.transcript.query(TranscriptTurn))


async def started(pilot: Pilot) -> ReplayScreen:
    screen = replay_screen(pilot.app)
    await wait_for(pilot, lambda: screen.events or screen.finished)
    return screen


async def settle(pilot: Pilot) -> None:
    """Let writes already started reach the Markdown (its stream applies them in a task of its own)."""
    await pilot.pause(0.1)
    await pilot.pause()


def is_strict_prefix(part: str, whole: str) -> bool:
    return whole.startswith(part) and len(part) < len(whole)


# --- instant -------------------------------------------------------------------------------------


async def test_instant_shows_everything_at_once() -> None:
    conv = timed_conversation(turns=3)
    async with ReplayApp(conv, 0.0, "three.json").run_test(size=WIDE) as pilot:
        screen = replay_screen(pilot.app)
        await wait_for(pilot, lambda: screen.finished)
        await pilot.pause()
        assert screen.shown_turn == 2
        assert [t.turn for t in transcript_turns(screen)] == conv.turns[:2]
        assert question(screen) == "› Question 3?"
        assert pane_text(screen, "reasoning") == conv.turns[2].reasoning
        assert pane_text(screen, "answer") == conv.turns[2].answer
        assert status(screen) == "■ replayed · turn 3/3 · Timed replay · three.json"
        for key in ("space", "n", "s", "e"):  # nothing left to control
            await pilot.press(key)
        assert status(screen) == "■ replayed · turn 3/3 · Timed replay · three.json"
        await pilot.press("ctrl+t")
        assert screen.turn_view.reasoning_collapsed
        await pilot.press("ctrl+t")
        assert not screen.turn_view.reasoning_collapsed


async def test_q_closes_the_replay_app() -> None:
    app = ReplayApp(timed_conversation(turns=1), 0.0, "x")
    async with app.run_test(size=WIDE) as pilot:
        screen = replay_screen(app)
        await wait_for(pilot, lambda: screen.finished)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 0


async def test_esc_closes_the_replay_app_mid_replay() -> None:
    app = ReplayApp(timed_conversation(turns=1), 1.0, "x")
    async with app.run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert not app.is_running and not screen.finished


async def test_a_conversation_without_turns_is_replayed_at_once() -> None:
    async with ReplayApp(Conversation(title="Empty"), 1.0, "empty").run_test(size=WIDE) as pilot:
        screen = replay_screen(pilot.app)
        await wait_for(pilot, lambda: screen.finished)
        assert status(screen) == "■ replayed · turn 0/0 · Empty · empty"
        assert screen.shown_turn is None and not transcript_turns(screen)


# --- recorded timing -----------------------------------------------------------------------------


async def test_recorded_timing_streams_a_prefix_pause_holds_and_resume_continues() -> None:
    conv = timed_conversation(turns=2, reasoning_words=40)  # 1 s of reasoning at 4×
    full = conv.turns[0].reasoning
    async with ReplayApp(conv, 4.0, "timed.json").run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        assert status(screen).startswith("▶ replaying · turn ") and " · 4× · " in status(screen)
        # Mid-replay: the first words of the reasoning, and only those.
        await wait_for(pilot, lambda: pane_text(screen, "reasoning") != "")
        await pilot.press("space")
        assert screen.clock.paused
        assert pane_text(screen, "answer") == "" and screen.shown_turn == 0
        assert question(screen) == "› Question 1?"
        await settle(pilot)
        held = pane_text(screen, "reasoning")
        assert is_strict_prefix(held, full)
        await pilot.pause(0.3)
        assert pane_text(screen, "reasoning") == held, "nothing moves while paused"
        assert status(screen).startswith("❚❚ paused · turn 1/2 · 4× · ")

        await pilot.press("space")
        assert not screen.clock.paused
        assert status(screen).startswith("▶ replaying · turn 1/2 · 4× · ")
        await wait_for(
            pilot, lambda: len(pane_text(screen, "reasoning")) > len(held) or screen.shown_turn == 1
        )
        await wait_for(pilot, lambda: screen.finished)
        await pilot.pause()
        assert [t.turn for t in transcript_turns(screen)] == [conv.turns[0]]
        assert pane_text(screen, "reasoning") == conv.turns[1].reasoning
        assert pane_text(screen, "answer") == conv.turns[1].answer
        assert status(screen) == "■ replayed · turn 2/2 · Timed replay · timed.json"
        assert screen.turn_view.pane("answer").border_subtitle == "5 tokens"


async def test_n_skips_to_the_next_turn_and_the_last_n_finishes() -> None:
    conv = timed_conversation(turns=3, reasoning_words=60)
    async with ReplayApp(conv, 1.0, "skip").run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        await wait_for(pilot, lambda: pane_text(screen, "reasoning") != "")
        await pilot.press("n")
        await wait_for(pilot, lambda: screen.shown_turn == 1)
        await pilot.pause()
        (earlier,) = transcript_turns(screen)
        assert earlier.turn == conv.turns[0], "the skipped turn moves to the transcript whole"
        assert earlier.query_one(".transcript-answer", Markdown).source == conv.turns[0].answer
        assert question(screen) == "› Question 2?"
        assert status(screen).startswith("▶ replaying · turn 2/3 · 1× · ")
        # The next turn streams from its start: its reasoning is not shown whole.
        assert is_strict_prefix(pane_text(screen, "reasoning"), conv.turns[1].reasoning)
        assert pane_text(screen, "answer") == ""

        await pilot.press("n")
        await wait_for(pilot, lambda: screen.shown_turn == 2)
        await pilot.press("n")  # on the last turn: the rest at once
        await wait_for(pilot, lambda: screen.finished)
        await pilot.pause()
        assert [t.turn for t in transcript_turns(screen)] == conv.turns[:2]
        assert pane_text(screen, "reasoning") == conv.turns[2].reasoning
        assert pane_text(screen, "answer") == conv.turns[2].answer


async def test_n_while_paused_moves_to_the_start_of_the_next_turn() -> None:
    conv = timed_conversation(turns=3, reasoning_words=60)
    async with ReplayApp(conv, 1.0, "skip").run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        await wait_for(pilot, lambda: pane_text(screen, "reasoning") != "")
        await pilot.press("space")
        await pilot.press("n")
        await settle(pilot)
        assert screen.clock.paused, "still paused"
        assert [t.turn for t in transcript_turns(screen)] == [conv.turns[0]], (
            "the skipped turn is in the transcript"
        )
        assert screen.shown_turn == 1 and question(screen) == "› Question 2?"
        assert status(screen).startswith("❚❚ paused · turn 2/3 · ")


async def test_s_cycles_the_speed_shown_in_the_status() -> None:
    conv = timed_conversation(turns=1, reasoning_words=80)
    async with ReplayApp(conv, 1.0, "speed").run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        assert " · 1× · " in status(screen)
        for expected, label in [(2.0, "2×"), (4.0, "4×"), (1.0, "1×")]:
            await pilot.press("s")
            assert screen.clock.speed == expected and f" · {label} · " in status(screen)
        await pilot.press("space", "s")
        assert screen.clock.paused and status(screen).startswith("❚❚ paused · turn 1/1 · 2× · ")
        await pilot.press("e")
        await wait_for(pilot, lambda: screen.finished)


async def test_e_jumps_to_the_end() -> None:
    conv = timed_conversation(turns=3, reasoning_words=60)
    async with ReplayApp(conv, 1.0, "end").run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        await wait_for(pilot, lambda: pane_text(screen, "reasoning") != "")
        await pilot.press("e")
        await wait_for(pilot, lambda: screen.finished)
        await pilot.pause()
        assert [t.turn for t in transcript_turns(screen)] == conv.turns[:2]
        assert question(screen) == "› Question 3?"
        assert pane_text(screen, "reasoning") == conv.turns[2].reasoning
        assert pane_text(screen, "answer") == conv.turns[2].answer
        assert status(screen) == "■ replayed · turn 3/3 · Timed replay · end"


async def test_e_while_paused_jumps_to_the_end() -> None:
    conv = timed_conversation(turns=2, reasoning_words=60)
    async with ReplayApp(conv, 1.0, "end").run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        await pilot.press("space")
        await pilot.press("e")
        await wait_for(pilot, lambda: screen.finished)
        await pilot.pause()
        assert pane_text(screen, "answer") == conv.turns[1].answer


async def test_without_timing_the_text_streams_at_a_steady_rate_and_finishes() -> None:
    sentence = "Light from the sun is scattered by the molecules of the air. "
    conv = Conversation.from_history(
        [
            {"role": "user", "content": "Why blue?"},
            {"role": "<|reasoning|>", "content": sentence * 10},
            {"role": "assistant", "content": "Rayleigh scattering."},
            {"role": "user", "content": "And red?"},
            {"role": "<|reasoning|>", "content": sentence * 2},
            {"role": "assistant", "content": "A longer path."},
        ]
    )
    assert all(t.reasoning_stats is None for t in conv.turns)
    async with ReplayApp(conv, 4.0, "card.history.json").run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        await wait_for(pilot, lambda: pane_text(screen, "reasoning") != "")
        assert is_strict_prefix(pane_text(screen, "reasoning"), sentence * 10), "not all at once"
        await wait_for(pilot, lambda: screen.finished)
        await pilot.pause()
        assert [t.turn for t in transcript_turns(screen)] == conv.turns[:1]
        assert pane_text(screen, "reasoning") == sentence * 2
        assert pane_text(screen, "answer") == "A longer path."
        assert screen.turn_view.pane("answer").border_subtitle == "", "no stats, no stats line"


async def test_a_turn_stopped_before_its_answer_replays_what_there_is() -> None:
    reasoning, reasoning_stats = timed_text(["half ", "a ", "thought"])
    reasoning_stats.stop_reason = "cancelled"
    conv = Conversation(title="Cut", turns=[Turn("Go on", reasoning, None, reasoning_stats)])
    async with ReplayApp(conv, 4.0, "cut").run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        await wait_for(pilot, lambda: screen.finished)
        await pilot.pause()
        assert pane_text(screen, "reasoning") == "half a thought"
        assert screen.turn_view.pane("reasoning").border_subtitle == "3 tokens · cancelled"
        assert pane_text(screen, "answer") == ""


# --- a file, as ``reasonchat replay FILE`` opens it ------------------------------------------------


async def test_a_json_export_replays_through_build_replay_app(tmp_path: Path, isolated_dirs: Path) -> None:
    from reasonchat.cli import build_parser
    from reasonchat.cli.replay_command import build_replay_app

    conv = timed_conversation(turns=2, reasoning_words=8)
    path = tmp_path / "shared.json"
    path.write_text(to_json(conv), "utf-8")
    before = path.read_bytes()
    app = build_replay_app(build_parser().parse_args(["replay", str(path), "--speed", "4"]))
    async with app.run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        assert screen.conversation == conv
        await wait_for(pilot, lambda: screen.finished)
        await pilot.pause()
        assert [t.turn for t in transcript_turns(screen)] == conv.turns[:1]
        assert pane_text(screen, "answer") == conv.turns[1].answer
        assert status(screen) == "■ replayed · turn 2/2 · Timed replay · shared.json"
    assert path.read_bytes() == before and not isolated_dirs.exists()


# --- terminal safety -----------------------------------------------------------------------------

HOSTILE_USER = "\x1b]52;c;aGk=\x07Copy \x1b[31mthis\x1b[0m"
HOSTILE_REASONING = "Think \x1b[2Jhard \x1b]8;;http://x\x07link\x1b]8;;\x07 \x9b31mdone"
HOSTILE_ANSWER = "Answer \x1b[5mblink\x1b[0m."


def hostile_conversation() -> Conversation:
    # Chunk boundaries fall between the sequences, one word at a time.
    words = ["Think ", "\x1b[2Jhard ", "\x1b]8;;http://x\x07link\x1b]8;;\x07 ", "\x9b31mdone"]
    reasoning, reasoning_stats = timed_text(words)
    assert reasoning == HOSTILE_REASONING
    first = Turn("\x1b[1mfirst\x1b[0m", "r\x1b[0m", "a\x07", created="2025-02-01T10:00:00.000+00:00")
    second = Turn(
        HOSTILE_USER, reasoning, HOSTILE_ANSWER, reasoning_stats, None, "2025-02-01T10:01:00.000+00:00"
    )
    return Conversation(title="\x1b[31mRed\x1b[0m title\x07", turns=[first, second])


def unsafe(text: str) -> bool:
    return any(c == "\x1b" or c == "\x07" or "\x80" <= c <= "\x9f" for c in text)


@pytest.mark.parametrize("speed", [0.0, 4.0])
async def test_terminal_escapes_never_reach_the_screen(speed: float) -> None:
    conv = hostile_conversation()
    async with ReplayApp(conv, speed, "hostile.json").run_test(size=WIDE) as pilot:
        screen = replay_screen(pilot.app)
        seen: list[str] = []

        def check() -> bool:
            seen.extend(
                [
                    pane_text(screen, "reasoning"),
                    pane_text(screen, "answer"),
                    question(screen),
                    status(screen),
                ]
            )
            return screen.finished

        await wait_for(pilot, check)
        await pilot.pause()
        assert not any(unsafe(text) for text in seen), [t for t in seen if unsafe(t)]
        assert pane_text(screen, "reasoning") == sanitize(HOSTILE_REASONING) == "Think hard link done"
        assert pane_text(screen, "answer") == "Answer blink."
        assert question(screen) == "› Copy this"
        assert status(screen) == "■ replayed · turn 2/2 · Red title · hostile.json"
        (earlier,) = transcript_turns(screen)
        shown = [str(w.content) for w in earlier.query(Static) if not isinstance(w, Markdown)]
        assert not any(unsafe(text) for text in shown) and "› first" in shown


async def test_an_escape_split_across_chunks_leaves_no_junk_while_streaming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fake clock, so the two halves of the sequence surely arrive in two separate frames.
    fake = FakeTime()
    monkeypatch.setattr(replay_module, "ReplayClock", lambda speed=1.0: ReplayClock(speed, now=fake))
    text = "red \x1b[31mtext\x1b[0m here and more words to come"
    split = text.index("1mtext")  # the first chunk ends inside "\x1b[31m"
    stats = StageStats(
        new_tokens=3, stop_reason="eos", chunks=[(0.1, split), (0.2, len(text) - 8), (3.0, len(text))]
    )
    conv = Conversation(title="Split", turns=[Turn("q", text, "a", stats)])
    expected = sanitize(text)
    async with ReplayApp(conv, 1.0, "split").run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        fake.t = 0.15
        await wait_for(pilot, lambda: pane_text(screen, "reasoning") == "red ")
        fake.t = 0.25
        await wait_for(pilot, lambda: "here" in pane_text(screen, "reasoning"))
        streamed = pane_text(screen, "reasoning")
        await pilot.press("e")
        await wait_for(pilot, lambda: screen.finished)
        assert pane_text(screen, "reasoning") == expected
        assert expected.startswith(streamed), streamed


async def test_a_file_name_with_escapes_is_shown_safe(tmp_path: Path) -> None:
    from reasonchat.cli import build_parser
    from reasonchat.cli.replay_command import build_replay_app

    path = tmp_path / "\x1b]52;c;aGk=\x07\x1b[31mred.json"
    path.write_text(to_json(timed_conversation(turns=1, reasoning_words=2)), "utf-8")
    app = build_replay_app(build_parser().parse_args(["replay", str(path), "--speed", "instant"]))
    async with app.run_test(size=WIDE) as pilot:
        screen = replay_screen(app)
        await wait_for(pilot, lambda: screen.finished)
        assert not unsafe(status(screen)), repr(status(screen))
        assert status(screen) == "■ replayed · turn 1/1 · Timed replay · red.json"


async def test_closing_a_replay_mid_write_leaves_the_chat_working() -> None:
    """Esc while the replay writes into its panes: the play worker stops before the panes go, so
    nothing raises into the app (it once did under load: NoMatches on the answer pane's Markdown)."""
    from tests.tui.helpers import chat, make_app, send, wait_idle, wait_ready

    conversation = timed_conversation(turns=3, reasoning_words=200)
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        view = chat(app)
        for delay in (0.0, 0.01, 0.03, 0.05, 0.1, 0.2):
            app.push_screen(ReplayScreen(conversation, 4.0, "test"))
            await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen))
            await pilot.pause(delay)
            app.screen.action_next_turn()  # a burst of writes at once
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is view)
        await send(pilot, "still here")
        await wait_idle(pilot)
        assert view.turn_view.pane("answer").text == "You said: **still here**"


async def test_the_playing_keys_leave_the_footer_when_the_replay_ends() -> None:
    from textual.widgets import Footer

    def footer_actions(screen: ReplayScreen) -> set[str]:
        return {binding.action for (_, binding, enabled, _) in screen.active_bindings.values() if enabled}

    conv = timed_conversation(turns=1, reasoning_words=20)
    async with ReplayApp(conv, 4.0, "one.json").run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        assert {"pause", "next_turn", "speed", "to_end", "close"} <= footer_actions(screen)
        await pilot.press("e")
        await wait_for(pilot, lambda: screen.finished)
        await pilot.pause()
        actions = footer_actions(screen)
        assert not actions & {"pause", "next_turn", "speed", "to_end"} and "close" in actions
        assert screen.query_one(Footer)


async def test_an_instant_replay_never_reads_as_another_speed() -> None:
    conv = timed_conversation(turns=2)
    async with ReplayApp(conv, 0.0, "two.json").run_test(size=WIDE) as pilot:
        screen = replay_screen(pilot.app)
        seen = [status(screen)]
        while not screen.finished:
            await pilot.pause(0.01)
            seen.append(status(screen))
        assert not any("1×" in line for line in seen), seen


async def test_the_replay_marks_where_the_user_stepped_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock holds the replay inside the first turn's answer (25 ms long at 4×: a poll
    # could miss it).
    fake = FakeTime()
    monkeypatch.setattr(replay_module, "ReplayClock", lambda speed=1.0: ReplayClock(speed, now=fake))
    plain = timed_turn(1, reasoning_words=4, answer_words=2)
    stopped = timed_turn(2, reasoning_words=4, answer_words=2)
    stopped.reasoning_stats.stop_reason = "answer_now"
    conv = Conversation(title="Steered", turns=[plain, stopped])
    async with ReplayApp(conv, 4.0, "steered").run_test(size=WIDE) as pilot:
        screen = await started(pilot)
        fake.t = 0.55 / 4  # recorded 0.55 s: the answer's first word (0.5 s) is out, its last (0.6 s) not
        await wait_for(pilot, lambda: screen.shown_turn == 0 and screen._streaming == "answer")
        screen._update_status()
        assert "✋" not in status(screen)  # the model ran on its own
        fake.t = 100.0
        await wait_for(pilot, lambda: screen.finished)
        await pilot.pause()
        assert "✋ you stopped the reasoning here and asked for the answer" in status(screen)
        assert screen.turn_view.pane("reasoning").border_title == "Reasoning · answered early"
        assert any(n.message == "✋ Here you stopped the reasoning here and asked for the answer." for n in pilot.app._notifications)


async def test_an_instant_replay_marks_the_last_turn_and_the_transcript_says_who_wrote_it() -> None:
    written = timed_turn(1, reasoning_words=3, answer_words=2)
    written.reasoning_source = "user"
    edited = timed_turn(2, reasoning_words=3, answer_words=2)
    edited.reasoning_source = "edited"
    edited.keep_first_version("the model's", None)
    conv = Conversation(title="Mine", turns=[written, edited])
    async with ReplayApp(conv, 0.0, "mine").run_test(size=WIDE) as pilot:
        screen = replay_screen(pilot.app)
        await wait_for(pilot, lambda: screen.finished)
        await pilot.pause()
        assert "✋ you edited this reasoning (the model's own is kept)" in status(screen)
        assert screen.turn_view.pane("reasoning").border_title == "Reasoning 2/2 · edited by you"
        fold = screen.query_one("ReasoningFold")
        assert str(fold.render()).startswith("▶ Reasoning · written by you")
