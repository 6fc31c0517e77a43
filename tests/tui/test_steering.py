"""Steering the stages from the app: answer now, the reasoning budget presets, think more, editing
the reasoning, and the Reasoning pane's title saying where the reasoning came from (scripted
backend, driven by a Pilot)."""

from __future__ import annotations

from dataclasses import replace

from textual.widgets import TextArea

from reasonchat.conversation import Conversation, StageStats
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.settings import GenerationSettings
from reasonchat.store import Store
from reasonchat.tui.dialogs.edit_reasoning import EditReasoningDialog
from reasonchat.tui.screens.chat import budget_label, next_budget
from reasonchat.tui.widgets.stage_pane import reasoning_title
from reasonchat.tui.widgets.status_bar import StatusBar
from tests.tui.helpers import SMALL, PausingBackend, chat, editor_open, make_app, send, wait_for, wait_idle, wait_ready


def footer_actions(screen) -> set[str]:
    return {binding.action for (_, binding, enabled, _) in screen.active_bindings.values() if enabled}


async def test_answer_now_keeps_the_partial_reasoning_and_answers_from_it(store: Store) -> None:
    backend = PausingBackend(pause_after=3)
    app = make_app(backend, store=store)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        assert "answer_now" not in footer_actions(screen)  # nothing streams yet
        await send(pilot, "hello there")
        await wait_for(pilot, backend.paused.is_set)
        await wait_for(pilot, lambda: screen.reasoning_streaming)
        assert "answer_now" in footer_actions(screen)
        await pilot.press("f5")
        await wait_idle(pilot)
        turn = screen.conversation.turns[0]
        assert turn.reasoning == "The user asked: "  # the three chunks streamed before the pause
        assert turn.reasoning_stats.stop_reason == "answer_now"
        assert (turn.answer, turn.answer_stats.stop_reason) == ("You said: **hello there**", "eos")
        # The answer's prompt ends with the partial reasoning, closed.
        assert backend.requests[-1].prompt.endswith(
            "The user asked: <|im_end|>\n<|im_start|>assistant\n"
        )
        view = screen.turn_view
        assert view.pane("reasoning").text == "The user asked: "
        assert view.pane("reasoning").border_title == "Reasoning · answered early"
        assert "answered early" in view.pane("reasoning").border_subtitle
        assert view.pane("answer").text == "You said: **hello there**"
        assert not screen.reasoning_streaming and "answer_now" not in footer_actions(screen)
    saved = store.get(screen.conversation.id).turns[0]
    assert (saved.reasoning, saved.reasoning_stats.stop_reason) == ("The user asked: ", "answer_now")
    assert saved.answer == "You said: **hello there**"


async def test_answer_now_from_the_palette_action_and_escape_still_cancels_both() -> None:
    backend = PausingBackend(pause_after=2)
    app = make_app(backend)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "first")
        await wait_for(pilot, backend.paused.is_set)
        await wait_for(pilot, lambda: screen.reasoning_streaming)
        await screen.run_action("answer_now")  # what the palette's "Answer now" runs
        await wait_idle(pilot)
        assert screen.conversation.turns[0].reasoning_stats.stop_reason == "answer_now"
        assert screen.conversation.turns[0].answer == "You said: **first**"
        backend.paused.clear()
        await send(pilot, "second")
        await wait_for(pilot, backend.paused.is_set)
        await pilot.press("escape")
        await wait_idle(pilot)
        turn = screen.conversation.turns[1]
        assert turn.reasoning_stats.stop_reason == "cancelled" and turn.answer is None
        assert screen.turn_view.pane("reasoning").border_title == "Reasoning"


async def test_the_palette_lists_answer_now_and_the_budget() -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await wait_ready(pilot)
        titles = {command.title for command in app.get_system_commands(chat(app))}
        assert {"Answer now", "Cycle reasoning budget"} <= titles


def test_budget_presets_cycle_off_64_256_1024_max() -> None:
    seen, tokens = [], 3000  # the default: max_new_tokens
    for _ in range(6):
        tokens = next_budget(tokens, 32000)
        seen.append(tokens)
    assert seen == [32000, 0, 64, 256, 1024, 32000]
    assert [budget_label(t, 32000) for t in (None, 0, 64, 1024, 32000)] == [
        "",
        "no reasoning",
        "reasoning ≤ 64",
        "reasoning ≤ 1,024",
        "reasoning ≤ max",
    ]


async def test_the_budget_key_changes_the_settings_and_the_status_bar() -> None:
    backend = PausingBackend(pause_after=1000)  # never pauses: the scripts are shorter
    app = make_app(backend)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        shown = screen.query_one("#reasoning-budget")
        assert not shown.display  # the default budget: nothing to say
        await pilot.press("f9")  # the default 3,000 → the most
        assert screen.settings.reasoning_tokens == screen.session.settings.reasoning_tokens == 32000
        assert screen.query_one(StatusBar).budget == "reasoning ≤ max" and shown.display
        await pilot.press("f9")
        assert screen.session.settings.reasoning_tokens == 0
        await pilot.pause()
        assert "no reasoning" in str(shown.render())
        await send(pilot, "hi")
        await wait_idle(pilot)
        turn = screen.conversation.turns[0]
        assert (turn.reasoning, turn.reasoning_source, turn.answer) == ("", "none", "You said: **hi**")
        assert [r.stage for r in backend.requests] == ["answer"]
        assert screen.turn_view.pane("reasoning").border_title == "No reasoning"
        await pilot.press("f9", "f9")
        assert screen.session.settings.reasoning_tokens == 256
        await send(pilot, "one two three four five six seven")
        await wait_idle(pilot)
        assert screen.conversation.turns[1].reasoning_stats.stop_reason == "eos"
        await pilot.press("f9", "f9", "f9")  # 1,024, the most, off
        assert screen.session.settings.reasoning_tokens == 0


async def test_a_budget_cut_reasoning_says_so_in_its_title() -> None:
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        screen.session.settings = replace(screen.session.settings, reasoning_tokens=3)
        await send(pilot, "hello there")
        await wait_idle(pilot)
        turn = screen.conversation.turns[0]
        assert turn.reasoning_stats.stop_reason == "budget" and turn.answer
        assert screen.turn_view.pane("reasoning").border_title == "Reasoning · cut at 3 tokens (budget)"
        await pilot.press("ctrl+t")
        assert screen.turn_view.pane("reasoning").border_title == (
            "Reasoning · cut at 3 tokens (budget) (hidden · ctrl+t shows it)"
        )


def test_reasoning_titles_for_each_provenance() -> None:
    cut = StageStats(new_tokens=256, stop_reason="budget")
    assert reasoning_title("model", cut) == "Reasoning · cut at 256 tokens (budget)"
    assert reasoning_title("model", StageStats(stop_reason="max_new_tokens", new_tokens=9)).endswith("9 tokens (budget)")
    assert reasoning_title("model", StageStats(stop_reason="answer_now")) == "Reasoning · answered early"
    assert reasoning_title("edited", cut) == "Reasoning · edited by you"
    assert reasoning_title("user", None) == "Reasoning · written by you"
    assert reasoning_title("none", None) == "No reasoning"
    assert reasoning_title("model", StageStats(stop_reason="eos")) == "Reasoning"


async def test_a_saved_turn_shows_its_provenance(store: Store) -> None:
    conversation = Conversation()
    turn = conversation.add_turn("q")
    turn.reasoning, turn.reasoning_source, turn.answer = "mine", "user", "a"
    store.save(conversation)
    app = make_app(store=store, conversation=store.get(conversation.id))
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_for(pilot, lambda: screen.turn_view.pane("reasoning").text == "mine")
        assert screen.turn_view.pane("reasoning").border_title == "Reasoning · written by you"


async def test_think_more_goes_on_from_the_cut_reasoning_and_answers_again(store: Store) -> None:
    backend = ScriptedBackend()
    app = make_app(backend, store=store, settings=GenerationSettings(reasoning_tokens=3))
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hello there")
        await wait_idle(pilot)
        first = screen.conversation.turns[0].reasoning
        assert screen.conversation.turns[0].reasoning_stats.stop_reason == "budget"
        await pilot.press("f8")
        await wait_idle(pilot)
        turn = screen.conversation.turns[0]
        assert turn.original_reasoning == first and len(turn.reasoning) > len(first)
        assert turn.reasoning.startswith(first)
        # The continuation's prompt is the reasoning so far, left open.
        assert backend.requests[-2].stage == "reasoning"
        assert backend.requests[-2].prompt.endswith(f"<|reasoning|>\n{first}")
        view = screen.turn_view
        assert view.pane("reasoning").text == turn.reasoning  # the old text, then the new
        assert view.pane("answer").text == turn.answer == "You said: **hello there**"
    saved = store.get(screen.conversation.id).turns[0]
    assert (saved.reasoning, saved.original_reasoning) == (turn.reasoning, first)


async def test_think_more_with_the_budget_off_is_refused_with_a_hint() -> None:
    backend = ScriptedBackend()
    app = make_app(backend, settings=GenerationSettings(reasoning_tokens=0))
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await screen.run_action("think_more")
        await pilot.pause()
        assert any("first" in n.message for n in app._notifications)
        await send(pilot, "hi")
        await wait_idle(pilot)
        await pilot.press("f8")
        await pilot.pause()
        assert any("f9" in n.message for n in app._notifications)
        assert len(backend.requests) == 1 and not screen.busy


async def test_edit_reasoning_saves_and_regenerates_only_the_answer(store: Store) -> None:
    backend = ScriptedBackend(lambda request: "Thinking." if request.stage == "reasoning" else request.prompt[-60:])
    app = make_app(backend, store=store)


    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "sum")
        await wait_idle(pilot)
        first_answer = screen.conversation.turns[0].answer
        await pilot.press("f2")
        await wait_for(pilot, lambda: editor_open(app))
        editor = app.screen.query_one(TextArea)
        assert editor.text == "Thinking."
        editor.load_text("It is 3000.")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, EditReasoningDialog))
        await wait_idle(pilot)
        turn = screen.conversation.turns[0]
        assert [r.stage for r in backend.requests] == ["reasoning", "answer", "answer"]
        assert backend.requests[-1].prompt.endswith("It is 3000.<|im_end|>\n<|im_start|>assistant\n")
        assert (turn.reasoning, turn.reasoning_source, turn.original_reasoning) == ("It is 3000.", "edited", "Thinking.")
        assert turn.original_answer == first_answer
        view = screen.turn_view
        assert view.pane("reasoning").text == "It is 3000."
        assert view.pane("reasoning").border_title == "Reasoning 2/2 · edited by you"
        assert turn.answer != first_answer and "3000" in turn.answer
    saved = store.get(screen.conversation.id).turns[0]
    assert (saved.reasoning, saved.reasoning_source) == ("It is 3000.", "edited")


async def test_escape_discards_an_edited_reasoning() -> None:
    backend = ScriptedBackend()
    app = make_app(backend)


    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "hi")
        await wait_idle(pilot)
        before = screen.conversation.turns[0].reasoning
        await screen.run_action("edit_reasoning")  # what the palette's "Edit reasoning" runs
        await wait_for(pilot, lambda: editor_open(app))
        app.screen.query_one(TextArea).load_text("changed")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, EditReasoningDialog))
        await pilot.pause()
        assert screen.conversation.turns[0].reasoning == before
        assert screen.conversation.turns[0].reasoning_source == "model"
        assert len(backend.requests) == 2 and not screen.busy


async def test_the_compose_mode_sends_a_written_reasoning_or_none(store: Store) -> None:
    backend = ScriptedBackend()
    app = make_app(backend, store=store)


    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await pilot.press("ctrl+l")
        assert screen.compose_mode == "write" and "you write" in screen.composer.border_title
        await send(pilot, "what is 2 + 2?")
        await wait_for(pilot, lambda: editor_open(app))
        app.screen.query_one(TextArea).load_text("2 + 2 = 4.")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, EditReasoningDialog))
        await wait_idle(pilot)
        turn = screen.conversation.turns[0]
        assert (turn.reasoning, turn.reasoning_source, turn.reasoning_stats) == ("2 + 2 = 4.", "user", None)
        assert [r.stage for r in backend.requests] == ["answer"]
        assert backend.requests[0].prompt.endswith("2 + 2 = 4.<|im_end|>\n<|im_start|>assistant\n")
        view = screen.turn_view
        assert view.pane("reasoning").text == "2 + 2 = 4."
        assert view.pane("reasoning").border_title == "Reasoning · written by you"
        assert view.pane("answer").text == "You said: **what is 2 + 2?**"
        await pilot.press("ctrl+l")
        assert screen.compose_mode == "skip" and "no reasoning" in screen.composer.border_title
        await send(pilot, "and 3 + 3?")
        await wait_idle(pilot)
        turn = screen.conversation.turns[1]
        assert (turn.reasoning, turn.reasoning_source) == ("", "none")
        assert backend.requests[-1].prompt.endswith(
            "and 3 + 3?<|im_end|>\n<|im_start|><|reasoning|>\n<|im_end|>\n<|im_start|>assistant\n"
        )
        assert view.pane("reasoning").border_title == "No reasoning"
        await pilot.press("ctrl+l")
        assert screen.compose_mode == "ask" and screen.composer.border_title == ""
    saved = store.get(screen.conversation.id).turns
    assert [(t.reasoning_source, t.reasoning) for t in saved] == [("user", "2 + 2 = 4."), ("none", "")]


async def test_escape_in_the_written_reasoning_keeps_the_message_unsent() -> None:
    backend = ScriptedBackend()
    app = make_app(backend)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await screen.run_action("cycle_compose_mode")  # what the palette entry runs
        await send(pilot, "question")
        await wait_for(pilot, lambda: editor_open(app))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        await pilot.pause()
        assert screen.composer.text == "question" and not screen.conversation.turns
        assert backend.requests == []


def _overflowing_answer_app(store: Store):
    # The echo script repeats the question in the reasoning until the context is full: the answer's
    # prompt then has no room (as in test_flows' overflow tests).
    return make_app(store=store, context_limit=40)


async def _send_until_the_answer_overflows(pilot, app) -> None:
    from reasonchat.tui.dialogs.overflow import OverflowDialog

    await send(pilot, "a b c d e f g h i j k l m n")
    await wait_for(pilot, lambda: isinstance(app.screen, OverflowDialog))
    await pilot.press("escape")
    await wait_for(pilot, lambda: not isinstance(app.screen, OverflowDialog))


async def test_think_more_without_room_keeps_the_turn_and_says_why(store: Store) -> None:
    from reasonchat.tui.dialogs.overflow import OverflowDialog

    app = _overflowing_answer_app(store)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await _send_until_the_answer_overflows(pilot, app)
        before = screen.conversation.turns[0].to_dict()
        await pilot.press("f8")
        await wait_idle(pilot)
        # Not the overflow dialog: starting over would resend the question and drop the reasoning.
        assert not isinstance(app.screen, OverflowDialog)
        assert any(n.message.startswith("No room to think more:") for n in app._notifications)
        turn = screen.conversation.turns[0]
        assert turn.to_dict() == before and turn.original_reasoning is None
        assert screen.turn_view.pane("reasoning").text == turn.reasoning
    assert store.get(screen.conversation.id).turns[0].to_dict() == before


async def test_an_edited_reasoning_without_room_to_answer_is_kept(store: Store) -> None:
    from reasonchat.tui.dialogs.overflow import OverflowDialog

    app = _overflowing_answer_app(store)
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await _send_until_the_answer_overflows(pilot, app)
        model_reasoning = screen.conversation.turns[0].reasoning
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, EditReasoningDialog))
        app.screen.query_one(TextArea).load_text(model_reasoning + " and more")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, EditReasoningDialog))
        await wait_idle(pilot)
        assert not isinstance(app.screen, OverflowDialog)
        assert any(n.message.startswith("No room to answer from the edited reasoning:") for n in app._notifications)
        turn = screen.conversation.turns[0]
        assert (turn.reasoning, turn.reasoning_source) == (model_reasoning + " and more", "edited")
        assert turn.original_reasoning == model_reasoning
        assert screen.turn_view.pane("reasoning").text == turn.reasoning
    saved = store.get(screen.conversation.id).turns[0]
    assert (saved.reasoning, saved.reasoning_source) == (model_reasoning + " and more", "edited")


async def test_a_written_reasoning_goes_with_its_message_into_a_new_conversation(store: Store) -> None:
    from reasonchat.conversation import Turn
    from reasonchat.tui.dialogs.overflow import OverflowDialog

    backend = ScriptedBackend(lambda request: "ok" if request.stage == "reasoning" else "fine")
    message, mine = " ".join(["word"] * 20), "my own steps"
    # A limit the message overflows after a first turn, but fits alone with its reasoning (and room).
    alone = Conversation(turns=[Turn(user=message, reasoning=mine)])
    limit = backend.count_tokens(alone.stage_prompt(0, "answer")) + 4
    app = make_app(backend, store=store, context_limit=limit)


    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, " ".join(["filler"] * 8))
        await wait_idle(pilot)
        first = screen.conversation.id
        await pilot.press("ctrl+l")
        await send(pilot, message)
        await wait_for(pilot, lambda: editor_open(app))
        app.screen.query_one(TextArea).load_text(mine)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, OverflowDialog))
        await pilot.press("n")
        # The switch comes before the send: wait for the new conversation's answer, then idle.
        await wait_for(pilot, lambda: screen.conversation.id != first and screen.conversation.turns[-1:]
                       and screen.conversation.turns[0].complete)
        await wait_idle(pilot)
        turn = screen.conversation.turns[0]
        assert (turn.user, turn.reasoning, turn.reasoning_source) == (message, mine, "user")
        assert turn.answer_stats.stop_reason == "eos"
        assert [r.stage for r in backend.requests[-1:]] == ["answer"]
    assert store.get(screen.conversation.id).turns[0].reasoning_source == "user"
