"""A conversation being had: the model's turn runner plus autosave, shared by ``ask`` and the app.

Autosave follows the stream: the user message is stored as soon as the backend has accepted the
reasoning prompt (within the budget), the reasoning when stage 1 ends, the answer when stage 2 ends,
and partial text on cancel or error. Each save is one transaction, so a kill -9 loses at most the
text still streaming.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import replace

from reasonchat import demo_model
from reasonchat.conversation import Conversation, Mark, ReasoningSource, Turn
from reasonchat.engine.protocol import (
    Backend,
    BatchSampler,
    ContextOverflow,
    GenerationError,
    GenerationSettings,
    StageRequest,
)
from reasonchat.engine.turn import StageFinished, StageStarted, TextChunk, TurnEvent, TurnRunner
from reasonchat.errors import UserError
from reasonchat.store import Store
from reasonchat.template import DEFAULT_CONTEXT_LIMIT
from reasonchat.unicode_text import valid_text
from reasonchat.vote import MAX_SAMPLES

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
        self._batch_stop: threading.Event | None = None  # set to stop a batch of samples
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
        """Generate the last turn again from scratch (regenerate, or retry after an error), as a new
        reasoning variant: the earlier ones stay in the turn."""
        turn = self._last_turn()
        return self._run_variant(turn, self.runner.run, on_event, lambda: turn.add_reasoning(None))

    def reanswer(
        self, reasoning: str | None = None, on_event: Callable[[TurnEvent], None] | None = None
    ) -> Turn:
        """Generate only the last turn's answer again, from its reasoning (a new answer variant) or
        from ``reasoning`` (an edit, or the user's own: a new reasoning variant, whose source says who
        wrote it: a changed model reasoning is ``edited``). Every earlier version stays in the turn."""
        turn = self._last_turn()
        if reasoning is None and turn.reasoning is None:
            raise UserError("the last turn has no reasoning to answer from; give one")

        def add() -> None:
            if reasoning is None or valid_text(reasoning) == turn.reasoning:
                turn.add_answer()
                return
            text = valid_text(reasoning)
            if turn.reasoning_source in ("model", "edited"):
                source: ReasoningSource = "edited"
            else:  # the user's own, or none until now: whatever it says now, the user wrote it
                source = "user" if text else "none"
            turn.add_reasoning(text, source)

        return self._run_variant(turn, self.runner.answer, on_event, add)

    def think_more(self, on_event: Callable[[TurnEvent], None] | None = None) -> Turn:
        """Go on with the last turn's reasoning from where it stopped, then answer again, as a new
        reasoning variant (the one it went on from stays)."""
        turn = self._last_turn()
        if turn.reasoning is None:
            raise UserError("the last turn has no reasoning to go on with")
        if self.settings.budget("reasoning") == 0:
            raise UserError("the reasoning budget is 0: there is nothing to think more with")

        def add() -> None:
            before = turn.current
            # The model writes all of it now, when there was none.
            source: ReasoningSource = "model" if before.source == "none" else before.source
            turn.add_reasoning(before.reasoning, source, copy.deepcopy(before.stats))

        return self._run_variant(turn, self.runner.think_more, on_event, add)

    def _run_variant(
        self,
        turn: Turn,
        generate: _Generate,
        on_event: Callable[[TurnEvent], None] | None,
        add: Callable[[], None],
    ) -> Turn:
        """Add a variant to ``turn`` (``add``) and generate it; a reasoning that did not fit the
        context generated nothing, so the variant goes again and the turn is as it was."""
        position = turn.position
        try:
            return self._run(generate, on_event, add)
        except ContextOverflow as err:
            if err.stage == "reasoning":
                turn.drop_newest(position)
            raise

    def sample(self, count: int, on_event: Callable[[TurnEvent], None] | None = None) -> list[int]:
        """Think ``count`` more times about the last question: each sample is a new reasoning variant
        with its answer (the settings' temperature, which must be above 0, or they would all be one).
        The prompt is the same each time, so the prefix cache holds all of it after the first.
        Returns the indices of the new variants; the last one is active. A cancel ends the series."""
        settings = self.settings
        if not settings.temperature:  # None leaves it to the checkpoint, which may well be greedy
            raise UserError("sampling needs a temperature above 0 (--temperature; greedy gives one answer)")
        if not 1 <= count <= MAX_SAMPLES:
            raise UserError(f"the number of samples must be from 1 to {MAX_SAMPLES}, not {count}")
        turn = self._last_turn()
        sampler = self.backend.batch_sampler
        if sampler is not None and count > 1:
            return self._sample_in_batch(sampler, turn, count, on_event)
        added = []
        try:
            for _ in range(count):
                if settings.seed is not None:  # one seed for all would draw the same sample each time
                    self.settings = replace(settings, seed=settings.seed + len(turn.variants))
                self.retry(on_event)
                added.append(turn.active)
                stopped = turn.stats("answer") or turn.stats("reasoning")
                if stopped is not None and stopped.stop_reason in ("cancelled", "error"):
                    break
        finally:
            self.settings = settings
        return added

    def _sample_in_batch(
        self, sampler: BatchSampler, turn: Turn, count: int, on_event: Callable[[TurnEvent], None] | None
    ) -> list[int]:
        """The ``count`` reasonings in one batch, then each one's answer in turn (the answers' prompts
        differ from their reasoning on). Each sample reaches ``on_event`` as a whole reasoning stage
        and then its streamed answer, so a screen shows every version as it is added."""
        emit = on_event or (lambda event: None)
        index = len(self.conversation.turns) - 1
        with self._lock:
            if self._busy:
                raise GenerationError("a turn is being generated; wait for it or cancel it")
            self._busy = True
            self._batch_stop = threading.Event()
        try:
            request = StageRequest(
                self.conversation.id, "reasoning", self.conversation.stage_prompt(index, "reasoning"),
                self.settings, self.context_limit, self._batch_stop,
            )  # fmt: skip
            samples = sampler(request, count, lambda row, delta: None)
        finally:
            with self._lock:
                self._busy, stopped = False, self._batch_stop.is_set()
                self._batch_stop = None
        added = []
        for text, stats in samples:
            if stopped:
                break

            def add(text: str = valid_text(text), stats=stats) -> None:  # noqa: ANN001 - bound per sample
                turn.add_reasoning(text, "model", stats)
                emit(StageStarted(index, "reasoning", stats.prompt_tokens, 0, self.context_limit))
                emit(TextChunk(index, "reasoning", text, stats.new_tokens, stats.decode_s or 0.0))
                emit(StageFinished(index, "reasoning", text, stats))

            self._run(self.runner.answer, on_event, add)
            added.append(turn.active)
            if turn.answer_stats is not None and turn.answer_stats.stop_reason in ("cancelled", "error"):
                break
        return added

    def select(self, turn_index: int, reasoning: int, answer: int | None = None) -> Turn:
        """Make a variant of turn ``turn_index`` the active one (what later prompts see), saved."""
        with self._lock:
            if self._busy:
                raise GenerationError("a turn is being generated; wait for it or cancel it")
            turn = self.conversation.turns[turn_index]
            turn.select(reasoning, answer)
            self.conversation.touch()
            self._save(turn_index)
        return turn

    def mark(self, turn_index: int, mark: Mark | None) -> Turn:
        """Mark the active version of turn ``turn_index`` good or bad (None: unmarked), saved."""
        with self._lock:
            if self._busy:
                raise GenerationError("a turn is being generated; wait for it or cancel it")
            turn = self.conversation.turns[turn_index]
            turn.mark = mark
            self._save(turn_index)
        return turn

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
                if self._batch_stop is not None:
                    self._batch_stop.set()

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
