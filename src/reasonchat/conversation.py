"""Conversations as the app keeps them: pure data, no torch, no textual.

A conversation is an optional system prompt and a list of turns; a turn is one user message and the two
generations that answer it (reasoning, then answer), each with its stats and the arrival times of its
streamed chunks, so a saved conversation can be replayed as it happened.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from reasonchat.sanitize import sanitize
from reasonchat.template import (
    ASSISTANT_ROLE,
    DEFAULT_SYSTEM_PROMPT,
    REASONING_ROLE,
    SYSTEM_ROLE,
    USER_ROLE,
    Message,
    apply_chat_template,
    continue_reasoning_prompt,
    normalize_history,
)

# "budget": the stage generated its token budget (or the context's room); "answer_now": the user ended
# the reasoning there and the answer ran from it. "max_new_tokens" is how releases before per-stage
# budgets spelled "budget": saved turns keep it, nothing writes it any more.
StopReason = Literal["eos", "budget", "answer_now", "cancelled", "error", "max_new_tokens"]
STOP_REASONS: tuple[str, ...] = get_args(StopReason)
# A stage that stopped so is done: the next stage runs from its text (a cut reasoning still gets an
# answer). A cancelled or failed stage ends the turn.
DONE_STOPS: frozenset[str] = frozenset({"eos", "budget", "answer_now", "max_new_tokens"})
# Who wrote a turn's reasoning: the model; the model, then the user changed it; the user alone; nobody
# (an empty reasoning turn, so the answer comes straight from the question).
ReasoningSource = Literal["model", "edited", "user", "none"]
REASONING_SOURCES: tuple[str, ...] = get_args(ReasoningSource)
# How a reasoning's source reads in a sentence (exports, pane titles): "reasoning written by the user".
SOURCE_WORDS: dict[str, str] = {
    "model": "reasoning by the model",
    "edited": "reasoning edited by the user",
    "user": "reasoning written by the user",
    "none": "no reasoning (answered straight from the question)",
}
Stage = Literal["reasoning", "answer"]
STAGES: tuple[Stage, Stage] = ("reasoning", "answer")
TITLE_LENGTH = 60


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def local_time(iso: str) -> str:
    """A stored timestamp as local ``YYYY-MM-DD HH:MM``; text that is not one (an imported file may
    carry anything there) is shown sanitized, as it is."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return sanitize(iso)


def new_id() -> str:
    # 48 random bits as 12 hex digits, as uuid4().hex[:12] gave. os.urandom is what secrets.token_hex
    # reads; importing uuid (platform) or secrets (hmac, hashlib) costs a replay's start 4-9 ms.
    return os.urandom(6).hex()


@dataclass
class StageStats:
    """How one generation went. ``chunks`` holds ``[seconds since the stage started, text length]``
    for every streamed chunk, in arrival order: enough to replay the stream with its timing."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    new_tokens: int = 0
    ttft_s: float | None = None
    decode_s: float | None = None
    stop_reason: StopReason | None = None
    error: str | None = None
    chunks: list[tuple[float, int]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        if not self.decode_s or self.new_tokens < 2:
            return None
        # The first token's time is the prefill (ttft); decode speed counts the tokens after it.
        return (self.new_tokens - 1) / self.decode_s

    def to_dict(self) -> dict[str, Any]:
        # Not ``asdict``: it deep-copies every chunk pair one call at a time (11 ms for a 3,000-token
        # stage, far more under load, holding the GIL at a stage's end while the app streams).
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "chunks"}
        data["chunks"] = [list(c) for c in self.chunks]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageStats:
        if not isinstance(data, dict):
            raise ValueError("stage stats must be an object")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        stats = cls(**known)
        if stats.stop_reason is not None and stats.stop_reason not in STOP_REASONS:
            raise ValueError(f"unknown stop reason {stats.stop_reason!r}")
        # File-originated: a wrong type must fail here, not later in ``tokens_per_s`` or a widget.
        for name in ("prompt_tokens", "cached_tokens", "new_tokens"):
            if not _is_int(getattr(stats, name)):
                raise ValueError(f"stage stats field {name!r} must be an integer")
        for name in ("ttft_s", "decode_s"):
            value = getattr(stats, name)
            if value is not None and not (_is_int(value) or _is_seconds(value)):
                raise ValueError(f"stage stats field {name!r} must be a number of seconds or null")
        if stats.error is not None and not isinstance(stats.error, str):
            raise ValueError("stage stats field 'error' must be a string or null")
        if not isinstance(stats.chunks, list):
            raise ValueError("stage stats field 'chunks' must be a list")
        try:
            stats.chunks = [(float(t), int(n)) for t, n in stats.chunks]
        except (TypeError, ValueError):
            raise ValueError("stage stats 'chunks' must be [seconds, length] pairs") from None
        # JSON files may hold NaN or Infinity: a replay would wait for them forever. (``min`` and
        # ``sum``, not a check call per chunk: a long conversation has tens of thousands, read before
        # its replay draws anything. NaN makes the sum NaN; non-negative finite times sum finite.)
        times = [t for t, _ in stats.chunks]
        if times and not (min(times) >= 0 and math.isfinite(sum(times))):
            raise ValueError("stage stats 'chunks' times must be finite, non-negative seconds")
        return stats


# A user's verdict on one version of a turn (a reasoning and its answer), for curating training data.
Mark = Literal["good", "bad"]
MARKS: tuple[str, ...] = get_args(Mark)


@dataclass
class AnswerVariant:
    """One answer generated (or asked for again) from a reasoning variant."""

    answer: str | None = None
    stats: StageStats | None = None
    mark: Mark | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "stats": self.stats.to_dict() if self.stats else None} | (
            {"mark": self.mark} if self.mark else {}
        )

    @classmethod
    def from_dict(cls, data: Any) -> AnswerVariant:
        if not isinstance(data, dict):
            raise ValueError("an answer variant must be an object")
        answer = data.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise ValueError("an answer variant's 'answer' must be a string or null")
        return cls(answer, _stats_or_none(data.get("stats")), parse_mark(data.get("mark")))


@dataclass
class ReasoningVariant:
    """One reasoning of a turn (the model's, a regenerated one, an edit, a continuation, the user's),
    with every answer generated from it; ``active_answer`` is the one the conversation goes on with."""

    reasoning: str | None = None
    stats: StageStats | None = None
    source: ReasoningSource = "model"
    answers: list[AnswerVariant] = field(default_factory=lambda: [AnswerVariant()])
    active_answer: int = 0

    @property
    def answer(self) -> AnswerVariant:
        return self.answers[self.active_answer]

    def to_dict(self) -> dict[str, Any]:
        return {
            "reasoning": self.reasoning,
            "stats": self.stats.to_dict() if self.stats else None,
            "source": self.source,
            "answers": [a.to_dict() for a in self.answers],
            "active_answer": self.active_answer,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ReasoningVariant:
        if not isinstance(data, dict):
            raise ValueError("a reasoning variant must be an object")
        reasoning = data.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, str):
            raise ValueError("a reasoning variant's 'reasoning' must be a string or null")
        source = data.get("source", "model")
        if source not in REASONING_SOURCES:
            raise ValueError(f"unknown reasoning source {source!r}")
        answers = data.get("answers")
        if not isinstance(answers, list) or not answers:
            raise ValueError("a reasoning variant needs a non-empty 'answers' list")
        active = _index(data.get("active_answer", 0), len(answers), "active_answer")
        return cls(reasoning, _stats_or_none(data.get("stats")), source,
                   [AnswerVariant.from_dict(a) for a in answers], active)


@dataclass(init=False)
class Turn:
    """One user message and its two generations. ``None`` means the stage has not run (or was not in
    an imported history); an empty string is a stage that produced no text.

    Nothing is overwritten: every reasoning the turn had is a ``ReasoningVariant`` (regenerated,
    edited, continued, written by the user), each with every answer generated from it. ``reasoning``,
    ``answer``, their stats and ``reasoning_source`` read and write the active path (``active``, then
    that variant's ``active_answer``), which is what prompts, the meter and exports use.
    """

    user: str
    created: str
    variants: list[ReasoningVariant]
    active: int
    # Which stored turn this is, so a save finds it even after another process appended turns before
    # it was first stored (``store.Store.save_turn``). Not content: not compared, not exported.
    uid: str = field(compare=False, repr=False)

    def __init__(
        self,
        user: str,
        reasoning: str | None = None,
        answer: str | None = None,
        reasoning_stats: StageStats | None = None,
        answer_stats: StageStats | None = None,
        created: str | None = None,
        reasoning_source: ReasoningSource = "model",
        *,
        variants: list[ReasoningVariant] | None = None,
        active: int = 0,
        uid: str | None = None,
    ) -> None:
        self.user = user
        self.created = created or now_iso()
        self.variants = variants or [
            ReasoningVariant(reasoning, reasoning_stats, reasoning_source, [AnswerVariant(answer, answer_stats)])
        ]
        self.active = _index(active, len(self.variants), "active")
        self.uid = uid or new_id()

    # --- the active path ---

    @property
    def current(self) -> ReasoningVariant:
        return self.variants[self.active]

    @property
    def reasoning(self) -> str | None:
        return self.current.reasoning

    @reasoning.setter
    def reasoning(self, value: str | None) -> None:
        self.current.reasoning = value

    @property
    def reasoning_stats(self) -> StageStats | None:
        return self.current.stats

    @reasoning_stats.setter
    def reasoning_stats(self, value: StageStats | None) -> None:
        self.current.stats = value

    @property
    def reasoning_source(self) -> ReasoningSource:
        return self.current.source

    @reasoning_source.setter
    def reasoning_source(self, value: ReasoningSource) -> None:
        self.current.source = value

    @property
    def answer(self) -> str | None:
        return self.current.answer.answer

    @answer.setter
    def answer(self, value: str | None) -> None:
        self.current.answer.answer = value

    @property
    def answer_stats(self) -> StageStats | None:
        return self.current.answer.stats

    @answer_stats.setter
    def answer_stats(self, value: StageStats | None) -> None:
        self.current.answer.stats = value

    @property
    def mark(self) -> Mark | None:
        return self.current.answer.mark

    @mark.setter
    def mark(self, value: Mark | None) -> None:
        self.current.answer.mark = value

    # --- versions ---

    @property
    def original_reasoning(self) -> str | None:
        """The turn's first reasoning, once it has another version (None: it never changed)."""
        return self.variants[0].reasoning if self.changed else None

    @property
    def original_answer(self) -> str | None:
        return self.variants[0].answers[0].answer if self.changed else None

    @property
    def changed(self) -> bool:
        return len(self.variants) > 1 or len(self.variants[0].answers) > 1

    @property
    def variant_count(self) -> int:
        """Every version of the turn: each answer of each reasoning."""
        return sum(len(v.answers) for v in self.variants)

    def add_reasoning(self, reasoning: str | None, source: ReasoningSource = "model",
                      stats: StageStats | None = None) -> ReasoningVariant:
        """A new reasoning variant (with one answer still to generate), made the active one."""
        self.variants.append(ReasoningVariant(reasoning, stats, source))
        self.active = len(self.variants) - 1
        return self.current

    def add_answer(self) -> AnswerVariant:
        """A new answer (still to generate) for the active reasoning, made the active one."""
        current = self.current
        current.answers.append(AnswerVariant())
        current.active_answer = len(current.answers) - 1
        return current.answer

    def drop_newest(self, previous: tuple[int, int]) -> None:
        """Undo ``add_reasoning``/``add_answer`` (a run that generated nothing), back to ``previous``
        (``position``'s value before it)."""
        active, answer = previous
        if len(self.variants) - 1 > active:
            self.variants.pop()
        elif len(self.current.answers) - 1 > answer:
            self.current.answers.pop()
        self.active, self.current.active_answer = active, answer

    @property
    def position(self) -> tuple[int, int]:
        return self.active, self.current.active_answer

    def select(self, reasoning: int, answer: int | None = None) -> None:
        """Make reasoning variant ``reasoning`` (and its answer ``answer``, else the one it had) active."""
        self.active = _index(reasoning, len(self.variants), "reasoning variant")
        if answer is not None:
            self.current.active_answer = _index(answer, len(self.current.answers), "answer variant")

    def text(self, stage: Stage) -> str | None:
        return self.reasoning if stage == "reasoning" else self.answer

    def stats(self, stage: Stage) -> StageStats | None:
        return self.reasoning_stats if stage == "reasoning" else self.answer_stats

    @property
    def complete(self) -> bool:
        return self.answer is not None

    def context_tokens(self) -> int:
        """Tokens this turn left in the context window: the prompt of its last stage that counted one,
        plus what that stage generated; 0 without counts (an imported turn).

        The answer's prompt already holds the reasoning prompt and the reasoning (as the tokenizer
        splits them again, with the stage's header), so it is exact where a sum of the parts is not.
        """
        for stats in (self.answer_stats, self.reasoning_stats):
            # An answer cancelled before it began has stats but never counted a prompt.
            if stats is not None and stats.prompt_tokens:
                return stats.prompt_tokens + stats.new_tokens
        return 0

    def messages(self) -> list[dict[str, str]]:
        out = [{"role": USER_ROLE, "content": self.user}]
        if self.reasoning is not None:
            out.append({"role": REASONING_ROLE, "content": self.reasoning})
        if self.answer is not None:
            out.append({"role": ASSISTANT_ROLE, "content": self.answer})
        return out

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user": self.user,
            "reasoning": self.reasoning,
            "answer": self.answer,
            "reasoning_stats": self.reasoning_stats.to_dict() if self.reasoning_stats else None,
            "answer_stats": self.answer_stats.to_dict() if self.answer_stats else None,
            "created": self.created,
            "reasoning_source": self.reasoning_source,
        }
        if self.mark is not None:
            data["mark"] = self.mark
        # Only when there are several: a turn with one version reads as it always did, and the
        # fields above stay what every reader of the format (the card's list, older releases) uses.
        if self.changed:
            data["variants"] = [v.to_dict() for v in self.variants]
            data["active"] = self.active
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        if not isinstance(data, dict):
            raise ValueError("a turn must be an object")
        for key in ("user", "reasoning", "answer", "original_reasoning", "original_answer"):
            value = data.get(key)
            if key == "user" and not isinstance(value, str):
                raise ValueError("a turn needs a 'user' string")
            if value is not None and not isinstance(value, str):
                raise ValueError(f"turn field {key!r} must be a string or null")
        created = str(data.get("created") or now_iso())
        if "variants" in data:
            variants = data["variants"]
            if not isinstance(variants, list) or not variants:
                raise ValueError("a turn's 'variants' must be a non-empty list")
            tree = [ReasoningVariant.from_dict(v) for v in variants]
            return cls(data["user"], created=created, variants=tree,
                       active=_index(data.get("active", 0), len(tree), "active"))
        # Files of releases before provenance have none: their reasonings were all the model's.
        source = data.get("reasoning_source", "model")
        if source not in REASONING_SOURCES:
            raise ValueError(f"unknown reasoning source {source!r}")
        turn = cls(
            user=data["user"],
            reasoning=data.get("reasoning"),
            answer=data.get("answer"),
            reasoning_stats=_stats_or_none(data.get("reasoning_stats")),
            answer_stats=_stats_or_none(data.get("answer_stats")),
            created=created,
            reasoning_source=source,
        )
        turn.mark = parse_mark(data.get("mark"))
        turn.keep_first_version(data.get("original_reasoning"), data.get("original_answer"))
        return turn

    def keep_first_version(self, reasoning: str | None, answer: str | None) -> None:
        """The model's first reasoning and answer, as releases before variants kept them (beside the
        turn's current ones), as the first version: the current one stays active."""
        if reasoning is None and answer is None:
            return
        if reasoning == self.reasoning:  # only the answer was asked again
            self.current.answers.insert(0, AnswerVariant(answer))
            self.current.active_answer += 1
        else:
            self.variants.insert(0, ReasoningVariant(reasoning, None, "model", [AnswerVariant(answer)]))
            self.active += 1


def parse_mark(value: Any) -> Mark | None:
    if value is not None and value not in MARKS:
        raise ValueError(f"unknown mark {value!r} (choose from {', '.join(MARKS)})")
    return value


def _index(value: Any, count: int, name: str) -> int:
    if not _is_int(value) or not 0 <= value < count:
        raise ValueError(f"{name} must be an index below {count}")
    return value


def _is_seconds(value: object) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and 0 <= value < math.inf


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _stats_or_none(data: Any) -> StageStats | None:
    return None if data is None else StageStats.from_dict(data)


def make_title(text: str) -> str:
    """A one-line title from the first user message."""
    line = " ".join(sanitize(text).split())
    if len(line) > TITLE_LENGTH:
        line = line[: TITLE_LENGTH - 1].rstrip() + "…"
    return line or "(empty)"


@dataclass
class Conversation:
    id: str = field(default_factory=new_id)
    title: str = ""
    created: str = field(default_factory=now_iso)
    updated: str = ""
    model: str = ""
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    turns: list[Turn] = field(default_factory=list)
    # The store's revision of this conversation that these turns reflect (0: never stored or read);
    # the store bumps it on every write of turns, so a later writer can tell another one came between.
    revision: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.updated:
            self.updated = self.created

    def touch(self) -> None:
        self.updated = now_iso()

    def context_tokens(self) -> int:
        """Tokens the conversation occupies in the context window, as its latest turn with counts left
        them (``Turn.context_tokens``); 0 when no turn has counts."""
        return next((n for turn in reversed(self.turns) if (n := turn.context_tokens())), 0)

    def fork(self, upto: int) -> Conversation:
        """A new conversation that goes on from this one's first ``upto`` turns (copies, each with
        every version it has): editing an earlier question goes on there, and this conversation keeps
        its later turns as they were."""
        turns = []
        for turn in self.turns[:upto]:
            copied = Turn.from_dict(turn.to_dict())  # a deep copy, with a uid of its own
            copied.created = turn.created
            turns.append(copied)
        title = f"{self.title} (fork)" if self.title else ""
        return Conversation(title=title, model=self.model, system_prompt=self.system_prompt, turns=turns)

    def add_turn(self, user: str) -> Turn:
        turn = Turn(user=user)
        self.turns.append(turn)
        if not self.title:
            self.title = make_title(user)
        self.touch()
        return turn

    def history(self, upto: int | None = None) -> list[dict[str, str]]:
        """The card's ``history`` list, for the first ``upto`` turns (all of them by default)."""
        out = []
        if self.system_prompt is not None:
            out.append({"role": SYSTEM_ROLE, "content": self.system_prompt})
        for turn in self.turns[:upto]:
            out.extend(turn.messages())
        return out

    def stage_prompt(self, turn_index: int, stage: Stage) -> str:
        """The exact prompt text for one stage of turn ``turn_index`` (the card's template).

        Stage 1 sees the history up to and including the user message; stage 2 also sees the
        reasoning turn and asks for ``assistant`` (not for reasoning again, as the card's loop did).
        """
        turn = self.turns[turn_index]
        history = self.history(turn_index)
        history.append({"role": USER_ROLE, "content": turn.user})
        if stage == "reasoning":
            return apply_chat_template(history, add_reasoning_generation_prompt=True)
        history.append({"role": REASONING_ROLE, "content": turn.reasoning or ""})
        return apply_chat_template(
            history, add_reasoning_generation_prompt=False, add_assistant_generation_prompt=True
        )

    def continuation_prompt(self, turn_index: int) -> str:
        """Stage 1 of turn ``turn_index`` resumed from its reasoning so far ("think more")."""
        turn = self.turns[turn_index]
        history = self.history(turn_index)
        history.append({"role": USER_ROLE, "content": turn.user})
        return continue_reasoning_prompt(history, turn.reasoning or "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "created": self.created,
            "updated": self.updated,
            "model": self.model,
            "system_prompt": self.system_prompt,
            "turns": [t.to_dict() for t in self.turns],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversation:
        if not isinstance(data, dict):
            raise ValueError("a conversation must be an object")
        turns = data.get("turns")
        if not isinstance(turns, list):
            raise ValueError("a conversation needs a 'turns' list")
        system = data.get("system_prompt")
        if system is not None and not isinstance(system, str):
            raise ValueError("'system_prompt' must be a string or null")
        parsed = []
        for index, turn in enumerate(turns):
            try:
                parsed.append(Turn.from_dict(turn))
            except (ValueError, TypeError) as err:
                raise ValueError(f"turn {index}: {err}") from None
        conv = cls(
            id=str(data.get("id") or new_id()),
            title=str(data.get("title") or ""),
            created=str(data.get("created") or now_iso()),
            updated=str(data.get("updated") or ""),
            model=str(data.get("model") or ""),
            system_prompt=system,
            turns=parsed,
        )
        if not conv.title and parsed:
            conv.title = make_title(parsed[0].user)
        return conv

    @classmethod
    def from_history(cls, history: Iterable[Message], **fields: Any) -> Conversation:
        """Build a conversation from the card's ``history`` list; ``history()`` gives it back as it was.

        Accepted shape: an optional leading system message, then turns of ``user``, optionally
        ``<|reasoning|>``, optionally ``assistant``. Anything else raises ``ValueError`` naming the index.
        """
        messages = normalize_history(history)
        system: str | None = None
        start = 0
        if messages and messages[0]["role"] == SYSTEM_ROLE:
            system, start = messages[0]["content"], 1
        turns: list[Turn] = []
        for index in range(start, len(messages)):
            role, content = messages[index]["role"], messages[index]["content"]
            last = turns[-1] if turns else None
            if role == USER_ROLE:
                turns.append(Turn(user=content))
            elif role == REASONING_ROLE and last and last.reasoning is None and last.answer is None:
                last.reasoning = content
            elif role == ASSISTANT_ROLE and last and last.answer is None:
                last.answer = content
            else:
                expected = _expected_after(last, index == 0)
                raise ValueError(f"message {index}: unexpected role {role!r} here (expected {expected})")
        conv = cls(system_prompt=system, turns=turns, **fields)
        if not conv.title and turns:
            conv.title = make_title(turns[0].user)
        return conv


def _expected_after(last: Turn | None, first: bool) -> str:
    if last is None:
        return "'system' or 'user'" if first else "'user'"
    if last.answer is not None:
        return "'user'"
    if last.reasoning is not None:
        return "'assistant' or 'user'"
    return f"{REASONING_ROLE!r}, 'assistant' or 'user'"

