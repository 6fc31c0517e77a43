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
            conversation.model = demo_model.label(backend.description)
        self._lock = threading.Lock()
        self._busy = False

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
        self.conversation.add_turn(user_text)
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

        def handle(event: TurnEvent) -> None:
            if isinstance(event, StageStarted | StageFinished):
                self._save(index)
            if on_event is not None:
                on_event(event)

        return self.runner.run(self.conversation, handle)

    def _save(self, index: int) -> None:
        if self.store is not None:
            self.store.save_turn(self.conversation, index)
