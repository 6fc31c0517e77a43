"""Standard output for every command: machine output as UTF-8 bytes, and a stdout that fails.

A stdout that cannot be written (``> /dev/full``, a full disk, a closed descriptor) ends a command with
one line on stderr and exit code 1. While a command runs, ``sys.stdout`` is ``guarded``: a failed
write or flush, from our code, ``print`` or Rich alike, raises ``OutputError``, which ``main`` reports
as it does every ``ReasonchatError``; a bare ``OSError`` could not be told apart from any other. Python
flushes stdout once more as it exits; ``discard`` points the descriptor at ``/dev/null`` so that flush
cannot fail a second time (an "Exception ignored" block, exit code 120).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from reasonchat.errors import ReasonchatError


class OutputError(ReasonchatError):
    """Standard output cannot be written."""

    @classmethod
    def from_os_error(cls, err: OSError) -> OutputError:
        return cls(f"cannot write to stdout: {err.strerror or err}")


class _Guarded:
    """A stream (stdout or its ``buffer``) whose failed writes raise ``OutputError``; the rest of it
    (``isatty``, ``fileno``, ``encoding``) is the stream's own."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: Any) -> int:
        try:
            return self._stream.write(data)
        except BrokenPipeError:
            raise  # the reader left (``| head``): ``main`` ends quietly
        except OSError as err:
            raise OutputError.from_os_error(err) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as err:
            raise OutputError.from_os_error(err) from None

    @property
    def buffer(self) -> _Guarded:
        return _Guarded(self._stream.buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Closed:
    """Stands in for ``sys.stdout`` when descriptor 1 was closed: Python leaves ``None``, and printing
    to ``None`` silently drops the output, so a command would "succeed" having written nothing."""

    encoding = "utf-8"
    errors = "strict"

    def write(self, data: Any) -> int:
        raise OutputError("cannot write to stdout: it is closed")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def buffer(self) -> _Closed:
        return self


@contextmanager
def guarded() -> Iterator[None]:
    """``sys.stdout`` guarded while a command runs; the stream itself again afterwards."""
    original = sys.stdout
    if original is None:
        _hold_descriptor_1()
        sys.stdout = _Closed()  # type: ignore[assignment]
    else:
        sys.stdout = _Guarded(original)  # type: ignore[assignment]
    try:
        yield
    finally:
        if original is not None:
            sys.stdout = original


def _hold_descriptor_1() -> None:
    # With descriptor 1 free, the next file opened (an export's temporary file, a database) would
    # become "stdout" for anything that writes to the descriptor itself: hold it on /dev/null.
    try:
        os.fstat(1)
    except OSError:
        null = os.open(os.devnull, os.O_WRONLY)
        if null != 1:
            os.dup2(null, 1)
            os.close(null)


def write_text(text: str) -> None:
    write_bytes(text.encode("utf-8"))


def write_bytes(data: bytes) -> None:
    """``data`` as it is, whatever the locale's encoding (an export imports back byte for byte)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def write_json(obj: Any) -> None:
    """Machine output: ``transfer.canonical_json``, so no control character reaches a terminal raw."""
    # Imported here: every command imports this module, and a replay by id needs no transfer code.
    from reasonchat.transfer import canonical_json

    write_text(canonical_json(obj))


def discard() -> None:
    """Send what stdout still buffers to /dev/null, so the interpreter's last flush succeeds."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real descriptor (a test's capture, the closed-stdout stand-in)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
