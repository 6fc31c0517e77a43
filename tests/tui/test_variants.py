"""Versions of a turn in the app: regenerate, re-answer and edit add versions; alt+arrows move between
them (for the last turn, and for a transcript turn that has the focus); f10 marks; f12 compares; the
replay compares too. Scripted backend through a Pilot, and one flow on the shipped demo model."""

from __future__ import annotations

import pytest
from textual.widgets import TextArea

from reasonchat import demo_model
from reasonchat.conversation import Conversation
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.session import ChatSession
from reasonchat.store import Store
from reasonchat.tui.dialogs.edit_reasoning import EditReasoningDialog
from reasonchat.tui.replay_app import ReplayApp
from reasonchat.tui.screens.compare import CompareScreen
from reasonchat.tui.widgets.transcript import ReasoningFold, TranscriptTurn
from tests.test_variants import counting_script
from tests.tui.helpers import SMALL, WIDE, chat, chat_args, editor_open, make_app, send, wait_for, wait_idle, wait_ready


def titles(screen) -> tuple[str, str]:
    view = screen.turn_view
    return str(view.pane("reasoning").border_title), str(view.pane("answer").border_title)


async def reanswer_unchanged(pilot, app) -> None:
    """f2, then save the reasoning as it is: another answer from the same reasoning."""
    await pilot.press("f2")
    await wait_for(pilot, lambda: editor_open(app))
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: not isinstance(app.screen, EditReasoningDialog))
    await wait_idle(pilot)


async def test_regenerate_and_reanswer_add_versions_the_keys_move_between(store: Store) -> None:
    backend = ScriptedBackend(counting_script())
    app = make_app(backend, store=store)
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "q")
        await wait_idle(pilot)
        assert titles(screen) == ("Reasoning", "Answer")  # one version: nothing to count
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        assert titles(screen) == ("Reasoning 2/2", "Answer")
        await reanswer_unchanged(pilot, app)
        assert titles(screen) == ("Reasoning 2/2", "Answer 2/2")
        turn = screen.conversation.turns[0]
        assert turn.position == (1, 1) and turn.answer == "answer number 3"
        assert screen.turn_view.pane("answer").text == "answer number 3"

        await pilot.press("alt+up")  # the reasoning's first answer
        assert (turn.position, screen.turn_view.pane("answer").text) == ((1, 0), "answer number 2")
        assert titles(screen) == ("Reasoning 2/2", "Answer 1/2")
        await pilot.press("alt+left")  # the first reasoning, with its one answer
        assert turn.position == (0, 0) and titles(screen) == ("Reasoning 1/2", "Answer")
        assert screen.turn_view.pane("reasoning").text == "reasoning number 1"
        assert screen.turn_view.pane("answer").text == "answer number 1"
        await pilot.press("alt+right")  # back: the second, at the answer it had
        assert turn.position == (1, 0)
        # The next message's prompt is the active path.
        await send(pilot, "next")
        await wait_idle(pilot)
        assert "answer number 2" in backend.requests[-2].prompt
        assert "answer number 3" not in backend.requests[-2].prompt
    saved = store.get(screen.conversation.id).turns[0]
    assert (saved.position, saved.variant_count) == ((1, 0), 3)


async def test_one_version_says_how_to_make_another() -> None:
    app = make_app(ScriptedBackend(counting_script()))
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "q")
        await wait_idle(pilot)
        for key in ("alt+left", "alt+down", "f12"):
            await pilot.press(key)
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any(m.startswith("This turn has one reasoning") for m in messages)
        assert any(m.startswith("This reasoning has one answer") for m in messages)
        assert any(m.startswith("This turn has one version") for m in messages)
        assert not isinstance(app.screen, CompareScreen)


async def test_f10_marks_the_version_and_the_mark_is_saved(store: Store) -> None:
    app = make_app(ScriptedBackend(counting_script()), store=store)
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "q")
        await wait_idle(pilot)
        await pilot.press("f10")
        assert titles(screen)[1] == "Answer · ✓ marked good"
        assert store.get(screen.conversation.id).turns[0].mark == "good"
        await pilot.press("f10")
        assert titles(screen)[1] == "Answer · ✗ marked bad"
        await pilot.press("f10")
        assert titles(screen)[1] == "Answer"
    assert store.get(screen.conversation.id).turns[0].mark is None


async def test_f12_compares_the_version_with_the_one_before() -> None:
    app = make_app(ScriptedBackend(counting_script()))
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "q")
        await wait_idle(pilot)
        await pilot.press("ctrl+r")
        await wait_idle(pilot)
        await pilot.press("f12")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        compare = app.screen
        assert (compare.sides["a"].reasoning, compare.sides["b"].reasoning) == ("reasoning number 1", "reasoning number 2")
        assert compare.sides["b"].label == "reasoning 2/2 · answer 1/1 (active)"
        assert compare.sides["a"].note == "reasoning by the model"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)


async def test_the_keys_act_on_a_focused_transcript_turn(store: Store) -> None:
    backend = ScriptedBackend(counting_script())
    conversation = Conversation()
    session = ChatSession(backend, conversation)
    session.ask("first")
    session.retry()
    session.ask("second")
    store.save(conversation)
    app = make_app(backend, store=store, conversation=store.get(conversation.id))
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await wait_for(pilot, lambda: screen.query(ReasoningFold))
        fold = screen.query_one(ReasoningFold)
        assert str(fold.render()).startswith("▶ Reasoning 2/2")
        fold.focus()
        await wait_for(pilot, lambda: fold.has_focus)
        await pilot.press("alt+left")
        earlier = screen.conversation.turns[0]
        assert earlier.position == (0, 0)
        await wait_for(pilot, lambda: str(screen.query_one(ReasoningFold).render()).startswith("▶ Reasoning 1/2"))
        shown = screen.query_one(TranscriptTurn)
        assert shown.turn is earlier and screen.query_one(ReasoningFold).has_focus
        assert screen.conversation.turns[1].position == (0, 0)  # the last turn was not touched
        await pilot.press("f12")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert app.screen.sides["b"].reasoning == "reasoning number 1"
    assert store.get(conversation.id).turns[0].position == (0, 0)


async def test_the_replay_compares_the_shown_turn() -> None:
    conversation = Conversation(title="Versions")
    session = ChatSession(ScriptedBackend(counting_script()), conversation)
    session.ask("q")
    session.reanswer("my own steps")
    async with ReplayApp(conversation, 0.0, "versions").run_test(size=WIDE) as pilot:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.finished)
        await pilot.press("f12")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen))
        assert (pilot.app.screen.sides["a"].reasoning, pilot.app.screen.sides["b"].reasoning) == ("reasoning number 1", "my own steps")
        assert pilot.app.screen.sides["b"].note == "reasoning edited by the user"


@pytest.mark.skipif(not demo_model.is_available(), reason="the demo model's weights are not installed")
async def test_on_the_demo_model_edit_switch_compare_mark_and_think_again() -> None:
    from reasonchat.cli.app_commands import build_app

    # Sampled (seeded), so that thinking again gives other reasonings.
    app = build_app(chat_args("--model", str(demo_model.model_dir()), "--threads", "1", "--temperature", "0.7", "--seed", "1"))
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot, timeout=120)
        await send(pilot, "What is 482 + 1937?")
        await wait_idle(pilot, timeout=120)
        model_turn = screen.conversation.turns[0]
        model_reasoning, model_answer = model_turn.reasoning, model_turn.answer
        await pilot.press("f2")
        await wait_for(pilot, lambda: editor_open(app))
        app.screen.query_one(TextArea).load_text(model_reasoning + "\nresult: 3000")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, EditReasoningDialog))
        await wait_idle(pilot, timeout=120)
        turn = screen.conversation.turns[0]
        assert turn.position == (1, 0) and turn.reasoning_source == "edited"
        assert titles(screen)[0] == "Reasoning 2/2 · edited by you"
        await pilot.press("alt+left")
        assert (turn.reasoning, turn.answer) == (model_reasoning, model_answer)
        assert screen.turn_view.pane("answer").text == model_answer
        await pilot.press("f12")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert app.screen.sides["b"].reasoning == model_reasoning  # the active one, the model's own
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        await pilot.press("f10")
        assert turn.mark == "good" and titles(screen)[1] == "Answer · ✓ marked good"
        await screen.run_action("think_times(2)")
        await wait_idle(pilot, timeout=120)
        assert len(turn.variants) == 4 and turn.active == 3
        assert all(v.answer.answer for v in turn.variants)
        assert any(n.message.startswith("Vote: ") for n in app._notifications)
        assert turn.variants[0].answer.mark == "good"  # the mark stays on its version


async def test_think_times_samples_versions_and_says_how_many_agree(store: Store) -> None:
    from reasonchat.settings import GenerationSettings

    answers = iter(["= 5", "so 4", "= 5", "5", "= 5"])
    backend = ScriptedBackend(lambda r: "thinking" if r.stage == "reasoning" else next(answers))
    app = make_app(backend, store=store, settings=GenerationSettings(temperature=0.7))
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "q")
        await wait_idle(pilot)
        await screen.run_action("think_times(4)")  # what the palette's "Think 4 times" runs
        await wait_idle(pilot)
        turn = screen.conversation.turns[0]
        assert len(turn.variants) == 5 and turn.active == 4
        assert titles(screen)[0] == "Reasoning 5/5"
        assert any(n.message == "Vote: 4 of 5 agree on 5 (80%)" for n in app._notifications)
    assert store.get(screen.conversation.id).turns[0].variant_count == 5


async def test_think_times_needs_a_temperature() -> None:
    app = make_app(ScriptedBackend())
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "q")
        await wait_idle(pilot)
        await screen.run_action("think_times(4)")
        await pilot.pause()
        assert any("temperature above 0" in n.message for n in app._notifications)
        assert len(screen.conversation.turns[0].variants) == 1 and not screen.busy


async def test_the_history_counts_the_versions(store: Store) -> None:
    from tests.tui.test_history import cells, detail, open_history, select

    conversation = Conversation(title="Versions")
    session = ChatSession(ScriptedBackend(counting_script()), conversation, store=store)
    session.ask("q")
    session.retry()
    session.reanswer()
    plain = Conversation(title="Plain")
    ChatSession(ScriptedBackend(), plain, store=store).ask("hi")
    app = make_app(ScriptedBackend(), store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        screen = await open_history(pilot)
        assert cells(screen, conversation.id)[2] == "1+2"  # one turn, two more versions of it
        assert cells(screen, plain.id)[2].strip() == "1"
        await select(pilot, screen, conversation.id)
        assert "3 versions of its turns" in detail(screen)


async def test_editing_an_earlier_question_forks_the_conversation(store: Store) -> None:
    backend = ScriptedBackend(counting_script())
    conversation = Conversation(title="Original")
    session = ChatSession(backend, conversation, store=store)
    for question in ("one", "two", "three"):
        session.ask(question)
    app = make_app(backend, store=store, conversation=store.get(conversation.id))
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await wait_for(pilot, lambda: len(screen.query(TranscriptTurn)) == 2)
        fold = screen.query(TranscriptTurn)[1].query_one(ReasoningFold)  # the turn "two"
        fold.focus()
        await wait_for(pilot, lambda: fold.has_focus)
        await screen.run_action("edit_question")
        await wait_for(pilot, lambda: editor_open(app))
        assert app.focused.text == "two"
        app.focused.load_text("two, but different")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.conversation.id != conversation.id and screen.conversation.turns[-1:]
                       and screen.conversation.turns[-1].complete)  # fmt: skip
        await wait_idle(pilot)
        fork = screen.conversation
        assert [t.user for t in fork.turns] == ["one", "two, but different"]
        assert fork.title == "Original (fork)"
        assert fork.turns[0].answer == conversation.turns[0].answer
    assert [t.user for t in store.get(conversation.id).turns] == ["one", "two", "three"]  # the old branch
    assert [t.user for t in store.get(fork.id).turns] == ["one", "two, but different"]
