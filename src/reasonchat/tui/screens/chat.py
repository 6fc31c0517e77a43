"""The chat: what happens when a message is sent, cancelled, regenerated, or does not fit.

One generation at a time. The model loads in the background after the first frame; a message sent
before it is ready waits and runs as soon as it is. Each run's events come through its own pipe
(``worker.TurnPipe``), drained by one render worker, so nothing from an older run reaches the screen.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from functools import partial

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import TextArea

from reasonchat.conversation import Conversation, Stage, Turn
from reasonchat.engine.protocol import Backend, ContextOverflow, GenerationSettings
from reasonchat.engine.turn import StageStarted, TextChunk
from reasonchat.errors import StoreError, UserError
from reasonchat.sanitize import for_screen, sanitize
from reasonchat.session import ChatSession, placed_after_notice
from reasonchat.tui import worker
from reasonchat.budget import ContextUsage, drop_oldest_turns, generation_reserve
from reasonchat.tui.dialogs.edit_reasoning import EditReasoningDialog
from reasonchat.tui.dialogs.error import ErrorDialog
from reasonchat.tui.dialogs.overflow import OverflowChoice, OverflowDialog, no_room_text
from reasonchat.tui.dialogs.settings import SettingsDialog
from reasonchat.tui.messages import (
    ModelLoaded,
    ModelLoadFailed,
    ModelLoadProgress,
    NextPromptCounted,
    TurnsDropped,
)
from reasonchat.tui.options import AppOptions
from reasonchat.tui.screens.compare import compare_versions
from reasonchat.tui.screens.history import HistoryOutcome, HistoryScreen
from reasonchat.tui.screens.replay import ReplayScreen
from reasonchat.tui.widgets.bindings_footer import BindingsFooter
from reasonchat.tui.widgets.composer import Composer
from reasonchat.tui.widgets.status_bar import ModelStatus, StatusBar
from reasonchat.tui.widgets.token_meter import TokenMeter
from reasonchat.tui.widgets.transcript import Transcript, TranscriptTurn
from reasonchat.tui.widgets.turn_view import TurnView
from reasonchat.variants import versions
from reasonchat.vote import vote

BUSY_HINT = "Still working on the last message: wait for it, or press Esc to cancel it."
CHANGED_ELSEWHERE = "Another reasonchat changed this conversation: showing it as saved now."
# Counting the next prompt tokenizes the whole history: wait for a pause in typing.
COUNT_DELAY_S = 0.15
# The reasoning budgets one key cycles through; the last stands for the most the context allows.
BUDGET_PRESETS = (0, 64, 256, 1024)
# The composer's title in each sending mode (cycled in this order).
COMPOSE_MODE_TITLES = {
    "ask": "",
    "write": "you write the reasoning · ctrl+l",
    "skip": "no reasoning · ctrl+l",
}
# How long quitting waits for a cancelled generation to stop and save its partial turn.
QUIT_WAIT_S = 10.0


def next_budget(current: int, context_limit: int) -> int:
    """The preset after ``current`` (the budget in force); after the most, off again."""
    presets = (*BUDGET_PRESETS, context_limit)
    # A budget past the context is the most already: the context caps it.
    current = min(current, context_limit)
    return next((tokens for tokens in presets if tokens > current), 0)


def budget_label(tokens: int | None, context_limit: int) -> str:
    """The status bar's word for a reasoning budget; ``None`` (the per-stage default): nothing, so the
    bar says only what the user chose."""
    if tokens is None:
        return ""
    if tokens == 0:
        return "no reasoning"
    if tokens >= context_limit:
        return "reasoning ≤ max"
    return f"reasoning ≤ {tokens:,}"


VOTE_SAMPLES = 4
THINK_TIMES = "think again"  # what the sampling run is called, when it cannot run


class ChatScreen(Screen[None]):
    # Esc cancels generation even while the reasoning pane is maximised (ctrl+f restores it).
    ESCAPE_TO_MINIMIZE = False
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="cancel"),
        # Next to Cancel: the footer is cut at 80 columns, and both show only while a run streams.
        # A function key: the composer (a TextArea, focused nearly always) takes ctrl+e and most ctrl keys.
        Binding("f5", "answer_now", "Answer now", id="answer_now"),
        Binding("ctrl+r", "regenerate", "Regen", id="regenerate"),
        Binding("ctrl+t", "toggle_reasoning", "Reasoning", id="toggle_reasoning"),
        Binding("ctrl+f", "maximize_reasoning", "Max", id="maximize_reasoning", show=False),
        Binding("ctrl+n", "new_conversation", "New", id="new_conversation"),
        Binding("ctrl+o", "open_history", "History", id="open_history"),
        Binding("f3", "copy_answer", "Copy", id="copy_answer"),
        Binding("f4", "copy_reasoning", "Copy reasoning", id="copy_reasoning", show=False),
        Binding("ctrl+g", "settings", "Settings", id="settings"),
        # Function keys every terminal delivers that the composer leaves free (it takes f6 and f7).
        Binding("f9", "cycle_reasoning_budget", "Budget", id="cycle_reasoning_budget", show=False),
        Binding("f8", "think_more", "Think more", id="think_more", show=False),
        Binding("f2", "edit_reasoning", "Edit reasoning", id="edit_reasoning", show=False),
        # ctrl+l: free in the composer, unlike ctrl+enter, which most terminals never deliver.
        Binding("ctrl+l", "cycle_compose_mode", "Mode", id="cycle_compose_mode", show=False),
        # Versions of a turn (the last one, or the transcript turn focused): alt+arrows, which the
        # composer leaves free; f10 marks, f12 compares.
        Binding("alt+left", "variant('reasoning', -1)", "Previous reasoning", id="variant.previous_reasoning", show=False),
        Binding("alt+right", "variant('reasoning', 1)", "Next reasoning", id="variant.next_reasoning", show=False),
        Binding("alt+up", "variant('answer', -1)", "Previous answer", id="variant.previous_answer", show=False),
        Binding("alt+down", "variant('answer', 1)", "Next answer", id="variant.next_answer", show=False),
        Binding("f10", "cycle_mark", "Mark", id="cycle_mark", show=False),
        Binding("f12", "compare", "Compare", id="compare", show=False),
    ]
    PALETTE: tuple[tuple[str, str, str], ...] = (
        ("New conversation", "new_conversation", "Start over with the same system prompt"),
        ("Open history", "open_history", "Saved conversations: search, open, replay, rename, export, delete"),
        ("Replay this conversation", "replay_current", "Re-stream it with its recorded timing"),
        ("Copy last answer", "copy_answer", "To the clipboard (OSC 52, works over SSH)"),
        ("Copy last reasoning", "copy_reasoning", "To the clipboard (OSC 52, works over SSH)"),
        ("Toggle reasoning pane", "toggle_reasoning", "Hide or show the Reasoning pane"),
        ("Maximise reasoning pane", "maximize_reasoning", "Give the Reasoning pane the whole screen, or restore it"),
        ("Regenerate last turn", "regenerate", "Run both stages of the last turn again (or retry loading)"),
        ("Generation settings", "settings", "Max new tokens per stage, temperature"),
        ("Answer now", "answer_now", "End the reasoning where it is and answer from it (f5)"),
        ("Cycle reasoning budget", "cycle_reasoning_budget", "Off, 64, 256, 1,024 or the most tokens (f9)"),
        ("Think more", "think_more", "Go on with the last reasoning for another budget, then answer again (f8)"),
        ("Edit reasoning", "edit_reasoning", "Change the last reasoning and answer again from it (f2)"),
        (
            "Write the reasoning or skip it",
            "cycle_compose_mode",
            "Send with your own reasoning, none, or the model's (ctrl+l)",
        ),
        ("Next reasoning variant", "variant('reasoning', 1)", "Another version of the turn's reasoning (alt+right)"),
        ("Previous reasoning variant", "variant('reasoning', -1)", "alt+left"),
        ("Next answer variant", "variant('answer', 1)", "Another answer from the same reasoning (alt+down)"),
        ("Previous answer variant", "variant('answer', -1)", "alt+up"),
        ("Mark good, bad or neither", "cycle_mark", "A mark on this version, for training exports (f10)"),
        ("Compare versions", "compare", "This version beside the one before it, words diffed (f12)"),
        ("Edit a question (fork)", "edit_question", "The last question, or the transcript turn focused: a new conversation goes on from it"),
        ("Think 4 times and vote", f"think_times({VOTE_SAMPLES})", "Sample 4 more reasonings with their answers; how many agree"),
    )

    busy: reactive[bool] = reactive(False, bindings=True)
    # The reasoning stage of the current run is streaming, as far as the screen has shown it.
    reasoning_streaming: reactive[bool] = reactive(False, bindings=True)
    # How a message is sent: the model reasons ("ask"), the user writes the reasoning ("write"), or
    # there is none ("skip"). Not initialised at mount: the composer shows nothing for "ask".
    compose_mode: reactive[str] = reactive("ask", init=False)

    def __init__(self, options: AppOptions) -> None:
        super().__init__()
        self.options = options
        self.store = options.store
        self.conversation = options.conversation or Conversation(system_prompt=options.system_prompt)
        self.settings = options.settings
        self.context_limit = options.context_limit
        self.backend: Backend | None = None
        self.session: ChatSession | None = None
        self.load_failed = False
        # A message sent before the model was ready; it runs when the model is.
        self.pending: str | None = None
        self._pending_reasoning: str | None = None  # the pending message's own reasoning, if any
        self.current_run: worker.Run | None = None
        self._running_text: str | None = None
        self._running_reasoning: str | None = None  # the running message's own reasoning, if any
        # What the running stage operation on the last turn does ("think more"), None for a message.
        self._steering: str | None = None
        self._moved_to_transcript: Turn | None = None
        self._count_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Transcript(id="transcript")
        yield TurnView()
        yield Composer(id="composer")
        yield StatusBar(self.options.model_label, self.context_limit, self._budget_label())
        # The palette's key is in the composer's placeholder: its footer slot is needed at 80 columns.
        yield BindingsFooter(compact=True, show_command_palette=False)

    @property
    def turn_view(self) -> TurnView:
        return self.query_one(TurnView)

    @property
    def composer(self) -> Composer:
        return self.query_one(Composer)

    @property
    def meter(self) -> TokenMeter:
        return self.query_one(TokenMeter)

    @property
    def model_status(self) -> ModelStatus:
        return self.query_one(ModelStatus)

    async def on_mount(self) -> None:
        # A saved conversation's last question now, its Markdown (tens of milliseconds, more with code
        # to highlight) right after the first frame.
        await self._show_current_turn(whole=False)
        self.composer.focus()
        for notice in self.options.notices:
            self.notify(sanitize(notice), title="Settings", severity="warning", timeout=15, markup=False)
        self.call_after_refresh(self._after_first_frame)

    async def _after_first_frame(self) -> None:
        # The loader imports torch (seconds, holding the GIL much of the time, which starves this
        # loop) and the transcript renders Markdown: the current turn first, painted, then the model
        # since it takes longest, then the transcript.
        turns = self.conversation.turns
        if turns and self.turn_view.turn is turns[-1] and not self.busy:
            await self.turn_view.show_turn(turns[-1])
            self.call_after_refresh(self._after_current_turn)
        else:
            await self._after_current_turn()

    async def _after_current_turn(self) -> None:
        self.load_model()
        await self._show_transcript()

    async def on_unmount(self) -> None:
        # Quitting mid-generation cancels it, and waits (briefly: one token) for the partial turn to be
        # saved as cancelled; the generating thread must not outlive the app either.
        # (Textual has already cancelled its workers here, which does not stop a thread.)
        run = self.current_run
        if run is None or run.done.is_set():
            return
        self._cancel_run(run)
        deadline = time.monotonic() + QUIT_WAIT_S
        while not run.done.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    # --- the model -----------------------------------------------------------------------------

    def load_model(self) -> None:
        self.load_failed = False
        self.model_status.loading()
        worker.start_loading(self.options.load_backend, self.post_message)

    def on_model_load_progress(self, message: ModelLoadProgress) -> None:
        self.model_status.progress(message.text)

    async def on_model_loaded(self, message: ModelLoaded) -> None:
        self.backend = message.backend
        self.session = self._new_session(self.conversation)
        self._note_estimates()
        self.model_status.ready()
        if self.backend.notice:  # the fast path fell back to the eager one while loading
            self.notify(sanitize(self.backend.notice), severity="warning", timeout=10, markup=False)
        if self.pending is not None:
            text, self.pending = self.pending, None
            self._run(text, reasoning=self._pending_reasoning)
        self._recount()

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self.load_failed = True
        self.model_status.failed()
        kept = " Your message is kept and runs once the model has loaded." if self.pending else ""
        self._show_error("Could not load the model", message.error, f"Retry (ctrl+r) loads it again.{kept}")

    def _new_session(self, conversation: Conversation) -> ChatSession:
        assert self.backend is not None
        return ChatSession(
            self.backend,
            conversation,
            store=self.store,
            settings=self.settings,
            context_limit=self.context_limit,
        )

    # --- sending -------------------------------------------------------------------------------

    async def on_composer_submitted(self, message: Composer.Submitted) -> None:
        if self.compose_mode == "skip":
            await self.send(message.text, reasoning="")
        elif self.compose_mode == "write":
            self._write_reasoning_for(message.text)
        else:
            await self.send(message.text)

    def _write_reasoning_for(self, text: str) -> None:
        if self.busy:
            self.notify(BUSY_HINT, severity="warning")
            return

        async def written(reasoning: str | None) -> None:
            self.composer.focus()
            if reasoning is not None:
                await self.send(text, reasoning=reasoning)

        dialog = EditReasoningDialog(
            "",
            title="Your reasoning",
            save_label="Send",
            hint="The model answers from this instead of reasoning itself (empty: no reasoning).",
        )
        self.app.push_screen(dialog, written)

    def watch_compose_mode(self, mode: str) -> None:
        self.composer.border_title = COMPOSE_MODE_TITLES[mode]

    def action_cycle_compose_mode(self) -> None:
        modes = tuple(COMPOSE_MODE_TITLES)
        self.compose_mode = modes[(modes.index(self.compose_mode) + 1) % len(modes)]

    async def send(self, text: str, reasoning: str | None = None) -> None:
        """Send ``text``; ``reasoning``: the user's own to answer from (``""``: none) instead of the model's."""
        if self.busy:
            self.notify(BUSY_HINT, severity="warning")
            return
        # The message then goes after the turns another process added, in the prompt and the store.
        await self._reload_if_changed()
        counted = self.meter.next_prompt
        if counted is not None and counted >= self.context_limit and text == self.composer.text:
            # Checked before anything runs or moves: a huge paste goes straight to the dialog.
            self._open_overflow(ContextOverflow("reasoning", counted, self.context_limit), text, reasoning=reasoning)
            return
        self.composer.clear()
        await self._begin(text)
        self._running_reasoning = reasoning
        if self.session is None:
            self.pending, self._pending_reasoning = text, reasoning
            self.turn_view.indicator.start("Waiting for the model…")
            if self.load_failed:
                self.notify("The model failed to load: ctrl+r tries again.", severity="warning")
        else:
            self._run(text, reasoning=reasoning)

    async def _begin(self, text: str) -> None:
        """Show ``text`` as the new current turn; the previous one moves to the transcript."""
        self.busy = True
        self._running_text = text
        self._moved_to_transcript = self.turn_view.turn
        if self._moved_to_transcript is not None:
            await self.query_one(Transcript).add(self._moved_to_transcript)
        await self.turn_view.start(text)
        self.meter.usage = ContextUsage(self.context_limit)

    async def _undo_begin(self, text: str) -> None:
        """The message did not run: show the previous turn again and give the text back."""
        previous, self._moved_to_transcript = self._moved_to_transcript, None
        if previous is not None:
            await self.query_one(Transcript).remove_last()
            await self.turn_view.show_turn(previous)
        else:
            await self.turn_view.reset()
        self.meter.usage = ContextUsage.of_turn(previous, self.context_limit)
        self.composer.restore(text)
        self.busy = False

    def _run(
        self, text: str | None, operation: worker.Operation | None = None, *, reasoning: str | None = None
    ) -> None:
        """Generate in a thread: ask ``text`` (answered from ``reasoning`` when given), or regenerate
        the last turn when ``None``, or run ``operation`` (a stage operation on the last turn)."""
        assert self.session is not None
        if text is not None and reasoning is not None:
            operation = partial(self.session.ask, text, reasoning=reasoning)
        self.busy = True
        self.current_run = worker.Run(worker.TurnPipe(asyncio.get_running_loop()))
        self.turn_view.indicator.start("Thinking…")
        self.run_worker(self._show_run(self.current_run.pipe), group="render")
        self.run_worker(
            partial(worker.generate, self.session, text, self.current_run, operation),
            thread=True,
            group="generate",
        )

    def _cancel_run(self, run: worker.Run) -> None:
        run.cancel.set()
        if self.session is not None:
            self.session.cancel()

    async def _show_run(self, pipe: worker.TurnPipe) -> None:
        """The run's one channel: each batch updates the panes, then the meter, then ends the run."""
        view = self.turn_view
        reasoned = False  # did this run generate a reasoning (else it is shown as it stands)
        async for batch in pipe.batches():
            usage = self.meter.usage
            for item in worker.coalesce(batch):
                if isinstance(item, worker.TurnEnded):
                    self.meter.usage = usage
                    self.reasoning_streaming = False
                    await self._finish_run(item)
                    return
                if isinstance(item, StageStarted) and item.stage == "reasoning":
                    view.turn = self.conversation.turns[item.turn_index]
                    reasoned = True
                elif isinstance(item, StageStarted) and not reasoned:
                    # No reasoning stage ran (none, the user's own): show the one answered from.
                    await view.show_reasoning(self.conversation.turns[item.turn_index])
                if item.stage == "reasoning" and not isinstance(item, TextChunk):
                    self.reasoning_streaming = isinstance(item, StageStarted)
                await view.apply(item)
                usage = worker.track_usage(usage, item)
            self._note_estimates()
            self.meter.usage = usage

    def _note_estimates(self) -> None:
        # Read at each batch: a server's /tokenize may fail for a while and come back.
        self.meter.estimated = self.backend is not None and self.backend.counts_are_estimates

    async def _finish_run(self, ended: worker.TurnEnded) -> None:
        self.turn_view.indicator.stop()
        text, self._running_text = self._running_text, None
        reasoning, self._running_reasoning = self._running_reasoning, None
        steering, self._steering = self._steering, None
        if ended.overflow is not None and ended.overflow.stage == "reasoning" and text is not None:
            # Nothing was stored: the conversation is as it was before the message.
            await self._undo_begin(text)
            self._open_overflow(ended.overflow, text, reasoning=reasoning)
            return
        self.busy = False
        self._moved_to_transcript = None
        turn = self.conversation.turns[-1] if self.conversation.turns else None
        self.meter.usage = ContextUsage.of_turn(turn, self.context_limit)
        self._recount()
        if ended.overflow is not None and turn is not None and steering is not None:
            # Starting over or dropping turns would resend the question and lose what the user did
            # to this turn: it stays as the session left it (as it was, or with its edited reasoning).
            await self.turn_view.show_turn(turn)
            notice = f"No room to {steering}: {no_room_text(ended.overflow, 'the prompt')} The turn is kept."
            self.notify(notice, severity="error", markup=False, timeout=10)
        elif ended.overflow is not None and turn is not None:
            # The reasoning was generated and saved; the answer did not fit. A reasoning the user
            # wrote (or skipped) goes with the question when it is sent again.
            own = turn.reasoning if turn.reasoning_source in ("user", "none") else None
            self._open_overflow(ended.overflow, turn.user, failed_turn=True, reasoning=own)
        elif ended.error is not None:
            self._show_error("Something went wrong", ended.error, "Your message is kept: ctrl+r retries.")
        elif turn is not None:
            self._report_stops(turn)
            if steering == THINK_TIMES:
                self.notify("Vote: " + sanitize(vote(v.answer_text for v in versions(turn)).describe()), markup=False, timeout=10)
        # Not under the overflow dialog: its choices act on the last turn as it was generated.
        if ended.overflow is None and self.session is not None and self.session.placed_after:
            notice = placed_after_notice(self.session.placed_after)
            notice = notice[0].upper() + notice[1:] + "."
            if not await self._reload_if_changed(notice):
                self.notify(notice, markup=False)

    async def _reload_if_changed(self, notice: str = CHANGED_ELSEWHERE) -> bool:
        """Show the stored conversation if another process changed its turns since this screen last
        read or wrote them (their revisions differ), so nothing is shown or sent from a stale copy."""
        if self.store is None:
            return False
        try:
            stored = self.store.revision(self.conversation.id)
            if stored is None or stored == self.conversation.revision:
                return False
            fresh = self.store.get(self.conversation.id)
        except (StoreError, UserError):
            # Unreadable or deleted just now: the autosave still never overwrites another's turn.
            return False
        await self._switch_to(fresh)
        self.notify(notice, markup=False)
        return True

    def _report_stops(self, turn: Turn) -> None:
        for stats in (turn.reasoning_stats, turn.answer_stats):
            if stats is None:
                continue
            if stats.stop_reason == "error":
                self._show_error(
                    "Generation failed",
                    sanitize(stats.error or "generation failed"),
                    "The partial text is kept and saved; Retry (ctrl+r) regenerates the turn.",
                )
                return
            if stats.stop_reason == "cancelled":
                self.notify("Cancelled: the partial turn is kept and saved.")
                return

    # --- overflow ------------------------------------------------------------------------------

    def _open_overflow(
        self, overflow: ContextOverflow, text: str, failed_turn: bool = False, *, reasoning: str | None = None
    ) -> None:
        """``reasoning``: the message's own (written by the user, ``""`` for none), sent again with it."""

        def chosen(choice: OverflowChoice | None) -> None:
            if choice == "new":
                self.run_worker(self._resend_in(self._fresh_conversation(), text, reasoning), group="overflow")
            elif choice == "drop":
                self._drop_oldest(text, failed_turn, reasoning)
            else:
                self.composer.focus()

        self.app.push_screen(OverflowDialog(overflow), chosen)

    def _fresh_conversation(self) -> Conversation:
        return Conversation(system_prompt=self.conversation.system_prompt)

    @work(thread=True, group="overflow")
    def _drop_oldest(self, text: str, failed_turn: bool, reasoning: str | None) -> None:
        assert self.backend is not None  # an overflow is only known once the model has counted
        source = self.conversation
        if failed_turn:  # the turn whose answer did not fit is dropped with the oldest ones
            source = replace(source, turns=source.turns[:-1])
        shortened, dropped = drop_oldest_turns(
            source,
            text,
            self.backend.count_tokens,
            self.context_limit,
            generation_reserve(self.settings.max_new_tokens, self.context_limit),
        )
        self.post_message(TurnsDropped(text, reasoning, shortened, dropped))

    async def on_turns_dropped(self, message: TurnsDropped) -> None:
        if message.conversation is None:
            self.notify(
                "Even with no earlier turns the message does not fit: shorten it.",
                severity="error",
                timeout=10,
            )
            self.composer.focus()
            return
        if self.store is not None:
            self.store.save(message.conversation)
        self.notify(
            f"Dropped the {message.dropped} oldest turn(s): this continues as a new conversation; "
            "the full one stays in the history."
        )
        await self._resend_in(message.conversation, message.text, message.reasoning)

    async def _resend_in(self, conversation: Conversation, text: str, reasoning: str | None) -> None:
        """Switch to ``conversation`` and send ``text`` there (taking it back from the composer)."""
        await self._switch_to(conversation)
        if self.composer.text.startswith(text):
            self.composer.load_text(self.composer.text[len(text) :].lstrip("\n"))
        await self.send(text, reasoning=reasoning)

    async def _switch_to(self, conversation: Conversation) -> None:
        self.conversation = conversation
        if self.backend is not None:
            self.session = self._new_session(conversation)
        await self._show_conversation()
        self._recount()

    async def _show_conversation(self) -> None:
        await self._show_current_turn()
        # Earlier turns after the frame that shows the current one (a long conversation has many).
        self.call_after_refresh(self._show_transcript)

    async def _show_transcript(self) -> None:
        """Every turn but the one in the panes, as things stand when this runs (it is deferred)."""
        turns = self.conversation.turns
        moved = self._moved_to_transcript
        # A message sent meanwhile moved the turn that was in the panes to the transcript; its own
        # turn may or may not be in the conversation yet (the generating thread appends it).
        upto = next((i + 1 for i, turn in enumerate(turns) if turn is moved), len(turns) - 1)
        await self.query_one(Transcript).show(turns[:upto])

    async def _show_current_turn(self, whole: bool = True) -> None:
        """The last turn in the panes (``whole=False``: its question only, the text comes later)."""
        turns = self.conversation.turns
        if turns and whole:
            await self.turn_view.show_turn(turns[-1])
        elif turns:
            await self.turn_view.start(turns[-1].user, turns[-1])
        else:
            await self.turn_view.reset()
        self.meter.usage = ContextUsage.of_turn(turns[-1] if turns else None, self.context_limit)

    # --- the meter while typing ----------------------------------------------------------------

    @on(TextArea.Changed, "#composer")
    def _composer_changed(self) -> None:
        self._schedule_count()

    def _recount(self) -> None:
        """The history changed: the last count no longer holds."""
        self.meter.next_prompt = None
        self._schedule_count()

    def _schedule_count(self) -> None:
        if self._count_timer is not None:
            self._count_timer.stop()
        if not self.composer.text.strip():
            self.meter.next_prompt = None
            return
        self._count_timer = self.set_timer(COUNT_DELAY_S, self._count_next_prompt)

    def _count_next_prompt(self) -> None:
        if self.session is not None:
            self._count_in_thread(self.session, self.composer.text)

    # A failed count (the tokenizer busy in the generating thread) only leaves the meter as it was.
    @work(thread=True, group="count", exclusive=True, exit_on_error=False)
    def _count_in_thread(self, session: ChatSession, text: str) -> None:
        self.post_message(NextPromptCounted(text, session.next_prompt_tokens(text)))

    def on_next_prompt_counted(self, message: NextPromptCounted) -> None:
        if message.text == self.composer.text:
            self._note_estimates()
            self.meter.next_prompt = message.tokens

    # --- actions -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.busy  # shown in the footer only while there is something to cancel
        if action == "answer_now":
            return self.reasoning_streaming
        return True

    def action_answer_now(self) -> None:
        # The session is thread-safe (like cancel) and refuses when the reasoning has just ended in
        # the generating thread, ahead of what the screen has shown.
        if self.session is not None and self.session.answer_now():
            self.turn_view.indicator.start("Answering from the reasoning so far…")
        else:
            self.notify("The reasoning has already ended.", severity="warning")

    def _budget_label(self) -> str:
        return budget_label(self.settings.reasoning_tokens, self.context_limit)

    def action_cycle_reasoning_budget(self) -> None:
        tokens = next_budget(self.settings.budget("reasoning"), self.context_limit)
        self._apply_settings(replace(self.settings, reasoning_tokens=tokens))
        label = budget_label(tokens, self.context_limit)
        when = " from the next stage on" if self.busy else ""
        self.notify(f"Reasoning budget: {label}{when}.", markup=False)

    async def action_cancel(self) -> None:
        if self.pending is not None:
            text, self.pending = self.pending, None
            self.turn_view.indicator.stop()
            await self._undo_begin(text)
        elif self.busy and self.current_run is not None:
            self._cancel_run(self.current_run)

    async def action_regenerate(self) -> None:
        if self.load_failed:  # retry loading; a message sent meanwhile is still pending
            self.load_model()
        elif self.busy:
            self.notify(BUSY_HINT, severity="warning")
        elif self.session is None:
            self.notify("The model is still loading.", severity="warning")
        elif not self.conversation.turns:
            self.notify("Nothing to regenerate yet: send a message first.")
        elif await self._reload_if_changed(CHANGED_ELSEWHERE + " ctrl+r regenerates its last turn."):
            pass  # the last turn may now be another one: regenerate only what is on the screen
        else:
            await self.turn_view.start(self.conversation.turns[-1].user, self.conversation.turns[-1])
            self.meter.usage = ContextUsage(self.context_limit)
            self._run(None)

    def _session_free(self) -> bool:
        """Whether the session can take an operation now; if not, the user is told why."""
        if self.busy:
            self.notify(BUSY_HINT, severity="warning")
        elif self.session is None:
            self.notify("The model is still loading.", severity="warning")
        else:
            return True
        return False

    async def _last_turn_to_steer(self, what: str) -> Turn | None:
        """The last turn, when it can be worked on now; else ``None``, the user told why."""
        if not self._session_free():
            pass
        elif not self.conversation.turns:
            self.notify(f"Nothing to {what} yet: send a message first.")
        elif await self._reload_if_changed():
            pass  # the last turn may now be another one: act only on what is on the screen
        elif self.conversation.turns[-1].reasoning is None:
            self.notify(f"The last turn has no reasoning to {what}: ctrl+r regenerates it.", severity="warning")
        else:
            return self.conversation.turns[-1]
        return None

    async def _steer(self, turn: Turn, operation: worker.Operation, what: str) -> None:
        """Run ``operation`` on the last turn; ``what`` it does, for a message when it cannot."""
        await self.turn_view.start(turn.user, turn)
        self.meter.usage = ContextUsage(self.context_limit)
        self._steering = what
        self._run(None, operation)

    async def action_think_more(self) -> None:
        turn = await self._last_turn_to_steer("think more about")
        if turn is None or self.session is None:
            return
        if self.settings.budget("reasoning") == 0:
            self.notify("The reasoning budget is off: f9 sets one.", severity="warning")
            return
        await self._steer(turn, self.session.think_more, "think more")

    async def action_edit_reasoning(self) -> None:
        turn = await self._last_turn_to_steer("edit")
        if turn is None:
            return

        async def saved(reasoning: str | None) -> None:
            if reasoning is None:
                self.composer.focus()
                return
            session = self.session
            # Checked again: a run may have started while the editor was open.
            turns = self.conversation.turns
            if session is None or self.busy or not turns or turns[-1] is not turn:
                self.notify("The conversation changed meanwhile: the edit was not used.", severity="warning")
                return
            await self._steer(turn, partial(session.reanswer, reasoning), "answer from the edited reasoning")
            self.composer.focus()

        self.app.push_screen(EditReasoningDialog(turn.reasoning or ""), saved)

    # --- versions --------------------------------------------------------------------------------

    def _version_target(self) -> int | None:
        """The turn the version keys act on: the transcript turn holding the focus, else the last."""
        node = self.focused
        while node is not None and not isinstance(node, TranscriptTurn):
            node = node.parent
        if isinstance(node, TranscriptTurn):
            return next((i for i, turn in enumerate(self.conversation.turns) if turn is node.turn), None)
        return len(self.conversation.turns) - 1 if self.conversation.turns else None

    async def _versions_turn(self) -> int | None:
        index = self._version_target()
        if not self._session_free():
            return None
        if index is None:
            self.notify("No turn yet: send a message first.")
        return index

    async def action_variant(self, stage: str, step: int) -> None:
        index = await self._versions_turn()
        if index is None or self.session is None:
            return
        turn = self.conversation.turns[index]
        if stage == "reasoning":
            if len(turn.variants) < 2:
                self.notify("This turn has one reasoning: ctrl+r, f2 or f8 on the last turn adds another.")
                return
            reasoning, answer = (turn.active + step) % len(turn.variants), None
        else:
            answers = len(turn.current.answers)
            if answers < 2:
                self.notify("This reasoning has one answer: re-answering the last turn (f2, ctrl+s) adds another.")
                return
            reasoning, answer = turn.active, (turn.current.active_answer + step) % answers
        self.session.select(index, reasoning, answer)
        await self._show_version(index)

    async def action_cycle_mark(self) -> None:
        index = await self._versions_turn()
        if index is None or self.session is None:
            return
        turn = self.conversation.turns[index]
        marks = (None, "good", "bad")
        mark = marks[(marks.index(turn.mark) + 1) % len(marks)]
        self.session.mark(index, mark)
        await self._show_version(index)
        self.notify(f"Turn {index + 1}: " + ("marked " + mark if mark else "no mark") + ".", markup=False)

    async def _show_version(self, index: int) -> None:
        """Turn ``index`` as its active version now is, where it is shown; the meter follows."""
        if index == len(self.conversation.turns) - 1 and self.turn_view.turn is self.conversation.turns[index]:
            await self.turn_view.show_turn(self.conversation.turns[index])
        else:
            for shown in self.query(TranscriptTurn):
                if shown.turn is self.conversation.turns[index]:
                    await shown.show_version()
        last = self.conversation.turns[-1]
        self.meter.usage = ContextUsage.of_turn(last, self.context_limit)
        self._recount()

    async def action_think_times(self, count: int) -> None:
        turn = await self._last_turn_to_steer("think again about")
        if turn is None or self.session is None:
            return
        if not self.settings.temperature:
            self.notify("Sampling needs a temperature above 0: ctrl+g sets it.", severity="warning")
            return
        await self._steer(turn, partial(self.session.sample, count), THINK_TIMES)

    async def action_edit_question(self) -> None:
        index = self._version_target()
        if self.busy:
            self.notify(BUSY_HINT, severity="warning")
            return
        if index is None:
            self.notify("No question yet: send a message first.")
            return
        conversation, turn = self.conversation, self.conversation.turns[index]

        async def edited(text: str | None) -> None:
            self.composer.focus()
            if text is None or not text.strip():
                return
            if self.busy or self.conversation is not conversation:
                self.notify("The conversation changed meanwhile: the edit was not used.", severity="warning")
                return
            fork = conversation.fork(index)
            self.notify(
                f"Forked: this goes on in a new conversation; {for_screen(conversation.title)!r} keeps its"
                f" {len(conversation.turns) - index} turn(s) from this one on.",
                markup=False,
            )
            await self._resend_in(fork, text, None)

        dialog = EditReasoningDialog(
            turn.user,
            title=f"Edit question {index + 1}",
            save_label="Fork and send",
            hint="A new conversation goes on from the turns before it with this question; this one keeps its turns.",
        )
        self.app.push_screen(dialog, edited)

    def action_compare(self) -> None:
        index = self._version_target()
        if index is None:
            self.notify("No turn yet: send a message first.")
            return
        screen = compare_versions(self.conversation.turns[index], f"turn {index + 1} · {self.conversation.title}")
        if screen is None:
            self.notify("This turn has one version: regenerate, re-answer or edit it to compare.")
        else:
            self.app.push_screen(screen)

    async def action_new_conversation(self) -> None:
        if self.busy:
            self.notify(BUSY_HINT, severity="warning")
            return
        await self._switch_to(self._fresh_conversation())
        self.composer.focus()

    def action_toggle_reasoning(self) -> None:
        self.turn_view.toggle_reasoning()

    def action_maximize_reasoning(self) -> None:
        pane = self.turn_view.pane("reasoning")
        if self.maximized is pane:
            self.minimize()
            return
        if self.turn_view.reasoning_collapsed:
            self.turn_view.toggle_reasoning()
        self.maximize(pane, container=False)

    def action_open_history(self) -> None:
        if self.store is None:
            self.notify("Nothing is saved in this session (no store).", severity="warning")
            return
        screen = HistoryScreen(self.store, current=lambda: self.conversation, busy=lambda: self.busy)
        self.app.push_screen(screen, self._history_closed)

    async def _history_closed(self, outcome: HistoryOutcome | None) -> None:
        if outcome is None:
            return
        current = self.conversation
        if outcome.action == "open" and outcome.conversation is not None:
            if outcome.conversation.id != current.id or current.id in outcome.deleted:
                await self._switch_to(outcome.conversation)
                self.notify(f"Continuing {for_screen(outcome.conversation.title)!r}.", markup=False)
        elif current.id in outcome.deleted:
            await self._switch_to(self._fresh_conversation())
            self.notify("The open conversation was deleted: this is a new one.")
        if outcome.action == "replay" and outcome.conversation is not None:
            self._replay(outcome.conversation, outcome.conversation.id[:8])
        self.composer.focus()

    def action_replay_current(self) -> None:
        if not self.conversation.turns:
            self.notify("Nothing to replay yet: send a message first.")
            return
        if self.busy:
            self.notify(BUSY_HINT, severity="warning")
            return
        self._replay(self.conversation, "this conversation")

    def _replay(self, conversation: Conversation, source: str) -> None:
        self.app.push_screen(ReplayScreen(conversation, 1.0, source))

    def action_copy_answer(self) -> None:
        self._copy("answer")

    def action_copy_reasoning(self) -> None:
        self._copy("reasoning")

    def _copy(self, stage: Stage) -> None:
        turn = self.conversation.turns[-1] if self.conversation.turns else None
        text = turn.text(stage) if turn is not None else None
        if not text:
            self.notify(f"No {stage} to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(sanitize(text))
        self.notify(f"Copied the last {stage} ({len(text):,} characters).")

    def _apply_settings(self, settings: GenerationSettings) -> None:
        self.settings = settings
        if self.session is not None:
            self.session.settings = settings
        self.query_one(StatusBar).budget = self._budget_label()

    def action_settings(self) -> None:
        def saved(settings: GenerationSettings | None) -> None:
            if settings is None:
                return
            self._apply_settings(settings)
            temperature = "default" if settings.temperature is None else settings.temperature
            self.notify(f"Max {settings.max_new_tokens:,} new tokens per stage, temperature {temperature}.")

        self.app.push_screen(SettingsDialog(self.settings), saved)

    # --- errors --------------------------------------------------------------------------------

    def _show_error(self, title: str, message: str, hint: str) -> None:
        def closed(retry: bool | None) -> None:
            if retry:
                self.run_worker(self.action_regenerate(), group="retry")
            else:
                self.composer.focus()

        self.app.push_screen(ErrorDialog(title, message, hint), closed)
