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
from reasonchat.errors import UserError
from reasonchat.store import Store
from reasonchat.template import DEFAULT_CONTEXT_LIMIT
from reasonchat.unicode_text import valid_text

# A runner operation: ``TurnRunner.run``, ``answer`` or ``think_more``.
_Generate = Callable[[Conversation, Callable[[TurnEvent], None]], Turn]


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

    def ask(
        self,
        user_text: str,
        on_event: Callable[[TurnEvent], None] | None = None,
        *,
        reasoning: str | None = None,
    ) -> Turn:
        """Add a turn and generate it. ``ContextOverflow``: the conversation and store are untouched.

        ``reasoning``: the user's own (source ``user``; ``""``: no reasoning, source ``none``), which
        the model then answers from instead of reasoning itself."""

        def add() -> None:
            turn = self.conversation.add_turn(valid_text(user_text))
            if reasoning is not None:
                turn.reasoning = valid_text(reasoning)
                turn.reasoning_source = "user" if reasoning else "none"

        try:
            return self._run(self.runner.run, on_event, add)
        except ContextOverflow as err:
            if err.stage == "reasoning":
                self.conversation.turns.pop()
            raise

    def retry(self, on_event: Callable[[TurnEvent], None] | None = None) -> Turn:
        """Generate the last turn again from scratch (regenerate, or retry after an error)."""
        turn = self._last_turn()

        def clear() -> None:
            turn.reasoning = turn.answer = None
            turn.reasoning_stats = turn.answer_stats = None
            turn.reasoning_source = "model"

        return self._run(self.runner.run, on_event, clear)

    def reanswer(
        self, reasoning: str | None = None, on_event: Callable[[TurnEvent], None] | None = None
    ) -> Turn:
        """Generate only the last turn's answer again, from its reasoning or from ``reasoning`` (an
        edit, or the user's own). The model's first reasoning and answer stay in the turn
        (``original_reasoning``/``original_answer``); a changed model reasoning becomes ``edited``."""
        turn = self._last_turn()
        if reasoning is None and turn.reasoning is None:
            raise UserError("the last turn has no reasoning to answer from; give one")

        def edit() -> None:
            turn.keep_originals()
            if reasoning is not None and valid_text(reasoning) != turn.reasoning:
                turn.reasoning = valid_text(reasoning)
                if turn.reasoning_source in ("model", "edited"):
                    turn.reasoning_source = "edited"
                else:  # the user's own, or none until now: whatever it says now, the user wrote it
                    turn.reasoning_source = "user" if turn.reasoning else "none"
            turn.answer, turn.answer_stats = None, None

        return self._run(self.runner.answer, on_event, edit)

    def think_more(self, on_event: Callable[[TurnEvent], None] | None = None) -> Turn:
        """Go on with the last turn's reasoning from where it stopped, then answer again (the first
        reasoning and answer are kept, as for ``reanswer``)."""
        turn = self._last_turn()
        if turn.reasoning is None:
            raise UserError("the last turn has no reasoning to go on with")
        if self.settings.budget("reasoning") == 0:
            raise UserError("the reasoning budget is 0: there is nothing to think more with")
        before = (turn.original_reasoning, turn.original_answer, turn.reasoning_source)

        def begin() -> None:
            turn.keep_originals()
            if turn.reasoning_source == "none":
                turn.reasoning_source = "model"  # the model writes all of it now

        try:
            return self._run(self.runner.think_more, on_event, begin)
        except ContextOverflow as err:
            if err.stage == "reasoning":  # nothing was generated: the turn is as it was
                turn.original_reasoning, turn.original_answer, turn.reasoning_source = before
            raise

    def answer_now(self) -> bool:
        """End the reasoning being generated and answer from it; False (nothing done) when no
        reasoning is streaming. Safe from any thread, like ``cancel``."""
        with self._lock:
            return self._busy and self.runner.answer_now()

    def _last_turn(self) -> Turn:
        if not self.conversation.turns:
            raise UserError("the conversation has no turn yet")
        return self.conversation.turns[-1]

    @property
    def busy(self) -> bool:
        return self._busy

    def cancel(self) -> None:
        """Cancel the turn in progress; when idle, nothing (a stray Esc must not cancel the next turn)."""
        with self._lock:
            if self._busy:
                self.runner.cancel()

    def _run(
        self,
        generate: _Generate,
        on_event: Callable[[TurnEvent], None] | None,
        prepare: Callable[[], None],
    ) -> Turn:
        """``prepare`` (the change to the conversation the operation starts with), then ``generate``;
        nothing at all while another run is in progress: it would change a turn being generated."""
        with self._lock:
            if self._busy:
                raise GenerationError("a turn is already being generated; wait for it or cancel it")
            self._busy = True
        try:
            prepare()
            return self._run_turn(generate, on_event)
        finally:
            with self._lock:
                self._busy = False

    def _run_turn(self, generate: _Generate, on_event: Callable[[TurnEvent], None] | None) -> Turn:
        index = len(self.conversation.turns) - 1
        self.placed_after = 0

        def handle(event: TurnEvent) -> None:
            if isinstance(event, StageStarted | StageFinished):
                self._save(index)
            if on_event is not None:
                on_event(event)

        return generate(self.conversation, handle)

    def _save(self, index: int) -> None:
        if self.store is not None:
            # The in-memory conversation is left as the model saw it while the turn runs (the answer's
            # prompt must be the reasoning's plus the reasoning); the store places the turn after any
            # that another process added meanwhile, and says how many there were.
            placed = self.store.save_turn(self.conversation, index)
            self.placed_after = max(self.placed_after, placed)
