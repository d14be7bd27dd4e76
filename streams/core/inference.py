"""The worker's inference lanes: every encoder call runs in one of them, never on the loop.

Off the event loop, so Kafka heartbeats, HTTP requests and Redis I/O keep flowing while a
batch is embedded; batches, query registration, matching and `/search` all share the lanes.
On a CPU, two lanes with one torch thread each embed 1.2-1.4x the items/s of one lane with
two (docs/deploy.md, "Inference lanes"): two OpenMP threads of one call wait on each other
at every operator whenever the loop, Kafka or Redis takes a core, while two independent
calls do not. On a GPU one lane: the device serialises work anyway. A family whose forward
pass is not safe in two threads at once runs one call at a time whatever the lanes
(`encoders.base.Encoder.thread_safe`).

`is_out_of_memory` and `is_device_error` sort what an encoder call raised: a batch too
large for the device (split it), a device that failed (pause; its records are not to
blame), or neither (a bad input, as the caller decides).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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


def lanes_for(setting: int, threads: int, *, on_gpu: bool, compiled: bool) -> int:
    """Inference lanes for the `inference_lanes` setting (0: choose) when torch has
    `threads` intra-op threads in all: one on a GPU or with torch.compile (whose compiled
    graphs are not shared across threads), else two while there are two threads to split
    (measured on 2 cores; more is a setting to measure on larger boxes)."""
    if setting > 0:
        return setting
    if on_gpu or compiled:
        return 1
    return 2 if threads >= 2 else 1


class InferencePool:
    """Runs callables in `lanes` dedicated threads, each with `threads // lanes` torch
    threads (at least one), and awaits their result."""

    def __init__(self, lanes: int = 1, threads: int | None = None,
                 name: str = "lookout-inference") -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, not {lanes}")
        self.lanes = lanes
        #: torch threads a call gets unless it asks for fewer; read here, in the thread
        #: that built the pool, because torch's count is per thread and the lanes change it.
        self.lane_threads = max(1, (threads or torch.get_num_threads()) // lanes)
        self._executor = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a free lane, with the lane's torch threads."""
        return await self.run_with_threads(None, fn, *args, **kwargs)

    def submit(self, threads: int | None, fn: Callable[..., T], *args: Any,
               **kwargs: Any) -> Future[T]:
        """`run_with_threads` for callers off the loop (the bare encoder bench)."""
        return self._executor.submit(self._with_threads, threads,
                                     functools.partial(fn, *args, **kwargs))

    async def run_with_threads(self, threads: int | None, fn: Callable[..., T], *args: Any,
                               **kwargs: Any) -> T:
        """`fn` in a free lane with torch's intra-op threads at `threads` (at most the
        lane's count), or at the lane's count when None. The count is per OS thread, so
        setting it in here touches only this lane's calls."""
        return await asyncio.wrap_future(self.submit(threads, fn, *args, **kwargs))

    def _with_threads(self, threads: int | None, call: Callable[[], T]) -> T:
        want = self.lane_threads if threads is None else min(threads, self.lane_threads)
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)
        return call()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
