"""Where ``generate`` runs: a fresh thread per stage, or one long-lived thread for compiled calls.

CUDA graphs keep their state per thread (the graph pool, the recorded graphs), so every compiled call
of a model must come from the same thread; the stream is consumed elsewhere. The eager path needs no
such thread and keeps one per stage, joined when the stage ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

Job = Callable[[], None]


def run_in_new_thread(job: Job, name: str = "reasonchat-generate") -> threading.Event:
    """Start ``job`` in a thread of its own; the event is set when it has returned."""
    done = threading.Event()

    def body() -> None:
        try:
            job()
        finally:
            done.set()

    threading.Thread(target=body, name=name, daemon=True).start()
    return done


class GenerationThread:
    """One daemon thread running submitted jobs in order, for the life of a loaded model."""

    def __init__(self, name: str = "reasonchat-compiled-generate") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[Job, threading.Event] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Job) -> threading.Event:
        """Queue ``job`` (it reports its own failures); the event is set when it has returned."""
        done = threading.Event()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._jobs.put((job, done))
        return done

    def run(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in the thread, waited for: its result, or its exception raised here."""
        box: dict[str, Any] = {}

        def job() -> None:
            try:
                box["result"] = fn()
            except BaseException as err:  # handed to the caller
                box["error"] = err

        self.submit(job).wait()
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def close(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._jobs.put(None)
                self._thread = None

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, done = item
            try:
                job()
            except BaseException:  # noqa: S110 - jobs report through their own channel; the thread lives on
                pass
            finally:
                done.set()
