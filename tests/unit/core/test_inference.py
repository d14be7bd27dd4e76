"""Which encoder exceptions are the device's fault: out of memory (split the batch) or a
device error (pause), as opposed to a bad input (dead letter)."""

from __future__ import annotations

import pytest
import torch

from encoders.errors import EncoderInputError
from streams.core.inference import is_device_error, is_out_of_memory

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


def test_a_call_runs_with_the_threads_asked_for_and_then_with_all_again() -> None:
    import asyncio

    from streams.core.inference import InferenceThread

    inference = InferenceThread()

    async def calls() -> list[int]:
        await inference.run(torch.set_num_threads, 2)  # as `apply_torch_threads` at start
        seen = [await inference.run_with_threads(1, torch.get_num_threads),
                await inference.run_with_threads(None, torch.get_num_threads),
                await inference.run_with_threads(8, torch.get_num_threads)]  # capped at 2
        return seen + [await inference.run(torch.get_num_threads)]

    try:
        assert asyncio.run(calls()) == [1, 2, 2, 2]
    finally:
        inference.shutdown()
