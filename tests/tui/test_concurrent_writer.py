"""Another process writes to the conversation open in the app (issue 12, item 4): the app's next send
shows and keeps the other's turn and adds its own after it; a turn the other saved while ours was
starting is kept too, and the user is told."""

from __future__ import annotations

import threading

from reasonchat.conversation import Conversation
from reasonchat.engine.protocol import StageRequest, StageStream
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.session import placed_after_notice
from reasonchat.store import Store
from reasonchat.tui.screens.chat import CHANGED_ELSEWHERE
from reasonchat.tui.widgets.transcript import Transcript
from tests.tui.helpers import WIDE, chat, make_app, send, wait_for, wait_idle, wait_ready


def saved(store: Store) -> Conversation:
    conv = Conversation(title="shared")
    turn = conv.add_turn("first")
    turn.reasoning, turn.answer = "first reasoning", "first answer"
    store.save(conv)
    return store.get(conv.id)


def append_elsewhere(store: Store, conv_id: str, user: str) -> None:
    """What another ``reasonchat ask --continue`` does: its own connection, its own copy."""
    with Store(store.path) as other:
        conv = other.get(conv_id)
        turn = conv.add_turn(user)
        turn.reasoning, turn.answer = "elsewhere reasoning", "elsewhere answer"
        other.save_turn(conv, len(conv.turns) - 1)


def notices(app: object) -> list[str]:
    return [n.message for n in app._notifications]  # type: ignore[attr-defined]


async def test_the_next_send_shows_the_other_writers_turn_and_goes_after_it(store: Store) -> None:
    conv = saved(store)
    backend = ScriptedBackend()
    app = make_app(backend, store=store, conversation=conv)
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        append_elsewhere(store, conv.id, "from elsewhere")

        await send(pilot, "from the app")
        await wait_idle(pilot)
        assert CHANGED_ELSEWHERE in notices(app)
        assert [t.user for t in screen.conversation.turns] == ["first", "from elsewhere", "from the app"]
        # The model saw the other's turn: the app reloaded before it sent.
        assert "elsewhere answer" in backend.requests[0].prompt
        await wait_for(pilot, lambda: len(screen.query_one(Transcript)._turns) == 2)
        assert [t.user for t in screen.query_one(Transcript)._turns] == ["first", "from elsewhere"]
        assert screen.turn_view.pane("answer").text == "You said: **from the app**"
    stored = store.get(conv.id)
    assert [(t.user, t.answer) for t in stored.turns] == [
        ("first", "first answer"),
        ("from elsewhere", "elsewhere answer"),
        ("from the app", "You said: **from the app**"),
    ]
    assert store.revision(conv.id) == screen.conversation.revision, "the app is in step again"


class HeldBackend(ScriptedBackend):
    """Holds the reasoning's start until told: another writer saves its turn in between."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.go = threading.Event()

    def stream(self, request: StageRequest) -> StageStream:
        if request.stage == "reasoning":
            self.started.set()
            self.go.wait(10)
        return super().stream(request)


async def test_a_turn_saved_elsewhere_while_ours_starts_is_kept_and_ours_goes_after_it(store: Store) -> None:
    conv = saved(store)
    backend = HeldBackend()
    app = make_app(backend, store=store, conversation=conv)
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "from the app")
        await wait_for(pilot, backend.started.is_set)
        append_elsewhere(store, conv.id, "from elsewhere")
        backend.go.set()
        await wait_idle(pilot)
        notice = placed_after_notice(1)
        await wait_for(pilot, lambda: any(notice[1:] in m for m in notices(app)))
        # The app shows the conversation as stored, the other's turn first.
        assert [t.user for t in screen.conversation.turns] == ["first", "from elsewhere", "from the app"]
        # Our turn was generated without it, as the notice says.
        assert "elsewhere" not in backend.requests[0].prompt
    stored = store.get(conv.id)
    assert [(t.user, t.answer) for t in stored.turns] == [
        ("first", "first answer"),
        ("from elsewhere", "elsewhere answer"),
        ("from the app", "You said: **from the app**"),
    ]


async def test_regenerate_after_another_writer_reloads_and_regenerates_nothing_unseen(store: Store) -> None:
    conv = saved(store)
    backend = ScriptedBackend()
    app = make_app(backend, store=store, conversation=conv)
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        append_elsewhere(store, conv.id, "from elsewhere")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(screen.conversation.turns) == 2)
        await wait_idle(pilot)
        assert any(m.startswith(CHANGED_ELSEWHERE) for m in notices(app))
        assert backend.requests == [], "the turn now last was never on the screen: not regenerated"
        assert screen.turn_view.pane("answer").text == "elsewhere answer"
    assert [t.answer for t in store.get(conv.id).turns] == ["first answer", "elsewhere answer"]
