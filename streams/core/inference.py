"""The worker's single inference thread: every encoder call runs here, never on the loop.

One thread, because encoders are not thread-safe and a GPU serialises work anyway; off the
event loop, so Kafka heartbeats, HTTP requests and Redis I/O keep flowing while a batch is
embedded. Batches, query registration and `/search` all share it.

`is_out_of_memory` and `is_device_error` sort what an encoder call raised: a batch too
large for the device (split it), a device that failed (pause; its records are not to
blame), or neither (a bad input, as the caller decides).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

T = TypeVar("T")

#: What allocators say when a batch does not fit: CUDA, MPS, and the CPU allocator.
_OOM_MESSAGES = ("out of memory", "not enough memory")
#: What a failing accelerator says; after most of these the CUDA context is unusable.
_DEVICE_MESSAGES = ("cuda error", "cublas_status_", "cudnn_status_", "cudnn error",
                    "device-side assert", "cuda driver", "nccl error")


def is_out_of_memory(exc: BaseException) -> bool:
    """The call needed more memory than the device (or host) had left."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MESSAGES)


def is_device_error(exc: BaseException) -> bool:
    """The accelerator itself failed (not the input, not memory): retrying the records
    elsewhere in the batch would fail the same way."""
    if is_out_of_memory(exc):
        return False
    if isinstance(exc, torch.AcceleratorError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower()
                                                 for m in _DEVICE_MESSAGES)


class InferenceThread:
    """Runs callables in one dedicated thread and awaits their result."""

    def __init__(self, name: str = "lookout-inference") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._all_threads: int | None = None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def run_with_threads(self, threads: int | None, fn: Callable[..., T], *args: Any,
                               **kwargs: Any) -> T:
        """`run` with torch's intra-op threads at `threads` (at most the configured count),
        or at the configured count when None. The count is per OS thread, so setting it in
        here touches only this thread's calls."""
        return await self.run(self._with_threads, threads,
                              functools.partial(fn, *args, **kwargs))

    def _with_threads(self, threads: int | None, call: Callable[[], T]) -> T:
        if self._all_threads is None:  # what `apply_torch_threads` set, before any change
            self._all_threads = torch.get_num_threads()
        want = self._all_threads if threads is None else min(threads, self._all_threads)
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)
        return call()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
