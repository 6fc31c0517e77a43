"""Opening and replaying a 32k-token conversation: how soon is its first frame on the terminal?

Builds one conversation that fills the 32,000-token context (counted with the real Qwen2.5 tokenizer;
Markdown reasoning and answers, a recorded chunk every token, as the app stores them), saves it in a
fresh store and as a JSON export, then times fresh processes in a pseudo-terminal:

- ``replay FILE``: ``reasonchat replay conv.json`` (no import, no model) until the status bar shows,
  and until the first question is on screen;
- ``replay ID``: the same from the store;
- ``chat --continue ID``: until the last question is on screen, and until its answer is (the model
  loads after that);
- ``open from history``: in a running app with the model loaded, from Enter on the history row to the
  same two moments;
- ``replay from history``: the same, from Ctrl+R to the replay's status bar and its first question.

Baselines in the same rounds: a bare Textual app (one ``Static``: the floor of any Textual program on
this machine), a one-turn replay and a new chat (what a fresh process costs whatever the
conversation); the ratios compare the 32k-token runs with them. Replay runs also check that torch was
never imported.

``--tmux`` times the first-frame scenarios (bare app, replays, new chat) in a detached tmux session
instead, polling ``capture-pane`` until the marker shows: how the first-frame target was set.

    python benchmarks/replay_first_frame.py [--runs 5] [--size 120x32] [--tokens 32000] [--only replay_id,bare_textual_app] [--tmux]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _pty import PtyRun, run_child

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.helpers.qwen builds the tokenizer

from reasonchat.conversation import Conversation, StageStats
from reasonchat.store import Store
from reasonchat.template import DEFAULT_SYSTEM_PROMPT, apply_chat_template
from reasonchat.transfer import to_json

CHILD = r"""
from reasonchat.cli import main
sys.exit(main(sys.argv[1:]))
"""
# The same measurement for a program that does nothing but draw one line with Textual.
BARE_APP = r"""
from textual.app import App
from textual.widgets import Static


class Bare(App):
    def compose(self):
        yield Static("a bare Textual app ZBARE")


Bare().run()
"""
TITLE = "Benchmark conversation ZTITLE"
TOKENS_PER_S = 30.0  # the recorded stream's pace
_WORDS = (
    "the cache holds every token of the prompt so the next stage only prefills what is new and the "
    "answer follows from the reasoning above because each column carries into the next one when the "
    "sum passes nine and we check the result again before we write it down"
).split()


def question_mark(number: int) -> str:
    return f"Q{number:03d}MARK"


def answer_mark(number: int) -> str:
    return f"A{number:03d}MARK"


def build_conversation(count_tokens: Any, target_tokens: int, seed: int = 0) -> Conversation:
    """Turns of Markdown until the whole conversation is ``target_tokens`` long."""
    rng = random.Random(seed)

    def sentence(words: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."

    def reasoning() -> str:
        steps = [f"{n}. {sentence(14)} {sentence(10)}" for n in range(1, 9)]
        return "\n\n".join([sentence(20), "\n".join(steps), sentence(25), f"**Check:** {sentence(12)}"])

    def answer(number: int) -> str:
        code = "```python\n" + "\n".join(f"total_{n} = {n} + {n * 7}  # {sentence(4)}" for n in range(6)) + "\n```"
        items = "\n".join(f"- {sentence(9)}" for _ in range(4))
        return "\n\n".join([f"{answer_mark(number)} {sentence(18)}", items, code, sentence(15)])

    def timed(text: str, prompt_tokens: int) -> StageStats:
        tokens = count_tokens(text)
        step = max(1, len(text) // max(tokens, 1))
        chunks = [(round(i / TOKENS_PER_S, 4), min(len(text), (i + 1) * step)) for i in range(tokens)]
        chunks[-1] = (chunks[-1][0], len(text))
        return StageStats(
            prompt_tokens=prompt_tokens,
            new_tokens=tokens,
            ttft_s=0.05,
            decode_s=tokens / TOKENS_PER_S,
            stop_reason="eos",
            chunks=chunks,
        )

    conv = Conversation(title=TITLE, model="benchmark", system_prompt=DEFAULT_SYSTEM_PROMPT)
    total = 0
    while total < target_tokens:
        turn = conv.add_turn(f"{question_mark(len(conv.turns) + 1)} {sentence(16)} Why?")
        turn.reasoning = reasoning()
        turn.reasoning_stats = timed(turn.reasoning, total)
        turn.answer = answer(len(conv.turns))
        turn.answer_stats = timed(turn.answer, total + turn.reasoning_stats.new_tokens)
        total = count_tokens(apply_chat_template(conv.history(), add_reasoning_generation_prompt=False))
    return conv


def qwen_counter() -> Any:
    from tests.helpers.qwen import build_qwen_tokenizer

    cache = Path.home() / ".cache" / "reasonchat" / "bench" / "qwen-tokenizer"
    if not (cache / "tokenizer.json").exists():
        build_qwen_tokenizer(cache)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(cache / "tokenizer.json"))
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def tmux_first_frame(code: str, argv: list[str], env: dict[str, str], size: tuple[int, int], marker: bytes) -> float:
    """Seconds from starting ``python -c CODE ARGV`` in a new detached tmux session until ``marker``
    is on its screen (``capture-pane`` polled every 5 ms)."""
    session = f"rcbench{os.getpid()}"
    command = shlex.join([sys.executable, "-c", "import sys\n" + code, *argv])
    full_env = {**os.environ, **env}
    for attempt in range(3):  # a tmux server still exiting from the last session refuses the first
        started = time.perf_counter()
        created = subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), command],
            env=full_env,
            capture_output=True,
        )
        if created.returncode == 0:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"tmux new-session failed: {created.stderr.decode(errors='replace').strip()}")
    try:
        deadline = started + 60
        while time.perf_counter() < deadline:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True).stdout
            if marker in screen:
                return time.perf_counter() - started
            time.sleep(0.005)
        raise TimeoutError(f"{marker!r} never showed in tmux")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="120x32", help="terminal COLSxROWS")
    parser.add_argument("--tokens", type=int, default=32000)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--only", help="comma-separated scenario names (default: all)")
    parser.add_argument("--tmux", action="store_true", help="first frames in tmux (bare app, replays, new chat)")
    args = parser.parse_args()
    cols, rows = (int(n) for n in args.size.split("x"))
    size = (cols, rows)

    # Bytecode as an installed package has it (pip compiles at install): with PYTHONDONTWRITEBYTECODE
    # set, an editable checkout would compile every module of ours at every start, and Textual's not.
    compileall.compile_dir(str(ROOT / "src"), quiet=1)
    count = qwen_counter()
    conv = build_conversation(count, args.tokens)
    tokens = count(apply_chat_template(conv.history(), add_reasoning_generation_prompt=False))
    first, last = question_mark(1).encode(), question_mark(len(conv.turns)).encode()
    last_answer = answer_mark(len(conv.turns)).encode()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        with Store.open(data_dir) as store:
            store.save(conv)
        export = Path(tmp) / "conversation.json"
        export.write_text(to_json(conv), encoding="utf-8")
        small = Path(tmp) / "one-turn.json"  # the baseline: what any replay costs
        small.write_text(to_json(build_conversation(count, 1)), encoding="utf-8")
        timeout = args.timeout

        def replay_steps(run: PtyRun) -> dict[str, float]:
            return {"first_frame": run.wait_for(b"replaying", timeout), "first_turn": run.wait_for(first, timeout)}

        def bare_steps(run: PtyRun) -> dict[str, float]:
            return {"first_frame": run.wait_for(b"ZBARE", timeout)}

        def new_chat_steps(run: PtyRun) -> dict[str, float]:
            return {"first_frame": run.wait_for(b"Ask anything", timeout)}

        def continue_steps(run: PtyRun) -> dict[str, float]:
            return {"first_frame": run.wait_for(last, timeout), "last_answer": run.wait_for(last_answer, timeout)}

        def from_history(key: bytes, marks: dict[str, bytes]) -> Any:
            def steps(run: PtyRun) -> dict[str, float]:
                run.wait_for(b"Ask anything", timeout)
                run.wait_for("●".encode(), timeout)  # the model is loaded: the usual case
                run.write(b"\x0f")  # ctrl+o
                run.wait_for(b"ZTITLE", timeout)
                time.sleep(0.5)  # let the list settle
                since, pressed = len(run.seen), run.elapsed()
                run.write(key)
                return {name: run.wait_for(mark, timeout, since=since) - pressed for name, mark in marks.items()}

            return steps

        # name: (child code, argv, steps); each baseline is timed in the same rounds as what it is
        # compared with.
        scenarios = {
            "bare_textual_app": (BARE_APP, [], bare_steps),
            "replay_one_turn_file": (CHILD, ["replay", str(small)], replay_steps),
            "replay_file": (CHILD, ["replay", str(export)], replay_steps),
            "replay_id": (CHILD, ["replay", conv.id], replay_steps),
            "chat_new": (CHILD, ["chat"], new_chat_steps),
            "chat_continue": (CHILD, ["chat", "--continue", conv.id], continue_steps),
            "open_from_history": (CHILD, ["chat"], from_history(b"\r", {"first_frame": last, "last_answer": last_answer})),
            "replay_from_history": (CHILD, ["chat"], from_history(b"\x12", {"first_frame": b"replaying", "first_turn": first})),
        }
        if args.only:
            scenarios = {name: scenarios[name] for name in args.only.split(",")}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in scenarios}
        env = {"REASONCHAT_DATA_DIR": str(data_dir)}
        first_frame_marks = {"bare_textual_app": b"ZBARE", "chat_new": b"Ask anything"}
        if args.tmux:
            scenarios = {
                name: scenario
                for name, scenario in scenarios.items()
                if name in first_frame_marks or name.startswith("replay_") and name != "replay_from_history"
            }
        for _ in range(args.runs):  # round by round, so a busy moment hits every scenario alike
            for name, (code, argv, steps) in scenarios.items():
                if args.tmux:
                    mark = first_frame_marks.get(name, b"replaying")
                    runs[name].append({"first_frame": tmux_first_frame(code, argv, env, size, mark)})
                else:
                    runs[name].append(run_child(code, argv, env, size, steps))
        results: dict[str, Any] = {
            "conversation": {
                "turns": len(conv.turns),
                "tokens": tokens,
                "characters": sum(len(t.user) + len(t.reasoning or "") + len(t.answer or "") for t in conv.turns),
                "recorded_chunks": sum(len(s.chunks) for t in conv.turns for s in (t.reasoning_stats, t.answer_stats) if s),
                "json_bytes": export.stat().st_size,
            },
            "terminal": f"{cols}x{rows}",
        }
        for name, (_, argv, _) in scenarios.items():
            summary: dict[str, Any] = {
                key: round(statistics.median(run[key] for run in runs[name]), 3)
                for key in ("first_frame", "first_turn", "last_answer")
                if key in runs[name][0]
            }
            summary["first_frame_max"] = round(max(run["first_frame"] for run in runs[name]), 3)
            if argv[:1] == ["replay"] and not args.tmux:
                summary["torch_imported"] = any("torch_import_started" in run for run in runs[name])
            results[name] = summary
        pairs = [
            ("replay_id", "bare_textual_app"),
            ("replay_file", "bare_textual_app"),
            ("replay_file", "replay_one_turn_file"),
            ("chat_continue", "chat_new"),
        ]
        results["ratios"] = {
            f"{a} / {b}": round(results[a]["first_frame"] / results[b]["first_frame"], 2)
            for a, b in pairs
            if a in results and b in results
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
