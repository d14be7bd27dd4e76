"""Which encoder exceptions are the device's fault: out of memory (split the batch) or a
device error (pause), as opposed to a bad input (dead letter); and the inference lanes
every encoder call runs in."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from encoders.errors import EncoderInputError
from streams.core.inference import InferencePool, is_device_error, is_out_of_memory, lanes_for

OOM = [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough "
                 "memory: you tried to allocate 68719476736 bytes."),
    RuntimeError("MPS backend out of memory"),
    MemoryError(),
]
DEVICE = [
    torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
    RuntimeError("CUDA error: device-side assert triggered"),
    RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, ...)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"),
]
INPUT = [
    EncoderInputError("image is corrupt"),
    ValueError("expected 3 channels"),
    RuntimeError("shape '[1, 3, 224]' is invalid for input of size 7"),
    KeyError("x"),
]


@pytest.mark.parametrize("exc", OOM, ids=repr)
def test_out_of_memory_on_any_device_is_recognised(exc):
    assert is_out_of_memory(exc) and not is_device_error(exc)


@pytest.mark.parametrize("exc", DEVICE, ids=repr)
def test_device_errors_are_recognised(exc):
    assert is_device_error(exc) and not is_out_of_memory(exc)


@pytest.mark.parametrize("exc", INPUT, ids=repr)
def test_other_errors_are_neither(exc):
    assert not is_out_of_memory(exc) and not is_device_error(exc)


def test_a_call_runs_with_the_threads_asked_for_and_then_with_all_of_its_lane_again() -> None:
    inference = InferencePool(lanes=1, threads=2)
    before = torch.get_num_threads()

    async def calls() -> list[int]:
        seen = [await inference.run_with_threads(1, torch.get_num_threads),
                await inference.run_with_threads(None, torch.get_num_threads),
                await inference.run_with_threads(8, torch.get_num_threads)]  # capped at 2
        return seen + [await inference.run(torch.get_num_threads)]

    try:
        assert asyncio.run(calls()) == [1, 2, 2, 2]
        assert torch.get_num_threads() == before  # the caller's thread is not touched
    finally:
        inference.shutdown()


def test_lanes_run_calls_at_once_and_split_the_threads_between_them() -> None:
    """Two calls that each wait for the other only finish if two lanes run them at once."""
    inference = InferencePool(lanes=2, threads=4)
    both = threading.Barrier(2, timeout=10)

    def meet() -> tuple[str, int]:
        both.wait()
        return threading.current_thread().name, torch.get_num_threads()

    async def calls() -> list[tuple[str, int]]:
        return list(await asyncio.gather(inference.run(meet), inference.run(meet)))

    try:
        (name_a, threads_a), (name_b, threads_b) = asyncio.run(calls())
        assert name_a != name_b and name_a.startswith("lookout-inference")
        assert threads_a == threads_b == 2
    finally:
        inference.shutdown()


@pytest.mark.parametrize(("setting", "threads", "on_gpu", "compiled", "lanes"), [
    (0, 2, False, False, 2),   # the measured case: two single-threaded lanes on 2 cores
    (0, 16, False, False, 2),  # more is a setting until measured on a larger box
    (0, 1, False, False, 1),   # nothing to split
    (0, 8, True, False, 1),    # a GPU serialises work anyway
    (0, 8, False, True, 1),    # compiled graphs are not shared across threads
    (3, 2, True, True, 3),     # what the operator asked for
])
def test_lanes_are_chosen_by_device_and_threads_unless_set(setting, threads, on_gpu, compiled,
                                                           lanes) -> None:
    assert lanes_for(setting, threads, on_gpu=on_gpu, compiled=compiled) == lanes


def test_a_pool_refuses_zero_lanes() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InferencePool(lanes=0)
