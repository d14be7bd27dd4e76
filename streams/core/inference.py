"""The worker's single inference thread: every encoder call runs here, never on the loop.

One thread, because encoders are not thread-safe and a GPU serialises work anyway; off the
event loop, so Kafka heartbeats, HTTP requests and Redis I/O keep flowing while a batch is
embedded. Batches, query registration and `/search` all share it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class InferenceThread:
    """Runs callables in one dedicated thread and awaits their result."""

    def __init__(self, name: str = "lookout-inference") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
