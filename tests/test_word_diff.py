"""The word diff behind the compare screen: each side's segments give back its text exactly, identical
texts have no changes, and what is left after the changes is the same on both sides."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from reasonchat.word_diff import DiffSummary, diff_with_summary, summarize, word_diff

# Words from a small vocabulary (so random texts share some), punctuation, and every kind of space.
WORDS = st.sampled_from(["the", "sky", "blue", "red", "light", "ä", "e\u0301t", "中", "文", "x_1", "42"])
PIECES = st.one_of(
    WORDS,
    st.sampled_from([" ", "  ", "\n", "\n\n", "\t", "\u00a0", "\u3000", ".", ",", "**", "(", ")", "—"]),
    st.just("👍🏽"),
)
TEXTS = st.one_of(st.lists(PIECES, max_size=40).map("".join), st.text(max_size=60))


def joined(segments) -> str:
    return "".join(text for text, _ in segments)


def visible(segments, kinds) -> str:
    """What the segments of ``kinds`` show, spaces left out."""
    return "".join("".join(text.split()) for text, kind in segments if kind in kinds)


@settings(max_examples=400, deadline=None)
@given(TEXTS, TEXTS)
def test_each_side_joins_back_to_its_text_exactly(a: str, b: str) -> None:
    side_a, side_b = word_diff(a, b)
    assert joined(side_a) == a
    assert joined(side_b) == b
    assert {kind for _, kind in side_a} <= {"same", "removed"}
    assert {kind for _, kind in side_b} <= {"same", "added"}
    assert all(text for text, _ in side_a + side_b)  # no empty segments
    for side in (side_a, side_b):  # neighbours of one kind are merged
        assert all(x[1] != y[1] for x, y in zip(side, side[1:]))


@settings(max_examples=300, deadline=None)
@given(TEXTS, TEXTS)
def test_what_is_not_changed_is_the_same_on_both_sides(a: str, b: str) -> None:
    side_a, side_b, summary = diff_with_summary(a, b)
    assert visible(side_a, {"same"}) == visible(side_b, {"same"})
    assert summary.words_a >= summary.common <= summary.words_b
    assert 0.0 <= summary.share <= 1.0
    assert summary.changed == any(kind != "same" for _, kind in side_a + side_b)
    if a.split() == b.split():
        assert not summary.changed


@settings(max_examples=200, deadline=None)
@given(TEXTS)
def test_identical_texts_have_no_changes(text: str) -> None:
    side_a, side_b, summary = diff_with_summary(text, text)
    assert all(kind == "same" for _, kind in side_a + side_b)
    assert summary == DiffSummary(summary.words_a, summary.words_a, summary.words_a, changed=False)
    assert summary.share == 1.0 and summary.percent == 100


@given(TEXTS)
def test_against_nothing_everything_is_changed(text: str) -> None:
    side_a, side_b = word_diff(text, "")
    assert side_b == []
    assert all(kind == "removed" for part, kind in side_a if not part.isspace())


def test_a_changed_word() -> None:
    a, b = word_diff("The quick brown fox jumps.", "The quick red fox jumps.")
    assert a == [("The quick ", "same"), ("brown", "removed"), (" fox jumps.", "same")]
    assert b == [("The quick ", "same"), ("red", "added"), (" fox jumps.", "same")]


def test_a_run_of_changed_words_is_one_segment_with_its_spaces() -> None:
    a, b = word_diff("Sunlight holds every colour.", "Sunlight holds all colours.")
    assert a == [("Sunlight holds ", "same"), ("every colour", "removed"), (".", "same")]
    assert b == [("Sunlight holds ", "same"), ("all colours", "added"), (".", "same")]


def test_an_insertion_and_a_deletion() -> None:
    a, b = word_diff("so blue light is scattered", "so blue is scattered much")
    assert a == [("so blue ", "same"), ("light", "removed"), (" is scattered", "same")]
    assert b == [("so blue is scattered ", "same"), ("much", "added")]


def test_punctuation_is_diffed_apart_from_its_word() -> None:
    a, b = word_diff("scatters **blue** light", "scatters blue light")
    assert a == [
        ("scatters ", "same"),
        ("**", "removed"),
        ("blue", "same"),
        ("**", "removed"),
        (" light", "same"),
    ]
    assert b == [("scatters blue light", "same")]
    assert summarize("scatters **blue** light", "scatters blue light").common == 3


def test_spacing_and_line_breaks_alone_are_no_change() -> None:
    a, b, summary = diff_with_summary("one two\nthree", "one  two\n\nthree ")
    assert a == [("one two\nthree", "same")] and b == [("one  two\n\nthree ", "same")]
    assert not summary.changed and summary.percent == 100


def test_words_of_unspaced_scripts_are_characters() -> None:
    a, b = word_diff("天空是蓝色的", "天空是红色的")
    assert a == [("天空是", "same"), ("蓝", "removed"), ("色的", "same")]
    assert b == [("天空是", "same"), ("红", "added"), ("色的", "same")]


def test_a_combining_mark_stays_with_its_letter() -> None:
    a, b = word_diff("cafe\u0301 noir", "cafe noir")
    assert a == [("cafe\u0301", "removed"), (" noir", "same")]
    assert b == [("cafe", "added"), (" noir", "same")]


def test_a_word_used_often_is_still_matched() -> None:
    # With difflib's autojunk a word in over 1 % of a long text would never match.
    a = " ".join(["the"] * 300 + ["end"])
    b = " ".join(["the"] * 300 + ["finish"])
    summary = summarize(a, b)
    assert summary.common == 300 and summary.removed == summary.added == 1


def test_the_summary_counts_words_not_punctuation() -> None:
    summary = summarize("A b c d.", "A b c e!")
    assert (summary.words_a, summary.words_b, summary.common) == (4, 4, 3)
    assert summary.share == 0.75 and summary.percent == 75
    assert summarize("", "").share == 1.0 and summarize("...", "!!!").share == 0.0


def test_the_percentage_says_100_and_0_only_when_true() -> None:
    long = " ".join(f"w{i}" for i in range(1000))
    assert summarize(long, long + " more").percent == 99
    assert summarize(long, "w0 " + " ".join(f"v{i}" for i in range(1000))).percent == 1
    assert summarize("a b", "c d").percent == 0


def test_two_3000_word_texts_are_diffed_fast() -> None:
    """Two variants of a long reasoning (a tenth of the words changed): well under a second here
    (about 0.1 s on a desktop core); the screen runs it in a thread anyway."""
    import random

    rng = random.Random(7)
    vocabulary = [f"word{i}" for i in range(2000)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]  # Zipf, like prose
    words = rng.choices(vocabulary, weights, k=3000)
    edited = [rng.choice(vocabulary) if rng.random() < 0.1 else word for word in words]
    a, b = " ".join(words), " ".join(edited)
    started = time.perf_counter()
    side_a, side_b, summary = diff_with_summary(a, b)
    elapsed = time.perf_counter() - started
    assert joined(side_a) == a and joined(side_b) == b
    assert 0.8 < summary.share < 0.95
    assert elapsed < 2.0, elapsed


def test_the_module_is_pure() -> None:
    import subprocess
    import sys

    code = "import sys, reasonchat.word_diff; print(sorted({'textual', 'torch', 'rich'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
