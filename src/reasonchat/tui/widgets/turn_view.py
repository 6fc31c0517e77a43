"""The current turn: the question, the "Thinking…" line, and the Reasoning and Answer panes side by
side (stacked on a narrow terminal, by the app's breakpoint classes)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Container, Vertical
from textual.widgets import Static

from reasonchat.conversation import Stage, Turn
from reasonchat.engine.turn import StageStarted, TextChunk, TurnEvent
from reasonchat.sanitize import for_screen
from reasonchat.tui.widgets.stage_pane import StagePane, answer_title, reasoning_position, reasoning_title
from reasonchat.tui.widgets.thinking import ThinkingIndicator

WELCOME = (
    "Ask anything. The model reasons first (the Reasoning pane), then answers.\n"
    "Enter sends · Ctrl+J adds a line · Esc cancels · Ctrl+P lists every command."
)


class TurnView(Vertical):
    def __init__(self) -> None:
        super().__init__(id="turn-view", classes="-empty")
        self.turn: Turn | None = None
        # The Reasoning pane's title before the collapsed hint (provenance, cuts).
        self._reasoning_title = "Reasoning"

    def compose(self) -> ComposeResult:
        yield Static(WELCOME, id="welcome", markup=False)
        yield Static("", id="question", markup=False)
        yield ThinkingIndicator(id="thinking")
        with Container(id="panes"):
            yield StagePane("reasoning", "Reasoning", id="reasoning-pane")
            yield StagePane("answer", "Answer", id="answer-pane")

    def pane(self, stage: Stage) -> StagePane:
        return self.query_one("#reasoning-pane" if stage == "reasoning" else "#answer-pane", StagePane)

    @property
    def indicator(self) -> ThinkingIndicator:
        return self.query_one(ThinkingIndicator)

    @property
    def reasoning_collapsed(self) -> bool:
        return self.has_class("-reasoning-collapsed")

    def toggle_reasoning(self) -> None:
        """Collapse the Reasoning pane to a bar above the Answer (which gets the width), or restore it."""
        self.toggle_class("-reasoning-collapsed")
        self.title_reasoning(self._reasoning_title)

    def title_reasoning(self, title: str) -> None:
        self._reasoning_title = title
        if self.reasoning_collapsed:
            title = f"{title} (hidden · ctrl+t shows it)"
        self.pane("reasoning").border_title = title

    async def start(self, text: str, turn: Turn | None = None) -> None:
        """Show ``text`` as the question of a turn about to run; ``turn`` once it exists."""
        self.turn = turn
        self.remove_class("-empty")
        self.query_one("#question", Static).update(f"› {for_screen(text)}")
        self.title_reasoning(reasoning_title(None, None, reasoning_position(turn)))
        self.pane("answer").border_title = answer_title(turn)
        for stage in ("reasoning", "answer"):
            await self.pane(stage).clear()

    async def apply(self, event: TurnEvent) -> None:
        """One event of the running (or replayed) turn, in order: the one way a stage reaches the
        panes, for the chat and the replay alike."""
        pane = self.pane(event.stage)
        if isinstance(event, StageStarted):
            if event.stage == "answer":
                self.indicator.stop()
            if event.stage == "reasoning":
                self.title_reasoning(reasoning_title(None, None, reasoning_position(self.turn)))
            else:
                pane.border_title = answer_title(self.turn)
            await pane.begin(event.prefix)
        elif isinstance(event, TextChunk):
            pane.write(event.text)
            if event.stage == "reasoning":
                self.indicator.tokens = event.new_tokens
        else:
            await pane.finish(event.text, event.stats)
            if event.stage == "reasoning":
                source = self.turn.reasoning_source if self.turn is not None else None
                self.title_reasoning(reasoning_title(source, event.stats, reasoning_position(self.turn)))

    async def show_reasoning(self, turn: Turn) -> None:
        """``turn``'s reasoning as it stands, titled (one that was not generated: written, edited)."""
        self.turn = turn
        position = reasoning_position(turn)
        self.title_reasoning(reasoning_title(turn.reasoning_source, turn.reasoning_stats, position))
        await self.pane("reasoning").show(turn.reasoning or "", turn.reasoning_stats)

    async def show_turn(self, turn: Turn) -> None:
        """A finished (or saved) turn, whole."""
        await self.start(turn.user, turn)
        await self.show_reasoning(turn)
        self.pane("answer").border_title = answer_title(turn)
        await self.pane("answer").show(turn.answer or "", turn.answer_stats)

    async def reset(self) -> None:
        self.turn = None
        self.indicator.stop()
        self.add_class("-empty")
        self.query_one("#question", Static).update("")
        self.title_reasoning("Reasoning")
        self.pane("answer").border_title = "Answer"
        for stage in ("reasoning", "answer"):
            await self.pane(stage).clear()
