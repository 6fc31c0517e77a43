"""A command in a pseudo-terminal (the real Linux driver, not Textual's headless one), timed from just
before it is spawned: when does a marker first reach the terminal?"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable
from pathlib import Path

# The start of a child's code: it writes "torch_import_started SECONDS" to $BENCH_MARKS, timed from
# $BENCH_T0, as soon as anything imports torch.
TORCH_WATCH = r"""
import os, sys, threading, time
marks = open(os.environ["BENCH_MARKS"], "w", buffering=1)
t0 = float(os.environ["BENCH_T0"])
def watch():
    while "torch" not in sys.modules:
        time.sleep(0.001)
    marks.write(f"torch_import_started {time.time() - t0:.4f}\n")
threading.Thread(target=watch, daemon=True).start()
"""


class PtyRun:
    def __init__(self, argv: list[str], env: dict[str, str], size: tuple[int, int]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.master = master
        self.seen = b""
        self.started = time.time()
        env = {"TERM": "xterm-256color", **env}
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)

    def elapsed(self) -> float:
        return time.time() - self.started

    def read(self, timeout: float = 0.05) -> bool:
        """Whatever arrived within ``timeout``; False once the terminal is closed."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.seen += os.read(self.master, 1 << 16)
            except OSError:
                return False
        return True

    def wait_for(self, marker: bytes, timeout: float, since: int = 0) -> float:
        """Seconds since the spawn when ``marker`` first appeared after byte ``since`` of the output."""
        deadline = time.time() + timeout
        while marker not in self.seen[since:]:
            if time.time() > deadline or not self.read():
                tail = self.seen[-400:].decode("utf-8", "replace")
                raise TimeoutError(f"{marker!r} did not appear within {timeout} s; last output: {tail!r}")
        return self.elapsed()

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self, quit_keys: bytes = b"\x11") -> None:
        try:
            self.write(quit_keys)
            deadline = time.time() + 30
            while self.proc.poll() is None and time.time() < deadline:
                self.read()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.master)


def run_child(
    code: str,
    argv: list[str],
    env: dict[str, str],
    size: tuple[int, int],
    steps: Callable[[PtyRun], dict[str, float]],
) -> dict[str, float]:
    """``python -c TORCH_WATCH + code ARGV`` in a terminal of ``size``: what ``steps`` measured, plus
    the child's marks (``torch_import_started`` if it imported torch)."""
    with tempfile.TemporaryDirectory() as tmp:
        marks = Path(tmp) / "marks"
        env = {**os.environ, **env, "BENCH_MARKS": str(marks), "BENCH_T0": repr(time.time())}
        run = PtyRun([sys.executable, "-c", TORCH_WATCH + code, *argv], env, size)
        try:
            result = steps(run)
        finally:
            run.close()
        for line in marks.read_text().splitlines():
            name, value = line.split()
            result[name] = float(value)
    return result
