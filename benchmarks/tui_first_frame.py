"""Cold start of the chat app: when the first frame reaches the terminal, when torch starts being
imported, when the model is ready.

Each run is a fresh Python process in a pseudo-terminal (the real Linux driver, not the headless
one), timed from just before the process is spawned. "Cold" here means a new process with the OS
file cache as it is; the first run after a reboot is slower.

    python benchmarks/tui_first_frame.py [--model PATH] [--runs 5] [--size 120x32]

Without ``--model`` the demo model is used (it must be present).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _pty import PtyRun

# The child: watch for torch in sys.modules (the marks file gets the time), then run `reasonchat chat`.
CHILD = r"""
import os, sys, threading, time
t0 = float(os.environ["BENCH_T0"])
marks = open(os.environ["BENCH_MARKS"], "w", buffering=1)
def watch():
    while "torch" not in sys.modules:
        time.sleep(0.001)
    marks.write(f"torch_import_started {time.time() - t0:.4f}\n")
threading.Thread(target=watch, daemon=True).start()
import argparse
from reasonchat.cli import app_commands
parser = argparse.ArgumentParser()
parser.add_argument("--data-dir")
app_commands.register(parser.add_subparsers())
args = parser.parse_args(["chat", *sys.argv[1:]])
sys.exit(args.func(args))
"""
FIRST_FRAME = b"Ask anything"  # the welcome text of an empty conversation
READY = "●".encode()  # the ready state's mark (loading shows ◌)
FAILED = "✗".encode()  # the failed state's mark


def one_run(model: str | None, size: tuple[int, int], timeout: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        marks = Path(tmp) / "marks"
        env = {
            **os.environ,
            "BENCH_MARKS": str(marks),
            "REASONCHAT_DATA_DIR": str(Path(tmp) / "data"),
            "BENCH_T0": repr(time.time()),
        }
        run = PtyRun([sys.executable, "-c", CHILD, *(["--model", model] if model else [])], env, size)
        result: dict[str, float] = {}
        try:
            result["first_frame"] = run.wait_for(FIRST_FRAME, timeout)
            while READY not in run.seen:
                if FAILED in run.seen:
                    raise RuntimeError("the model failed to load")
                if run.elapsed() > timeout or not run.read():
                    raise TimeoutError(f"the model was not ready within {timeout} s")
            result["model_ready"] = run.elapsed()
        finally:
            run.close()
        for line in marks.read_text().splitlines():
            name, value = line.split()
            result[name] = float(value)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint directory (default: the demo model)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="120x32", help="terminal COLSxROWS")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    cols, rows = (int(n) for n in args.size.split("x"))
    runs = [one_run(args.model, (cols, rows), args.timeout) for _ in range(args.runs)]
    summary: dict[str, Any] = {"runs": runs}
    for key in ("first_frame", "torch_import_started", "model_ready"):
        values = [run[key] for run in runs if key in run]
        if values:
            summary[f"{key}_s_median"] = round(statistics.median(values), 3)
    summary["first_frame_before_torch"] = all(
        run.get("first_frame", 1e9) < run.get("torch_import_started", 1e9) for run in runs
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
