"""A command in a pseudo-terminal (the real Linux driver, not Textual's headless one), timed from just
before it is spawned: when does a marker first reach the terminal?"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time


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
