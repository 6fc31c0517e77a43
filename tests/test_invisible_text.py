"""Invisible text: bidi controls and zero-width characters (the "Trojan Source" class) are shown as
<U+XXXX> wherever reasonchat puts model or file text on a terminal — the app's panes, transcript and
question, the replay, ``ask`` on a TTY — and exports keep the exact text."""

from __future__ import annotations

import io
import json

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from reasonchat.conversation import Conversation, StageStats
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.engine.turn import StageFinished, TextChunk
from reasonchat.sanitize import ScreenStream, for_screen, reveal_invisible
from reasonchat.transfer import to_json, to_markdown
from tests.tui.helpers import WIDE, chat, make_app, send, wait_idle, wait_ready

# "Trojan Source": the override makes `"admin"` read like something else; a zero-width space and a
# joiner between ASCII letters hide a difference.
HOSTILE = 'if role == "user\u202e \u2066// admin\u2069\u2066":\nad\u200dmin is not admin\u200b.\nx\ufeffy \u200e\u200f\u061c'
SHOWN = (
    'if role == "user<U+202E> <U+2066>// admin<U+2069><U+2066>":\n'
    "ad<U+200D>min is not admin<U+200B>.\nx<U+FEFF>y <U+200E><U+200F><U+061C>"
)


def test_every_invisible_character_is_shown() -> None:
    assert for_screen(HOSTILE) == SHOWN


def test_joiners_inside_emoji_and_scripts_are_kept() -> None:
    family = "👨\u200d👩\u200d👧"
    persian = "می\u200cخواهم"
    assert for_screen(family) == family
    assert for_screen(persian) == persian
    assert reveal_invisible("\u200dx", before="é") == "\u200dx"  # a stream's previous chunk counts
    assert reveal_invisible("\u200dx", before="a") == "<U+200D>x"


def test_a_stream_shows_the_same_text_however_it_is_split() -> None:
    for i in range(len(HOSTILE) + 1):
        for j in range(i, len(HOSTILE) + 1, 3):
            stream = ScreenStream()
            out = stream.feed(HOSTILE[:i]) + stream.feed(HOSTILE[i:j]) + stream.feed(HOSTILE[j:]) + stream.flush()
            assert out == SHOWN


@given(st.lists(st.text(alphabet="ab\u200d\u202e\u200b👨\x1b[m", max_size=6), max_size=6))
def test_any_split_of_any_text(chunks: list[str]) -> None:
    stream = ScreenStream()
    assert "".join(stream.feed(c) for c in chunks) + stream.flush() == for_screen("".join(chunks))


def test_ask_on_a_terminal_shows_them_and_piped_output_keeps_them() -> None:
    from reasonchat.cli.ask_command import Output

    for tty, expected in ((True, SHOWN), (False, HOSTILE)):
        out = Output(json_mode=False)
        out.tty = tty
        out.console = Console(file=io.StringIO(), force_terminal=tty, color_system=None, soft_wrap=True)
        out.err = Console(file=io.StringIO())
        for i in range(0, len(HOSTILE), 4):
            out.event(TextChunk(0, "answer", HOSTILE[i : i + 4], i, 0.0))
        out.event(StageFinished(0, "answer", HOSTILE, StageStats(stop_reason="eos")))
        assert expected in out.console.file.getvalue()


def test_exports_keep_the_exact_text() -> None:
    conv = Conversation()
    turn = conv.add_turn(HOSTILE)
    turn.reasoning, turn.answer = HOSTILE, HOSTILE
    assert json.loads(to_json(conv))["conversation"]["turns"][0]["answer"] == HOSTILE
    assert "\u202e" in to_markdown(conv) and "<U+202E>" not in to_markdown(conv)


async def test_the_app_shows_them_in_the_panes_the_question_and_the_transcript() -> None:
    backend = ScriptedBackend(lambda request: HOSTILE)
    app = make_app(backend)
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, "ad\u200dmin?")
        await wait_idle(pilot)
        view = screen.turn_view
        assert view.pane("reasoning").text == SHOWN and view.pane("answer").text == SHOWN
        assert "ad<U+200D>min?" in str(view.query_one("#question").render())
        await send(pilot, "again")
        await wait_idle(pilot)
        transcript = screen.query_one("#transcript")
        answer = transcript.query(".transcript-answer").first()
        assert answer.source == SHOWN
