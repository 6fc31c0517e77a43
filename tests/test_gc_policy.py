"""The collector's full passes: held off while a stage streams, run once the app is quiet, and the
collector's own thresholds back whatever happens; long-lived objects frozen once per milestone."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reasonchat.tui import gc_policy


@pytest.fixture(autouse=True)
def collector() -> Iterator[list[int]]:
    """The generations of the collections that ran during the test; thresholds put back after."""
    before = gc.get_threshold()
    generations: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            generations.append(info["generation"])

    gc.callbacks.append(note)
    try:
        yield generations
    finally:
        gc.callbacks.remove(note)
        gc_policy.restore()
        gc.set_threshold(*before)


async def test_a_holder_holds_full_passes_off_until_it_releases_and_the_app_is_quiet(
    monkeypatch: pytest.MonkeyPatch, collector: list[int]
) -> None:
    monkeypatch.setattr(gc_policy, "IDLE_S", 0.05)
    young, middle, _ = before = gc.get_threshold()
    pane = object()
    gc_policy.hold(pane)
    assert gc.get_threshold()[:2] == (young, middle), "the young generations are still collected"
    assert gc.get_threshold()[2] > 10**9
    gc_policy.release(pane)
    assert gc.get_threshold()[2] > 10**9, "not before the app has been quiet for IDLE_S"
    collector.clear()
    await asyncio.sleep(0.2)
    assert gc.get_threshold() == before
    assert 2 in collector, "the pass that was held off ran"


async def test_input_postpones_the_held_off_pass(monkeypatch: pytest.MonkeyPatch, collector: list[int]) -> None:
    monkeypatch.setattr(gc_policy, "IDLE_S", 0.2)
    pane = object()
    gc_policy.hold(pane)
    gc_policy.release(pane)
    for _ in range(4):  # a key every 0.1 s: never quiet for 0.2 s
        await asyncio.sleep(0.1)
        gc_policy.note_input()
        assert gc.get_threshold()[2] > 10**9
    collector.clear()
    await asyncio.sleep(0.4)
    assert gc.get_threshold()[2] < 10**9
    assert 2 in collector


async def test_full_passes_stay_held_while_any_holder_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc_policy, "IDLE_S", 0.01)
    reasoning, answer = object(), object()
    gc_policy.hold(reasoning)
    gc_policy.hold(answer)
    gc_policy.release(reasoning)
    await asyncio.sleep(0.1)
    assert gc.get_threshold()[2] > 10**9
    gc_policy.hold(reasoning)  # a new stage before the quiet moment: still one hold, nothing pending
    gc_policy.release(reasoning)
    gc_policy.release(answer)
    await asyncio.sleep(0.1)
    assert gc.get_threshold()[2] < 10**9


async def test_restore_puts_the_thresholds_back_and_drops_the_pending_pass(
    monkeypatch: pytest.MonkeyPatch, collector: list[int]
) -> None:
    monkeypatch.setattr(gc_policy, "IDLE_S", 0.05)
    before = gc.get_threshold()
    pane = object()
    gc_policy.hold(pane)
    gc_policy.release(pane)
    gc_policy.restore()
    assert gc.get_threshold() == before
    collector.clear()
    await asyncio.sleep(0.15)
    assert 2 not in collector, "no pass after the app has gone"


def test_a_release_outside_a_loop_restores_at_once() -> None:
    before = gc.get_threshold()
    pane = object()
    gc_policy.hold(pane)
    gc_policy.release(pane)
    assert gc.get_threshold() == before


def test_each_milestone_freezes_once() -> None:
    # In a process of its own: what is frozen stays frozen.
    code = (
        "import gc\n"
        "from reasonchat.tui import gc_policy\n"
        "assert gc.get_freeze_count() == 0\n"
        "gc_policy.freeze_long_lived('app')\n"
        "first = gc.get_freeze_count()\n"
        "assert first > 0\n"
        "kept = [[] for _ in range(1000)]\n"
        "gc_policy.freeze_long_lived('app')\n"
        "assert gc.get_freeze_count() == first, 'a milestone freezes once'\n"
        "gc_policy.freeze_long_lived('model')\n"
        "assert gc.get_freeze_count() >= first + 1000\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_a_hold_lapses_after_hold_max_s_of_streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    # A long, slow generation must not keep what only a full pass frees for its whole length.
    monkeypatch.setattr(gc_policy, "HOLD_MAX_S", 0.05)
    monkeypatch.setattr(gc_policy, "IDLE_S", 0.05)
    before = gc.get_threshold()
    reasoning, answer = object(), object()
    gc_policy.hold(reasoning)
    await asyncio.sleep(0.15)
    assert gc.get_threshold() == before, "lapsed while still streaming"
    gc_policy.hold(answer)  # the next stage of the same run, without a quiet moment between
    assert gc.get_threshold() == before
    gc_policy.release(reasoning)
    gc_policy.release(answer)
    gc_policy.hold(reasoning)  # the next run holds again
    assert gc.get_threshold()[2] > 10**9
    gc_policy.release(reasoning)


@pytest.fixture
def app_frozen_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if this process had frozen the "app" milestone already (a second app in it): freezing it
    again freezes nothing, so the test process's heap is left as it is."""
    monkeypatch.setattr(gc_policy._policy, "frozen", {"app"})


@pytest.mark.usefixtures("app_frozen_before")
def test_an_apps_start_runs_no_collection_until_the_app_freezes_what_it_loaded(collector: list[int]) -> None:
    assert gc.isenabled()
    with gc_policy.starting():
        assert not gc.isenabled()
        collector.clear()
        kept = [[] for _ in range(100_000)]  # far past every generation's threshold
        assert collector == [], "no collection while the app starts"
        gc_policy.freeze_long_lived("app")  # frozen before or not, the start ends here
        assert gc.isenabled()
    assert gc.isenabled()
    del kept


def test_a_start_that_never_reaches_its_first_frame_enables_the_collector_as_it_leaves() -> None:
    with pytest.raises(RuntimeError), gc_policy.starting():
        raise RuntimeError("the terminal went away")
    assert gc.isenabled()
    with gc_policy.starting():
        gc_policy.restore()  # the app unmounted
        assert gc.isenabled()


@pytest.mark.usefixtures("app_frozen_before")
def test_a_collector_disabled_before_the_start_stays_disabled() -> None:
    gc.disable()
    try:
        with gc_policy.starting():
            gc_policy.freeze_long_lived("app")
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


COLLECTOR_DURING_A_RUN = """
import gc, json, sys, threading
from reasonchat.cli import main
from reasonchat.tui import gc_policy
from reasonchat.tui.base_app import BaseApp

seen = []
original = BaseApp.run
frozen, freeze = threading.Event(), gc_policy.freeze_long_lived

def freeze_and_tell(milestone):
    freeze(milestone)
    if milestone == "app":
        frozen.set()

gc_policy.freeze_long_lived = freeze_and_tell

async def auto_pilot(pilot):
    seen.append(["first screen", gc.isenabled()])
    for _ in range(2000):  # the warm-up after the first frame freezes what the app loaded
        if frozen.is_set():
            break
        await pilot.pause(0.01)
    seen.append(["warmed up", gc.isenabled()])
    pilot.app.exit()

def run(self, **options):
    seen.append(["app built", gc.isenabled()])
    return original(self, headless=True, auto_pilot=auto_pilot)

BaseApp.run = run
code = main(json.loads(sys.argv[1]))
seen.append(["returned", code, gc.isenabled()])
print(json.dumps(seen))
"""


def collector_during_a_run(argv: list[str], data_dir: Path) -> list[list[object]]:
    env = {**os.environ, "REASONCHAT_DATA_DIR": str(data_dir)}
    result = subprocess.run(
        [sys.executable, "-c", COLLECTOR_DURING_A_RUN, json.dumps(argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


EXPECTED_RUN = [["app built", False], ["first screen", False], ["warmed up", True], ["returned", 0, True]]


def test_a_real_replay_collects_nothing_until_its_first_frame_and_then_as_usual(tmp_path: Path) -> None:
    from reasonchat.conversation import Conversation
    from reasonchat.transfer import to_json

    conv = Conversation(title="collected")
    conv.add_turn("q").answer = "a"
    path = tmp_path / "conv.json"
    path.write_text(to_json(conv), "utf-8")
    assert collector_during_a_run(["replay", str(path), "--speed", "instant"], tmp_path / "data") == EXPECTED_RUN


def test_a_real_chat_collects_nothing_until_its_first_frame_and_then_as_usual(tmp_path: Path) -> None:
    # A server that is not there: the app starts (and reports it) without loading anything heavy.
    argv = ["chat", "--base-url", "http://127.0.0.1:9/v1"]
    assert collector_during_a_run(argv, tmp_path / "data") == EXPECTED_RUN
