"""SIGTERM handled like Ctrl-C by the foreground commands (producers, demo).

Turning SIGTERM into KeyboardInterrupt lets one `finally`/`except KeyboardInterrupt` path
flush producers, print the summary and stop what was started, whichever signal arrived.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a test runner thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
