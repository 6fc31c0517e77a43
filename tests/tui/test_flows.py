"""The chat app driven by a Pilot with a scripted backend: sending, waiting, cancelling, errors,
overflow, the meter, the panes, and the keys (fast and deterministic; real-model flows are elsewhere)."""

from __future__ import annotations

import threading

import pytest
from textual import events
from textual.widgets import Markdown

from reasonchat.conversation import Conversation
from reasonchat.engine.scripted import ScriptedBackend, echo_script
from reasonchat.errors import UserError
from reasonchat.store import Store
from reasonchat.tui.dialogs.error import ErrorDialog
from reasonchat.tui.dialogs.overflow import OverflowDialog
from reasonchat.tui.dialogs.settings import SettingsDialog
from reasonchat.tui.dialogs.confirm import ConfirmDialog
from reasonchat.tui.dialogs.export import ExportDialog
from reasonchat.tui.dialogs.rename import RenameDialog
from reasonchat.tui.screens.history import HistoryScreen
from reasonchat.tui.screens.replay import ReplayScreen
from reasonchat.tui.widgets.transcript import EarlierTurns, ReasoningFold, Transcript, TranscriptTurn
from tests.tui.helpers import (
    SMALL,
    WIDE,
    PausingBackend,
    chat,
    make_app,
    send,
    wait_for,
    wait_idle,
    wait_ready,
)


async def test_a_turn_fills_both_panes_and_is_saved(store: Store) -> None:
    backend = ScriptedBackend()
    app = make_app(backend, store=store)
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hello there")
        await wait_idle(pilot)
        view = screen.turn_view
        assert view.pane("reasoning").text == "The user asked: hello there\nI will answer briefly."
        assert view.pane("answer").text == "You said: **hello there**"
        assert screen.composer.text == ""
        usage = screen.meter.usage
        turn = screen.conversation.turns[0]
        # The meter shows what the history lists: the answer's prompt (which holds the reasoning
        # with its stage header) plus the answer.
        assert (usage.prompt, usage.answer) == (turn.reasoning_stats.prompt_tokens, turn.answer_stats.new_tokens)
        assert usage.reasoning >= turn.reasoning_stats.new_tokens
        assert usage.total == turn.context_tokens() > 0
    saved = store.get(screen.conversation.id).turns
    assert [(t.user, t.reasoning_stats.stop_reason, t.answer_stats.stop_reason) for t in saved] == [
        ("hello there", "eos", "eos")
    ]


async def test_a_stage_without_text_ends_cleanly() -> None:
    app = make_app(ScriptedBackend(lambda request: "" if request.stage == "reasoning" else "Just this."))
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hi")
        await wait_idle(pilot)
        assert screen.turn_view.pane("reasoning").text == ""
        assert screen.turn_view.pane("answer").text == "Just this."


async def test_enter_sends_ctrl_j_adds_a_line_and_blank_input_is_ignored() -> None:
    backend = ScriptedBackend()
    app = make_app(backend)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await pilot.press("space", "space", "enter")
        await pilot.pause(0.1)
        assert not screen.busy and backend.requests == []
        screen.composer.clear()
        await pilot.press("a", "ctrl+j", "b")
        assert screen.composer.text == "a\nb"
        await pilot.press("enter")
        await wait_idle(pilot)
        assert screen.conversation.turns[0].user == "a\nb"
        assert len(backend.requests) == 2  # one per stage: Enter sent once
        assert not app._notifications  # not even a refused second send


async def test_earlier_turns_move_to_the_transcript_with_reasoning_collapsed() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        transcript = screen.query_one("#transcript")
        assert not transcript.display  # no earlier turn: all the room goes to the panes
        for text in ("first", "second", "third"):
            await send(pilot, text)
            await wait_idle(pilot)
        turns = list(screen.query(TranscriptTurn))
        assert [t.turn.user for t in turns] == ["first", "second"]
        assert transcript.display
        assert screen.turn_view.turn is screen.conversation.turns[-1]
        # Reasoning is folded, and not even rendered until unfolded.
        fold = turns[0].query_one(ReasoningFold)
        assert not fold.unfolded and not turns[0].query(".transcript-reasoning")
        fold.focus()
        await pilot.press("enter")
        (reasoning,) = turns[0].query(".transcript-reasoning")
        assert reasoning.source == "The user asked: first\nI will answer briefly." and reasoning.display
        await pilot.press("enter")
        assert not fold.unfolded and not reasoning.display


async def test_a_long_saved_conversation_shows_its_latest_turns_first(store: Store) -> None:
    conversation = Conversation()
    for i in range(26):
        turn = conversation.add_turn(f"q{i}")
        turn.reasoning, turn.answer = "r", f"a{i}"
    store.save(conversation)
    app = make_app(store=store, conversation=conversation)
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_for(pilot, lambda: screen.query(TranscriptTurn))
        shown = [t.turn.user for t in screen.query(TranscriptTurn)]
        assert shown == [f"q{i}" for i in range(22, 25)]  # the last turn is in the panes
        earlier = screen.query_one(EarlierTurns)
        assert "22 earlier turn(s) not shown" in str(earlier.render())
        earlier.focus()
        await pilot.press("enter")
        assert len(screen.query(TranscriptTurn)) == 13
        await pilot.press("enter", "enter")
        assert [t.turn.user for t in screen.query(TranscriptTurn)][0] == "q0" and not earlier.display


async def test_scrolling_to_the_top_of_the_transcript_brings_earlier_turns_in_place(store: Store) -> None:
    conversation = Conversation()
    for i in range(30):
        turn = conversation.add_turn(f"q{i}")
        turn.reasoning, turn.answer = "r", f"answer {i}\n\nsecond paragraph\n\nthird paragraph"
    app = make_app(store=store, conversation=conversation)
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        transcript = screen.query_one(Transcript)
        await wait_for(pilot, lambda: len(screen.query(TranscriptTurn)) == 3)
        await pilot.pause()
        newest = screen.query(TranscriptTurn).last()
        transcript.scroll_to(y=1, animate=False)
        await pilot.pause()
        in_view_at = newest.virtual_region.y - transcript.scroll_y + 1  # where it will be at the top
        transcript.scroll_to(y=0, animate=False)
        await wait_for(pilot, lambda: len(screen.query(TranscriptTurn)) == 13)
        await pilot.pause(0.1)
        # What was in view stays in view: the earlier turns arrived above it.
        assert transcript.scroll_y > 10
        assert abs(newest.virtual_region.y - transcript.scroll_y - in_view_at) <= 1


async def test_sending_while_busy_is_refused_with_a_hint_and_the_text_kept() -> None:
    backend = PausingBackend()
    app = make_app(backend)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "first")
        await wait_for(pilot, backend.paused.is_set)
        await send(pilot, "second")
        await pilot.pause(0.1)
        assert screen.composer.text == "second"
        assert any("Esc" in n.message for n in app._notifications)
        assert [r.stage for r in backend.requests] == ["reasoning"]
        await pilot.press("escape")
        await wait_idle(pilot)


async def test_a_message_sent_while_the_model_loads_runs_when_it_is_ready(store: Store) -> None:
    release = threading.Event()
    backend = ScriptedBackend()

    def slow_loader(progress):
        progress("reading weights")
        release.wait(10)
        return backend

    app = make_app(loader=slow_loader, store=store)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_for(pilot, lambda: "reading weights" in str(screen.model_status.render()))
        assert "loading scripted" in str(screen.model_status.render())
        await send(pilot, "early bird")
        await pilot.pause(0.1)
        assert screen.pending == "early bird" and screen.busy
        assert screen.turn_view.indicator.display
        assert "Waiting for the model" in str(screen.turn_view.indicator.render())
        assert backend.requests == []
        release.set()
        await wait_ready(pilot)
        await wait_idle(pilot)
        assert screen.turn_view.pane("answer").text == "You said: **early bird**"
        assert "● scripted" in str(screen.model_status.render())
    assert store.get(screen.conversation.id).turns[0].answer == "You said: **early bird**"


async def test_escape_before_the_model_is_ready_gives_the_message_back() -> None:
    release = threading.Event()
    app = make_app(loader=lambda progress: release.wait(10) and ScriptedBackend())
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await send(pilot, "never mind")
        await pilot.pause(0.05)
        await pilot.press("escape")
        await pilot.pause(0.05)
        assert screen.pending is None and not screen.busy
        assert screen.composer.text == "never mind"
        release.set()
        await wait_ready(pilot)
        assert screen.conversation.turns == []


async def test_escape_cancels_mid_stage_and_the_partial_turn_is_saved(store: Store) -> None:
    backend = PausingBackend(pause_after=4)
    app = make_app(backend, store=store)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "tell me everything")
        await wait_for(pilot, backend.paused.is_set)
        await wait_for(pilot, lambda: screen.turn_view.pane("reasoning").text)
        await pilot.press("escape")
        await wait_idle(pilot)
        turn = screen.conversation.turns[0]
        assert turn.reasoning_stats.stop_reason == "cancelled"
        assert turn.reasoning_stats.new_tokens == 4  # not one token more
        assert turn.answer is None and [r.stage for r in backend.requests] == ["reasoning"]
        pane = screen.turn_view.pane("reasoning")
        assert pane.text == turn.reasoning == "The user asked: tell "
        assert "cancelled" in pane.border_subtitle
    saved = store.get(screen.conversation.id).turns[0]
    assert (saved.reasoning, saved.reasoning_stats.stop_reason, saved.answer) == (
        "The user asked: tell ",
        "cancelled",
        None,
    )


async def test_escape_before_the_thread_has_started_the_turn_still_cancels(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reasonchat.session import ChatSession

    started = threading.Event()
    real_ask = ChatSession.ask

    def late_ask(self, text, on_event=None):
        started.wait(5)  # the session is not running yet when Esc arrives
        return real_ask(self, text, on_event)

    monkeypatch.setattr(ChatSession, "ask", late_ask)
    app = make_app(store=store)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hi")
        await pilot.press("escape")
        started.set()
        await wait_idle(pilot)
    turn = store.get(screen.conversation.id).turns[0]
    assert turn.reasoning_stats.stop_reason == "cancelled" and turn.answer is None


async def test_escape_during_the_answer_keeps_the_finished_reasoning(store: Store) -> None:
    backend = PausingBackend(pause_stage="answer", pause_after=2)
    app = make_app(backend, store=store)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hi")
        await wait_for(pilot, backend.paused.is_set)
        await pilot.press("escape")
        await wait_idle(pilot)
    saved = store.get(screen.conversation.id).turns[0]
    assert saved.reasoning_stats.stop_reason == "eos"
    assert (saved.answer, saved.answer_stats.stop_reason) == ("You said: ", "cancelled")


async def test_quitting_mid_generation_cancels_and_saves(store: Store) -> None:
    backend = PausingBackend()
    app = make_app(backend, store=store)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "bye")
        await wait_for(pilot, backend.paused.is_set)
        await pilot.press("ctrl+q")
    saved = store.get(screen.conversation.id).turns[0]
    assert saved.reasoning_stats.stop_reason == "cancelled"


async def test_a_generation_error_opens_a_dialog_and_a_key_retries(store: Store) -> None:
    backend = ScriptedBackend(fail_at=("answer", 2))
    app = make_app(backend, store=store)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hi")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert "scripted failure" in app.screen.message
        turn = screen.conversation.turns[0]
        assert (turn.answer, turn.answer_stats.stop_reason) == ("You said: ", "error")
        assert store.get(screen.conversation.id).turns[0].answer_stats.stop_reason == "error"
        assert screen.turn_view.pane("answer").text == "You said: "  # the partial text stays

        backend.fail_at = None
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.turn_view.pane("answer").text == "You said: **hi**")
        await wait_idle(pilot)
        assert len(screen.conversation.turns) == 1  # the same message, regenerated
    assert store.get(screen.conversation.id).turns[0].answer_stats.stop_reason == "eos"


async def test_a_failed_load_shows_a_dialog_keeps_the_message_and_retries() -> None:
    attempts = []
    backend = ScriptedBackend()

    def loader(progress):
        attempts.append(1)
        if len(attempts) == 1:
            raise UserError("model path not found: /nope")
        return backend

    app = make_app(loader=loader)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog))
        assert app.screen.message == "model path not found: /nope"
        assert "failed to load" in str(screen.model_status.render())
        await pilot.press("escape")
        await send(pilot, "still here?")  # the app stays usable: the message waits
        await pilot.pause(0.05)
        assert screen.pending == "still here?"
        await pilot.press("ctrl+r")
        await wait_ready(pilot)
        await wait_idle(pilot)
        assert len(attempts) == 2
        assert screen.turn_view.pane("answer").text == "You said: **still here?**"


async def test_overflow_go_back_keeps_the_text_and_the_conversation(store: Store) -> None:
    app = make_app(store=store, context_limit=40)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hi")
        await wait_idle(pilot)
        long_text = " ".join(["word"] * 30)
        await send(pilot, long_text)
        await wait_for(pilot, lambda: isinstance(app.screen, OverflowDialog))
        dialog = app.screen
        assert dialog.overflow.limit == 40 and dialog.overflow.prompt_tokens >= 40
        await pilot.press("escape")
        await pilot.pause(0.05)
        assert screen.composer.text == long_text
        assert [t.user for t in screen.conversation.turns] == ["hi"]
        assert screen.turn_view.turn is screen.conversation.turns[0]  # shown again, as before
        assert not screen.query(TranscriptTurn)
        assert app.is_running
    assert [t.user for t in store.get(screen.conversation.id).turns] == ["hi"]


def terse(request) -> str:
    return "ok" if request.stage == "reasoning" else "fine"


async def test_overflow_new_conversation_keeps_the_system_prompt_and_sends(store: Store) -> None:
    # 25 words make a 36-token prompt after the "hi" turn, 30 alone: over 34, then under it.
    message = " ".join(["word"] * 25)
    app = make_app(ScriptedBackend(terse), store=store, context_limit=34, system_prompt="Be brief")
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hi")
        await wait_idle(pilot)
        first = screen.conversation.id
        await send(pilot, message)
        await wait_for(pilot, lambda: isinstance(app.screen, OverflowDialog))
        assert app.screen.overflow.stage == "reasoning"
        await pilot.press("n")
        await wait_for(pilot, lambda: screen.conversation.id != first)
        await wait_idle(pilot)
        assert screen.conversation.system_prompt == "Be brief"
        assert [t.user for t in screen.conversation.turns] == [message]
        assert screen.composer.text == ""
    assert len(store.get(first).turns) == 1
    assert store.get(screen.conversation.id).turns[0].answer_stats.stop_reason == "eos"


async def test_an_answer_that_does_not_fit_keeps_the_saved_reasoning(store: Store) -> None:
    # The echo script repeats the question in the reasoning, which fills the room the prompt left: the
    # reasoning stops at the limit, and the answer's prompt has no room at all.
    app = make_app(store=store, context_limit=40)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "a b c d e f g h i j k l m n")
        await wait_for(pilot, lambda: isinstance(app.screen, OverflowDialog))
        assert app.screen.overflow.stage == "answer"
        await pilot.press("escape")
        await pilot.pause()
        assert screen.turn_view.pane("reasoning").text.startswith("The user asked")
        assert screen.composer.text == ""  # the message is in the saved turn, not given back
    turn = store.get(screen.conversation.id).turns[0]
    assert turn.reasoning and turn.reasoning_stats.stop_reason == "budget"
    assert turn.answer_stats.stop_reason == "error"


async def test_overflow_drop_oldest_turns_continues_without_them(store: Store) -> None:
    # 40 words after three short turns: a 66-token prompt, over 64; alone it leaves the quarter of
    # the window that counts as room to generate.
    app = make_app(ScriptedBackend(terse), store=store, context_limit=64)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        for text in ("one", "two", "three"):
            await send(pilot, text)
            await wait_idle(pilot)
        original = screen.conversation.id
        await send(pilot, " ".join(["w"] * 40))
        await wait_for(pilot, lambda: isinstance(app.screen, OverflowDialog))
        await pilot.press("d")
        await wait_for(pilot, lambda: screen.conversation.id != original)
        await wait_idle(pilot)
        users = [t.user for t in screen.conversation.turns]
        assert users == [" ".join(["w"] * 40)]
        assert screen.conversation.turns[-1].answer_stats.stop_reason == "eos"
        assert any("Dropped the 3 oldest" in n.message for n in app._notifications)
    assert [t.user for t in store.get(original).turns] == ["one", "two", "three"]  # nothing lost
    assert [t.user for t in store.get(screen.conversation.id).turns] == users


async def test_a_huge_paste_is_checked_against_the_budget_before_sending() -> None:
    backend = ScriptedBackend()
    app = make_app(backend, context_limit=1000)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        paste = "lorem ipsum " * 600
        app.post_message(events.Paste(paste))  # as the driver does: the app forwards it to the focus
        await wait_for(pilot, lambda: screen.meter.next_prompt is not None)
        assert screen.meter.next_prompt > 1000 and screen.meter.has_class("-error")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, OverflowDialog))
        assert backend.requests == []  # refused before anything ran
        await pilot.press("escape")
        assert screen.composer.text == paste


async def test_the_meter_shows_the_next_prompt_while_typing() -> None:
    backend = ScriptedBackend()
    app = make_app(backend)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await pilot.press(*"hello there")
        probe = Conversation()
        probe.add_turn("hello there")
        expected = backend.count_tokens(probe.stage_prompt(0, "reasoning"))
        await wait_for(pilot, lambda: screen.meter.next_prompt == expected)
        assert f"next prompt {expected} / 32,000" in str(screen.meter.render())
        screen.composer.clear()
        await wait_for(pilot, lambda: screen.meter.next_prompt is None)


@pytest.mark.parametrize(("total", "classes"), [(2000, set()), (2100, {"-warning"}), (2700, {"-error"})])
async def test_meter_colours_at_70_and_90_percent(total: int, classes: set[str]) -> None:
    from reasonchat.budget import ContextUsage

    app = make_app(context_limit=3000)
    async with app.run_test(size=SMALL) as pilot:
        meter = chat(app).meter
        meter.usage = ContextUsage(3000, total - 30, 20, 10)
        await pilot.pause()
        assert {"-warning", "-error"} & meter.classes == classes
        assert f"/ 3,000 ({100 * total // 3000}%)" in str(meter.render())


async def test_no_color_keeps_the_meter_levels_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    from reasonchat.budget import ContextUsage

    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(context_limit=100)
    async with app.run_test(size=SMALL) as pilot:
        assert app.no_color
        meter = chat(app).meter
        meter.usage = ContextUsage(100, 95)
        await pilot.pause()
        assert "reverse" in str(meter.styles.text_style)


async def test_model_text_is_sanitized_and_links_are_not_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    def hostile(request):
        return "\x1b]52;c;ZXZpbA==\x07Look \x1b[31mred\x1b[0m [here](https://example.com) \x9b2J"

    app = make_app(ScriptedBackend(hostile))
    opened: list[str] = []
    monkeypatch.setattr(app, "open_url", lambda url, **kw: opened.append(url))
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hi \x1b[2J")
        await wait_idle(pilot)
        for stage in ("reasoning", "answer"):
            text = screen.turn_view.pane(stage).text
            assert "Look red" in text and not any(c in text for c in "\x1b\x07\x9b")
        markdown = screen.turn_view.pane("answer").markdown
        markdown.post_message(Markdown.LinkClicked(markdown, "https://example.com"))
        await pilot.pause(0.1)
        assert opened == []


async def test_collapse_and_maximise_the_reasoning_pane() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hi")
        await wait_idle(pilot)
        reasoning, answer = screen.turn_view.pane("reasoning"), screen.turn_view.pane("answer")
        assert reasoning.region.y == answer.region.y  # side by side
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert reasoning.region.height == 2 and answer.region.width > 100
        await pilot.press("ctrl+t")
        await pilot.press("ctrl+f")
        await pilot.pause()
        assert screen.maximized is reasoning
        await pilot.press("ctrl+f")
        assert screen.maximized is None


@pytest.mark.parametrize(("size", "stacked"), [((80, 24), True), ((99, 30), True), ((100, 30), False)])
async def test_panes_stack_below_100_columns(size: tuple[int, int], stacked: bool) -> None:
    app = make_app()
    async with app.run_test(size=size) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hi")
        await wait_idle(pilot)
        reasoning, answer = screen.turn_view.pane("reasoning").region, screen.turn_view.pane("answer").region
        if stacked:
            assert reasoning.x == answer.x and reasoning.bottom <= answer.y
        else:
            assert reasoning.y == answer.y and reasoning.right <= answer.x
        assert reasoning.height >= 3 and answer.height >= 3  # text still has room at 80x24
        assert screen.composer.region.height >= 3


async def test_copy_the_last_answer_and_reasoning_wrapped_for_tmux(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    monkeypatch.setenv("TMUX", "/tmp/tmux-1/default,1,0")
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        written: list[str] = []
        monkeypatch.setattr(app._driver, "write", written.append)
        screen = chat(app)
        await pilot.press("f3")
        assert app.clipboard == ""  # nothing to copy yet
        await wait_ready(pilot)
        await send(pilot, "hi")
        await wait_idle(pilot)
        await pilot.press("f3")
        assert app.clipboard == "You said: **hi**"
        payload = base64.b64encode(b"You said: **hi**").decode()
        assert f"\x1b]52;c;{payload}\x07" in written
        assert f"\x1bPtmux;\x1b\x1b]52;c;{payload}\x07\x1b\\" in written
        await pilot.press("f4")
        assert app.clipboard == screen.conversation.turns[0].reasoning


async def test_new_conversation_keeps_the_system_prompt() -> None:
    app = make_app(system_prompt="Answer in French")
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hi")
        await wait_idle(pilot)
        old = screen.conversation
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen.conversation is not old and screen.conversation.turns == []
        assert screen.conversation.system_prompt == "Answer in French"
        assert screen.turn_view.has_class("-empty") and screen.meter.usage.total == 0


async def test_continue_shows_the_saved_turns(store: Store) -> None:
    backend = ScriptedBackend()
    conversation = Conversation(system_prompt="S")
    from reasonchat.session import ChatSession

    session = ChatSession(backend, conversation, store=store)
    for text in ("one", "two"):
        session.ask(text)
    app = make_app(backend, store=store, conversation=store.get(conversation.id))
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_for(pilot, lambda: screen.query(TranscriptTurn))
        assert [t.turn.user for t in screen.query(TranscriptTurn)] == ["one"]
        assert screen.turn_view.pane("answer").text == "You said: **two**"
        stats = conversation.turns[1].reasoning_stats
        assert screen.meter.usage.prompt == stats.prompt_tokens
        await wait_ready(pilot)
        await send(pilot, "three")
        await wait_idle(pilot)
    assert [t.user for t in store.get(conversation.id).turns] == ["one", "two", "three"]


async def test_regenerate_runs_the_last_turn_again() -> None:
    answers = iter(["first answer", "second answer"])

    def script(request):
        return echo_script(request) if request.stage == "reasoning" else next(answers)

    app = make_app(ScriptedBackend(script))
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await pilot.press("ctrl+r")
        assert any("Nothing to regenerate" in n.message for n in app._notifications)
        await send(pilot, "hi")
        await wait_idle(pilot)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen.turn_view.pane("answer").text == "second answer")
        await wait_idle(pilot)
        assert len(screen.conversation.turns) == 1


async def test_settings_dialog_changes_the_next_generation() -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await pilot.press("ctrl+g")
        assert isinstance(app.screen, SettingsDialog)
        app.screen.query_one("#max-new-tokens").value = "0"
        await pilot.press("enter")
        assert isinstance(app.screen, SettingsDialog)  # refused, with the reason shown
        assert "at least 1" in str(app.screen.query_one("#settings-error").render())
        app.screen.query_one("#max-new-tokens").value = "3"
        app.screen.query_one("#temperature").value = "0"
        await pilot.press("enter")
        assert not isinstance(app.screen, SettingsDialog)
        assert (screen.session.settings.max_new_tokens, screen.session.settings.temperature) == (3, 0.0)
        await send(pilot, "hello there friend")
        await wait_idle(pilot)
        stats = screen.conversation.turns[0].reasoning_stats
        assert (stats.new_tokens, stats.stop_reason) == (3, "budget")
        assert "token limit" in screen.turn_view.pane("reasoning").border_subtitle


async def test_command_palette_lists_the_chat_commands() -> None:
    from textual.command import CommandList

    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        for query, title in [("regen", "Regenerate last turn"), ("copy ans", "Copy last answer")]:
            await pilot.press("ctrl+p", *query)
            commands = app.screen.query_one(CommandList)
            await wait_for(pilot, lambda: commands.option_count > 0)
            prompts = [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]
            assert any(title in p for p in prompts), prompts
            await pilot.press("escape")
        await pilot.press("ctrl+p", *"toggle reasoning")
        await wait_for(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert chat(app).turn_view.reasoning_collapsed


async def test_every_binding_has_an_id() -> None:
    from reasonchat.tui.screens.chat import ChatScreen
    from reasonchat.tui.widgets.composer import Composer

    owners = (
        ChatScreen, Composer, ReasoningFold, EarlierTurns, OverflowDialog, ErrorDialog, SettingsDialog,
        HistoryScreen, ReplayScreen, ConfirmDialog, RenameDialog, ExportDialog,
    )  # fmt: skip
    for owner in owners:
        assert all(binding.id for binding in owner.BINDINGS), owner


class EstimatingBackend(ScriptedBackend):
    """Counts as a server without /tokenize does: guessed from the text's length."""

    counts_are_estimates = True


async def test_the_meter_marks_estimated_counts_as_approximate() -> None:
    for backend, approximate in [(EstimatingBackend(), True), (ScriptedBackend(), False)]:
        app = make_app(backend)
        async with app.run_test(size=WIDE) as pilot:
            screen = chat(app)
            await wait_ready(pilot)
            await send(pilot, "hello there")
            await wait_idle(pilot)
            text = str(screen.meter.render())
            assert text.startswith("~") is approximate, text
            assert ("(~" in text) is approximate, text


async def test_a_message_sent_right_after_switching_keeps_every_earlier_turn_in_the_transcript(
    store: Store,
) -> None:
    """The transcript of a conversation switched to is drawn after the next frame; a message sent
    before that (the overflow dialog's "drop oldest" does it at once) must not lose the turn it
    moved out of the panes."""
    saved = Conversation()
    for i in range(3):
        turn = saved.add_turn(f"q{i}")
        turn.reasoning, turn.answer = "r", f"a{i}"
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await screen._switch_to(saved)
        await screen.send("next")
        await wait_idle(pilot)
        await pilot.pause(0.1)
        shown = [t.turn.user for t in screen.query(TranscriptTurn)]
        assert shown == ["q0", "q1", "q2"]
        assert screen.turn_view.turn is saved.turns[-1] and saved.turns[-1].user == "next"
