"""Terminal safety: nothing a model or a file says may reach the terminal as a control sequence."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from reasonchat.sanitize import StreamSanitizer, sanitize

ESC, BEL, ST, ST8 = "\x1b", "\x07", "\x1b\\", "\x9c"
PAYLOAD = "ZXZpbCBjbGlwYm9hcmQ="  # base64 of "evil clipboard"


def is_forbidden(ch: str) -> bool:
    """A character that must never reach the terminal: C0 but \\n and \\t, DEL, C1."""
    code = ord(ch)
    return (code < 0x20 and ch not in "\n\t") or 0x7F <= code <= 0x9F


def assert_clean(text: str) -> None:
    bad = [f"U+{ord(c):04X}" for c in text if is_forbidden(c)]
    assert not bad, f"control characters survived: {bad}"


# --- OSC 52: clipboard ---------------------------------------------------------------------------
@pytest.mark.parametrize("terminator", [BEL, ST, ST8], ids=["BEL", "ST", "8-bit-ST"])
@pytest.mark.parametrize("selection", ["c", "p", "s", "", "cpqs01234567"])
def test_osc52_terminated(terminator: str, selection: str) -> None:
    text = f"before{ESC}]52;{selection};{PAYLOAD}{terminator}after"
    assert sanitize(text) == "beforeafter"


def test_osc52_query_and_clear() -> None:
    assert sanitize(f"a{ESC}]52;c;?{BEL}b{ESC}]52;c;!{ST}c") == "abc"


@pytest.mark.parametrize("tail", ["", "\n", "\nmore text", "中文"])
def test_osc52_unterminated(tail: str) -> None:
    out = sanitize(f"keep{ESC}]52;c;{PAYLOAD}{tail}")
    assert out.startswith("keep")
    assert PAYLOAD not in out
    assert "52;" not in out
    assert_clean(out)


def test_osc52_8bit_introducer() -> None:
    assert sanitize(f"a\x9d52;c;{PAYLOAD}{BEL}b") == "ab"
    assert sanitize(f"a\x9d52;c;{PAYLOAD}{ST8}b") == "ab"
    assert sanitize(f"a\x9d52;c;{PAYLOAD}{ST}b") == "ab"
    out = sanitize(f"a\x9d52;c;{PAYLOAD}")
    assert out == "a"


def test_osc_window_title_and_palette() -> None:
    assert sanitize(f"x{ESC}]0;pwned title{BEL}y") == "xy"
    assert sanitize(f"x{ESC}]2;t{ST}y") == "xy"
    assert sanitize(f"x{ESC}]4;1;rgb:ff/00/00{BEL}y") == "xy"
    assert sanitize(f"x{ESC}]1337;File=inline=1:AAAA{BEL}y") == "xy"  # iTerm2 image


# --- OSC 8: hyperlinks ---------------------------------------------------------------------------
@pytest.mark.parametrize("terminator", [ST, BEL, ST8], ids=["ST", "BEL", "8-bit-ST"])
def test_osc8_link_text_survives(terminator: str) -> None:
    url = "https://evil.example/phish?q=1"
    text = f"See {ESC}]8;id=x;{url}{terminator}the docs{ESC}]8;;{terminator} now."
    out = sanitize(text)
    assert out == "See the docs now."
    assert "evil" not in out


def test_osc8_8bit() -> None:
    assert sanitize("\x9d8;;https://evil.example\x9clink\x9d8;;\x9c!") == "link!"


def test_osc8_multiline_link_text() -> None:
    text = f"{ESC}]8;;http://x{ST}line 1\nline 2{ESC}]8;;{ST}"
    assert sanitize(text) == "line 1\nline 2"


# --- CSI -----------------------------------------------------------------------------------------
CSI_SEQUENCES = {
    "cursor-up": "\x1b[2A",
    "cursor-down": "\x1b[B",
    "cursor-forward": "\x1b[10C",
    "cursor-back": "\x1b[3D",
    "cursor-position": "\x1b[10;20H",
    "cursor-home": "\x1b[H",
    "hvp": "\x1b[5;5f",
    "clear-screen": "\x1b[2J",
    "clear-scrollback": "\x1b[3J",
    "erase-line": "\x1b[K",
    "scroll-region": "\x1b[1;5r",
    "insert-lines": "\x1b[5L",
    "sgr-reset": "\x1b[0m",
    "sgr-empty": "\x1b[m",
    "sgr-bold-red": "\x1b[1;31m",
    "sgr-256": "\x1b[38;5;196m",
    "sgr-truecolor": "\x1b[38;2;255;0;0m",
    "sgr-colon": "\x1b[38:2::255:0:0m",
    "sgr-hidden": "\x1b[8m",
    "hide-cursor": "\x1b[?25l",
    "alt-screen": "\x1b[?1049h",
    "mouse-on": "\x1b[?1000h",
    "bracketed-paste-off": "\x1b[?2004l",
    "cursor-shape": "\x1b[2 q",
    "device-attributes": "\x1b[c",
    "report-cursor": "\x1b[6n",
    "window-ops": "\x1b[21t",
    "soft-reset": "\x1b[!p",
    "8bit-clear": "\x9b2J",
    "8bit-sgr": "\x9b31m",
    "8bit-move": "\x9b10;20H",
}


@pytest.mark.parametrize("seq", list(CSI_SEQUENCES.values()), ids=list(CSI_SEQUENCES))
def test_csi_sequences_are_removed_whole(seq: str) -> None:
    assert sanitize(f"left{seq}right") == "leftright"
    assert sanitize(seq) == ""
    assert sanitize(seq * 3 + "x") == "x"


def test_colored_text_keeps_its_text() -> None:
    assert sanitize("\x1b[1;31mError:\x1b[0m \x1b[4mdetails\x1b[24m") == "Error: details"


def test_unterminated_csi() -> None:
    for text in ("a\x1b[", "a\x1b[12", "a\x1b[12;", "a\x1b[?"):
        assert sanitize(text) == "a"
    out = sanitize("a\x1b[12;中b")
    assert out == "a中b"
    assert_clean(out)


# --- Other escape sequences, bare ESC ------------------------------------------------------------
@pytest.mark.parametrize(
    "seq",
    [
        "\x1bc",  # full reset
        "\x1b7",  # save cursor
        "\x1b8",  # restore cursor
        "\x1bM",  # reverse index
        "\x1bD",  # index
        "\x1bE",  # next line
        "\x1b=",  # keypad mode
        "\x1b>",
        "\x1b(0",  # DEC line-drawing charset: would garble all later text
        "\x1b(B",
        "\x1b)0",
        "\x1b#8",  # screen alignment test: fills the screen with E
        "\x1b%G",
    ],
)
def test_escape_sequences_are_removed_whole(seq: str) -> None:
    assert sanitize(f"x{seq}y") == "xy"


@pytest.mark.parametrize(
    "text",
    [
        f"{ESC}Pq#0;2;0;0;0#1!14@{ST}",  # DCS (sixel)
        f"{ESC}P1$r0m{ST}",  # DCS reply
        f"{ESC}_Gf=100,a=T;AAAA{ST}",  # APC (kitty graphics)
        f"{ESC}^privacy message{ST}",  # PM
        f"{ESC}Xstart of string{ST}",  # SOS
        f"\x90q#0;2;0;0;0{ST8}",  # 8-bit DCS
        f"\x9fGf=100;AAAA{ST8}",  # 8-bit APC
        f"\x9eprivacy{ST8}",  # 8-bit PM
        f"\x98sos{ST8}",  # 8-bit SOS
    ],
)
def test_string_sequences_are_removed_whole(text: str) -> None:
    assert sanitize(f"a{text}b") == "ab"


def test_bare_esc() -> None:
    assert sanitize(ESC) == ""
    assert sanitize(f"end{ESC}") == "end"
    assert sanitize(f"{ESC}{ESC}{ESC}") == ""
    assert sanitize(f"a{ESC}\nb") == "a\nb"
    assert sanitize(f"a{ESC}\tb") == "a\tb"
    assert sanitize(f"a{ESC}中b") == "a中b"
    assert sanitize(f"a{ESC}🙂") == "a🙂"
    out = sanitize(f"a{ESC}{ESC}[31mb")
    assert out == "ab"


# --- Single control characters -------------------------------------------------------------------
# ESC starts a sequence and may take the next character with it: tested on its own above.
C0_DROPPED = [chr(c) for c in range(0x20) if chr(c) not in "\n\t\x1b"]
C1 = [chr(c) for c in range(0x80, 0xA0)]


@pytest.mark.parametrize("ch", C0_DROPPED, ids=[f"U+{ord(c):04X}" for c in C0_DROPPED])
def test_c0_controls_dropped(ch: str) -> None:
    assert sanitize(f"a{ch}b") == "ab"
    assert sanitize(ch) == ""


def test_nul() -> None:
    assert sanitize("\x00") == ""
    assert sanitize("a\x00b\x00\x00c") == "abc"


def test_bel_backspace_formfeed_vt() -> None:
    assert sanitize("ding\x07 back\x08\x08 ff\x0c vt\x0b") == "ding back ff vt"


def test_del_dropped() -> None:
    assert sanitize("a\x7fb\x7f") == "ab"


@pytest.mark.parametrize("ch", C1, ids=[f"U+{ord(c):04X}" for c in C1])
def test_c1_controls_dropped(ch: str) -> None:
    out = sanitize(f"a{ch}")
    assert out == "a"
    out = sanitize(f"a{ch}b")
    assert ch not in out and out.startswith("a")
    assert_clean(out)


def test_c1_that_are_not_sequence_introducers_keep_the_following_text() -> None:
    # NEL, IND, RI, HTS, ...: dropped alone, the text after them is not swallowed.
    for code in (*range(0x80, 0x90), *range(0x91, 0x98), 0x99, 0x9A, 0x9C):
        assert sanitize(f"a{chr(code)}bc") == "abc", f"U+{code:04X}"


def test_8bit_csi_and_osc() -> None:
    assert sanitize("x\x9b2Jy") == "xy"
    assert sanitize("x\x9b?25ly") == "xy"
    assert sanitize("x\x9d0;title\x07y") == "xy"
    assert sanitize("x\x9b") == "x"
    assert sanitize("x\x9d") == "x"


# --- Lone surrogates (json.loads turns "\\udc9b" into one) ---------------------------------------
def test_lone_surrogates_dropped() -> None:
    text = json.loads('"a\\udc9b[2Jb\\ud83d"')  # a JSON file can carry them
    assert text == "a\udc9b[2Jb\ud83d"
    out = sanitize(text)
    assert out == "a[2Jb"
    # Under the C/C.UTF-8 locale stdout uses surrogateescape: U+DC9B would go out as a bare 0x9B,
    # an 8-bit CSI. The output must encode strictly.
    assert "\udc9b".encode("utf-8", "surrogateescape") == b"\x9b"
    out.encode("utf-8")
    # A real (paired) astral character is not a surrogate in a Python str and stays.
    assert sanitize("🙂\x00") == "🙂"
    assert sanitize(json.loads('"\\ud83d\\ude42"')) == "🙂"


# --- Line endings and whitespace -----------------------------------------------------------------
def test_line_endings() -> None:
    assert sanitize("a\r\nb\r\n") == "a\nb\n"
    assert sanitize("a\rb") == "ab"  # a lone CR would let text overwrite the line
    assert sanitize("progress 10%\rprogress 100%\n") == "progress 10%progress 100%\n"
    assert sanitize("\r") == ""
    assert sanitize("\r\r\n") == "\n"
    assert sanitize("\n\r") == "\n"
    assert sanitize("a\r\n\r\nb") == "a\n\nb"


def test_newline_and_tab_kept() -> None:
    text = "def f():\n\treturn 1\n\n\t\t# done\n"
    assert sanitize(text) == text
    assert sanitize("\n") == "\n"
    assert sanitize("\t") == "\t"
    assert sanitize("") == ""


# --- Text that must pass untouched ---------------------------------------------------------------
UNTOUCHED = [
    "Hello, world!",
    "你好，世界。超过模型字数上线,已退出",
    "日本語のテキスト、한국어 텍스트",
    "emoji 🙂🚀 flags 🇨🇳🇺🇸 family 👩‍👩‍👧‍👦 skin 👍🏽 keycap 1️⃣",
    "combining: e\u0301 a\u0308 \u0915\u094d\u0937 Z\u0351\u0362a\u0336",
    "RTL: مرحبا بالعالم שלום",
    "math: ∑ x² ≤ ∞, √2 ≈ 1.414, ½",
    "latin-1: café naïve ß ÿ © ® ° ± µ ¶ · ¿ \u00a0nbsp",
    "zero-width: a\u200bb\u200dc\ufeff",
    "specials: <|im_start|>assistant\n<|reasoning|><|im_end|>",
    "brackets without ESC: [31m ]52;c;x [2J \\ ^ _ P X",
    "```python\nprint('\\x1b[31m')\n```",
    "line\u2028separator\u2029paragraph",
    "private use \ue000 and astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀",
]


@pytest.mark.parametrize("text", UNTOUCHED)
def test_safe_text_is_untouched(text: str) -> None:
    assert sanitize(text) == text


# --- Combined, realistic attack ------------------------------------------------------------------
def test_model_output_with_everything() -> None:
    text = (
        "The answer is \x1b[1m42\x1b[0m.\r\n"
        f"\x1b]52;c;{PAYLOAD}\x07"
        "\x1b[2J\x1b[H"
        f"Click {ESC}]8;;https://evil.example{ST}here{ESC}]8;;{ST}.\n"
        "\x00\x7f\x9b31m\x9d0;t\x07"
        "中文 🙂\tend\r"
    )
    assert sanitize(text) == "The answer is 42.\nClick here.\n中文 🙂\tend"


def test_linear_time_on_adversarial_input() -> None:
    pieces = ["\x1b]", "\x1b[", "\x1bP", "\x9d", "\x9b", "\x90", "\x1b", "[", ";", "1"]
    text = "".join(pieces[i % len(pieces)] for i in range(200_000))
    start = time.perf_counter()
    out = sanitize(text)
    elapsed = time.perf_counter() - start
    assert_clean(out)
    assert elapsed < 2.0
    start = time.perf_counter()
    sanitize("\x1b]" * 100_000)
    sanitize("\x1b[" + "1;" * 100_000)
    sanitize("a\x1b" * 100_000)
    assert time.perf_counter() - start < 2.0


# --- Properties ----------------------------------------------------------------------------------
FRAGMENTS = [
    ESC, "\x1b[", "\x1b]", "\x1bP", "\x1b_", "\x1b^", "\x1bX", "\x1b(", ST, BEL,
    "\x9b", "\x9c", "\x9d", "\x90", "\x98", "\x9e", "\x9f", "\x85",
    "[", "]", "\\", ";", "?", "52", "8", "c", "m", "H", "J", " ", "\r", "\n", "\t", "\r\n",
    "\x00", "\x7f", "中", "🙂", "e\u0301",
]  # fmt: skip
hostile_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec=None, categories=("Cs", "Cc", "Cf", "Lo", "So"))),
    st.text(alphabet=st.characters(max_codepoint=0xFF)),
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=30).map("".join),
)
# Text with nothing to remove: no C0 except \n and \t, no DEL, no C1 (no ESC either).
safe_text = st.text(
    alphabet=st.characters(exclude_characters="\r", exclude_categories=("Cs",)).filter(
        lambda c: not is_forbidden(c)
    )
)


@given(hostile_text)
@example("\x1b\x1b[")
@example("\r\x1b[0m\n")
@example("\x1b]\r\n")
def test_property_no_control_character_survives(text: str) -> None:
    out = sanitize(text)
    assert_clean(out)
    out.encode("utf-8")  # strict: no lone surrogate either


@given(hostile_text)
@example("\x1b\x1b[31m")
@example("\r\x1b[0m\n")
@example("\x1b[\x1b[31mm")
def test_property_idempotent(text: str) -> None:
    once = sanitize(text)
    assert sanitize(once) == once


@given(hostile_text)
def test_property_only_deletes(text: str) -> None:
    """The output is a subsequence of the input: nothing is added, replaced or reordered."""
    it = iter(text)
    assert all(ch in it for ch in sanitize(text))


@given(safe_text)
def test_property_safe_text_untouched(text: str) -> None:
    assert sanitize(text) == text


csi = st.builds(
    lambda intro, params, inter, final: intro + params + inter + final,
    st.sampled_from(["\x1b[", "\x9b"]),
    st.text(alphabet="0123456789:;<=>?", max_size=8),
    st.text(alphabet=" !\"#$%&'()*+,-./", max_size=2),
    st.characters(min_codepoint=0x40, max_codepoint=0x7E),
)
osc = st.builds(
    lambda intro, body, end: intro + body + end,
    st.sampled_from(["\x1b]", "\x9d"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
    st.sampled_from([BEL, ST, ST8]),
)
string_seq = st.builds(
    lambda intro, body, end: intro + body + end,
    st.sampled_from(["\x1bP", "\x1bX", "\x1b^", "\x1b_", "\x90", "\x98", "\x9e", "\x9f"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
    st.sampled_from([ST, ST8]),
)
escape = st.builds(
    lambda inter, final: ESC + inter + final,
    st.text(alphabet=" !\"#$%&'()*+,-./", max_size=2),
    st.characters(min_codepoint=0x30, max_codepoint=0x7E).filter(lambda c: c not in "[]PX^_"),
)
sequence = csi | osc | string_seq | escape


@given(st.lists(st.tuples(safe_text, sequence), max_size=6), safe_text)
def test_property_complete_sequences_removed_text_kept(
    parts: list[tuple[str, str]], tail: str
) -> None:
    text = "".join(t + s for t, s in parts) + tail
    assert sanitize(text) == "".join(t for t, _ in parts) + tail


# --- Streaming: StreamSanitizer ------------------------------------------------------------------
def stream(pieces: list[str]) -> list[str]:
    """What a StreamSanitizer gives for each piece, then its flush."""
    sanitizer = StreamSanitizer()
    return [sanitizer.feed(piece) for piece in pieces] + [sanitizer.flush()]


def split_at(text: str, cuts: tuple[int, ...]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def assert_streams_like_sanitize(text: str, cuts: tuple[int, ...]) -> None:
    outputs = stream(split_at(text, cuts))
    for piece in outputs:
        assert_clean(piece)
        piece.encode("utf-8")  # strict: no lone surrogate either
    assert "".join(outputs) == sanitize(text), f"split at {cuts}"


# Every kind of sequence, each with text around it, so a wrong cut shows as lost or leaked text.
STREAM_TEXTS = {
    "csi-7bit": "a\x1b[1;31mred\x1b[0m b\x1b[?25l\x1b[2 qc",
    "csi-8bit": "a\x9b2Jb\x9b38;5;196mc",
    "csi-unterminated": "a\x1b[12;中b\x1b[",
    "osc-bel": f"a{ESC}]52;c;{PAYLOAD}{BEL}b",
    "osc-st": f"a{ESC}]8;;https://evil.example{ST}link{ESC}]8;;{ST}b",
    "osc-8bit-st": f"a{ESC}]0;title{ST8}b\x9d52;c;{PAYLOAD}{ST}c",
    "osc-unterminated": f"a{ESC}]52;c;{PAYLOAD}\nnext line{ESC}]0;t",
    "osc-holding-c1": f"a{ESC}]52;\x9b2J\x90q{BEL}b",  # 8-bit starters inside a payload
    "osc-crlf": f"a{ESC}]0;t\r\nb\r{ESC}]0;u\rv{BEL}w",
    "dcs-sos-pm-apc": f"a{ESC}Pq#0;2{BEL}{ST}b{ESC}X sos {ST}c{ESC}^pm{ST8}d{ESC}_Gf=100;AA{ST}e",
    "8bit-strings": f"a\x90q#0{ST8}b\x98s{ST}c\x9ep{ST8}d\x9fG;A{ST8}e\x90open",
    "esc": f"a{ESC}(0b{ESC}7c{ESC}#8d{ESC}{ESC}[31me{ESC}\nf{ESC}",
    "crlf": "a\r\nb\r\r\nc\rd\n\re\r",
    "surrogates-c1": "a\udc9b[2Jb\ud83d\ude42c\x85d\x00\x7fe🙂",
    "mixed": f"The \x1b[1m42\x1b[0m.\r\n{ESC}]52;c;{PAYLOAD}{BEL}\x1b[2JClick {ESC}]8;;u{ST}here{ESC}]8;;{ST}.\n",
}


@pytest.mark.parametrize("text", list(STREAM_TEXTS.values()), ids=list(STREAM_TEXTS))
def test_stream_split_at_every_position(text: str) -> None:
    assert_streams_like_sanitize(text, ())
    for cut in range(len(text) + 1):
        assert_streams_like_sanitize(text, (cut,))
    assert_streams_like_sanitize(text, tuple(range(1, len(text))))  # one character at a time


@pytest.mark.parametrize("text", list(STREAM_TEXTS.values()), ids=list(STREAM_TEXTS))
def test_stream_split_at_every_pair_of_positions(text: str) -> None:
    for first in range(len(text) + 1):
        for second in range(first, len(text) + 1):
            assert_streams_like_sanitize(text, (first, second))


def test_a_sequence_split_across_chunks_leaks_nothing() -> None:
    pieces = ["ok ", f"{ESC}]52;c;", PAYLOAD[:8], PAYLOAD[8:], f"{BEL} done", "\x1b", "[2J", "!"]
    assert "".join(sanitize(p) for p in pieces) != "ok  done!", "per-chunk sanitize leaks the payload"
    assert stream(pieces) == ["ok ", "", "", "", " done", "", "", "!", ""]


def test_plain_chunks_pass_as_they_are() -> None:
    sanitizer = StreamSanitizer()
    assert sanitizer.feed("Hello") == "Hello"
    assert sanitizer.feed(", 世界 🙂\n\t") == ", 世界 🙂\n\t"
    assert sanitizer.feed("") == ""
    assert sanitizer.flush() == ""


def test_flush_and_reset_end_an_open_sequence() -> None:
    sanitizer = StreamSanitizer()
    assert sanitizer.feed("a\x1b[3") == "a"
    assert sanitizer.flush() == ""  # an unterminated sequence at the end is removed, as sanitize does
    assert sanitizer.feed("1mb") == "1mb"  # a new stream: the old sequence is gone
    assert sanitizer.feed(f"c{ESC}]0;") == "c"
    sanitizer.reset()
    assert sanitizer.feed("title") == "title"


def test_stream_of_a_long_payload_is_linear() -> None:
    """An open sequence is held as at most three characters, however long its payload runs."""
    sanitizer = StreamSanitizer()
    start = time.perf_counter()
    out = [sanitizer.feed(f"x{ESC}]52;c;")]
    out += [sanitizer.feed(PAYLOAD) for _ in range(50_000)]  # 1 MB of clipboard payload
    out += [sanitizer.feed("\x1b[" + "1;" * 5), *(sanitizer.feed("2;") for _ in range(50_000))]
    out += [sanitizer.feed("m"), sanitizer.feed("y"), sanitizer.flush()]
    assert time.perf_counter() - start < 2.0
    assert "".join(out) == "xy"


@given(hostile_text, st.lists(st.integers(min_value=0), max_size=8))
@example(f"{ESC}]52;\x9b2J{BEL}b", [5])
@example("\x1b\x1b[31m", [1, 2])
@example("a\r\nb", [2])
def test_property_any_split_streams_like_sanitize(text: str, cuts: list[int]) -> None:
    assert_streams_like_sanitize(text, tuple(sorted(c % (len(text) + 1) for c in cuts)))


@given(hostile_text)
def test_property_one_character_at_a_time(text: str) -> None:
    assert_streams_like_sanitize(text, tuple(range(1, len(text))))
