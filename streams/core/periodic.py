"""Background work that repeats: refresh gauges, re-derive thresholds, every few seconds.

One loop for all of it: a failing tick is logged and tried again next time (a probe or a
refresh must never stop the worker), cancellation ends it, and stopping waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


async def every(interval_s: float, tick: Callable[[], Awaitable[Any]], what: str) -> None:
    """Await `tick()` every `interval_s` until cancelled; failures are logged, not raised."""
    while True:
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next tick may well succeed
            log.warning("%s failed; retrying in %.1fs", what, interval_s, exc_info=True)
        await asyncio.sleep(interval_s)


def start_task(task: asyncio.Task[None] | None, run: Callable[[], Awaitable[None]],
               name: str) -> asyncio.Task[None]:
    """`task` when it is still running, else a new task of `run()`."""
    if task is None or task.done():
        task = asyncio.get_running_loop().create_task(run(), name=name)  # type: ignore[arg-type]
    return task


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
