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
import statistics
import tempfile
from pathlib import Path
from typing import Any

from _pty import PtyRun, run_child

# The child runs `reasonchat chat` (after _pty's torch watch).
CHILD = r"""
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
    def steps(run: PtyRun) -> dict[str, float]:
        first_frame = run.wait_for(FIRST_FRAME, timeout)
        while READY not in run.seen:
            if FAILED in run.seen:
                raise RuntimeError("the model failed to load")
            if run.elapsed() > timeout or not run.read():
                raise TimeoutError(f"the model was not ready within {timeout} s")
        return {"first_frame": first_frame, "model_ready": run.elapsed()}

    with tempfile.TemporaryDirectory() as tmp:
        env = {"REASONCHAT_DATA_DIR": str(Path(tmp) / "data")}
        return run_child(CHILD, ["--model", model] if model else [], env, size, steps)


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
