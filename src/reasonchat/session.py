"""A conversation being had: the model's turn runner plus autosave, shared by ``ask`` and the app.

Autosave follows the stream: the user message is stored as soon as the backend has accepted the
reasoning prompt (within the budget), the reasoning when stage 1 ends, the answer when stage 2 ends,
and partial text on cancel or error. Each save is one transaction, so a kill -9 loses at most the
text still streaming.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from reasonchat import demo_model
from reasonchat.conversation import Conversation, Turn
from reasonchat.engine.protocol import Backend, ContextOverflow, GenerationError, GenerationSettings
from reasonchat.engine.turn import StageFinished, StageStarted, TurnEvent, TurnRunner
from reasonchat.store import Store
from reasonchat.template import DEFAULT_CONTEXT_LIMIT
from reasonchat.unicode_text import valid_text


def placed_after_notice(count: int) -> str:
    """What the user is told when their turn was stored after ``count`` turns another process added.

    Design (issue 12, item 4): both turns are kept in the one conversation, in the order they were
    first saved, rather than forking ours into a new conversation. The user asked to continue this
    conversation, and a fork would file their answer under an id they never asked for; the one thing
    that differs from a normal turn is that the model answered without the other turns, which this
    line says, and every later turn sees all of them.
    """
    turns = "1 turn" if count == 1 else f"{count} turns"
    them = "it" if count == 1 else "them"
    return (
        f"another reasonchat added {turns} to this conversation meanwhile;"
        f" yours was saved after {them} (its answer did not see {them})"
    )


class ChatSession:
    def __init__(
        self,
        backend: Backend,
        conversation: Conversation,
        *,
        store: Store | None = None,
        settings: GenerationSettings | None = None,
        context_limit: int = DEFAULT_CONTEXT_LIMIT,
    ) -> None:
        self.backend = backend
        self.conversation = conversation
        self.store = store
        self.runner = TurnRunner(backend, settings, context_limit)
        if not conversation.model:
            # The demo model is saved by name: its path is one install's, often a temporary one.
            conversation.model = valid_text(demo_model.label(backend.description))  # a server's name
        if conversation.system_prompt is not None:
            # What a user types (a flag, an environment variable, stdin) enters here for the CLI and
            # the app alike: a non-UTF-8 command line decodes to lone surrogates, which no save encodes.
            conversation.system_prompt = valid_text(conversation.system_prompt)
        self._lock = threading.Lock()
        self._busy = False
        # How many turns another process had added to the stored conversation before the last run's
        # turn was first saved (it went after them); 0 when no one else wrote.
        self.placed_after = 0

    @property
    def settings(self) -> GenerationSettings:
        return self.runner.settings

    @settings.setter
    def settings(self, value: GenerationSettings) -> None:
        self.runner.settings = value

    @property
    def context_limit(self) -> int:
        return self.runner.context_limit

    def next_prompt_tokens(self, user_text: str) -> int:
        """The size the reasoning prompt would have if ``user_text`` were sent now."""
        probe = Conversation(system_prompt=self.conversation.system_prompt)
        probe.turns = [*self.conversation.turns, Turn(user=user_text)]
        return self.backend.count_tokens(probe.stage_prompt(len(probe.turns) - 1, "reasoning"))

    def ask(self, user_text: str, on_event: Callable[[TurnEvent], None] | None = None) -> Turn:
        """Add a turn and generate it. ``ContextOverflow``: the conversation and store are untouched."""
        self.conversation.add_turn(valid_text(user_text))
        try:
            return self._run(on_event)
        except ContextOverflow as err:
            if err.stage == "reasoning":
                self.conversation.turns.pop()
            raise

    def retry(self, on_event: Callable[[TurnEvent], None] | None = None) -> Turn:
        """Generate the last turn again from scratch (regenerate, or retry after an error)."""
        turn = self.conversation.turns[-1]
        turn.reasoning = turn.answer = None
        turn.reasoning_stats = turn.answer_stats = None
        return self._run(on_event)

    @property
    def busy(self) -> bool:
        return self._busy

    def cancel(self) -> None:
        """Cancel the turn in progress; when idle, nothing (a stray Esc must not cancel the next turn)."""
        with self._lock:
            if self._busy:
                self.runner.cancel()

    def _run(self, on_event: Callable[[TurnEvent], None] | None) -> Turn:
        with self._lock:
            if self._busy:
                raise GenerationError("a turn is already being generated; wait for it or cancel it")
            self._busy = True
        try:
            return self._run_turn(on_event)
        finally:
            with self._lock:
                self._busy = False

    def _run_turn(self, on_event: Callable[[TurnEvent], None] | None) -> Turn:
        index = len(self.conversation.turns) - 1
        self.placed_after = 0

        def handle(event: TurnEvent) -> None:
            if isinstance(event, StageStarted | StageFinished):
                self._save(index)
            if on_event is not None:
                on_event(event)

        return self.runner.run(self.conversation, handle)

    def _save(self, index: int) -> None:
        if self.store is not None:
            # The in-memory conversation is left as the model saw it while the turn runs (the answer's
            # prompt must be the reasoning's plus the reasoning); the store places the turn after any
            # that another process added meanwhile, and says how many there were.
            placed = self.store.save_turn(self.conversation, index)
            self.placed_after = max(self.placed_after, placed)
