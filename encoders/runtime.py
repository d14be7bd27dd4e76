"""Where and how an encoder runs: device choice, autocast dtype, host->device copies."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self

import torch

from .errors import EncoderError


def runs_on_cuda(device: str) -> bool:
    """Whether `auto|cpu|cuda[:N]` means a GPU here; never raises (the encoder load says
    what is wrong with a CUDA request on a machine without one)."""
    if device == "auto":
        return torch.cuda.is_available()
    return device.startswith("cuda")


def text_batch_size(batch_size: int, on_gpu: bool, bucket: int) -> int:
    """Texts per model call: `batch_size` on a GPU (padding is cheap there, launches are
    not), at most `bucket` on a CPU, where a batch pads to its own longest text (the length
    buckets of `encoders.sentence.SentenceEmbedder` and `encoders.minilm.MiniLMEmbedder`)."""
    return max(1, batch_size if on_gpu else min(batch_size, bucket))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn `auto|cpu|cuda[:N]` into a torch device; asking for CUDA without one is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise EncoderError(
                f"device {device!r} requested but torch sees no CUDA device; "
                "set the device to auto or cpu (LOOKOUT_DEVICE)"
            )
        return torch.device(device)
    raise EncoderError(f"unknown device {device!r}: use auto, cpu or cuda[:N]")


PRECISIONS = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Runtime:
    """How inference runs on one device: reduced precision and pinned copies only on CUDA.

    `precision` picks the CUDA autocast dtype: `auto` (bfloat16 where the GPU supports it,
    else float16, the worker's choice), or `float32` (no autocast), `float16`, `bfloat16`
    (what the GPU benchmark sweeps). On a CPU inference always runs in float32."""

    device: torch.device
    compile: bool = False
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EncoderError(
                f"unknown precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        if not self.is_cuda or self.precision == "float32":
            return None
        if self.precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return getattr(torch, self.precision)

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """inference_mode everywhere, plus bf16/fp16 autocast on CUDA."""
        with torch.inference_mode():
            dtype = self.autocast_dtype
            if dtype is None:
                yield
            else:
                with torch.autocast(device_type="cuda", dtype=dtype):
                    yield

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """Copy a host tensor to the device, through pinned memory on CUDA so it can overlap."""
        if tensor.device == self.device:
            return tensor
        if self.is_cuda and tensor.device.type == "cpu":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)

    def maybe_compile(self, module: torch.nn.Module) -> torch.nn.Module:
        """Wrap in torch.compile when asked; the first batch then pays the compile time."""
        if not self.compile:
            return module
        return torch.compile(module)  # type: ignore[return-value]


class PrecisionVariants:
    """`int8(device)` and `bf16(device)` of a text embedder, written once for both kinds
    (`encoders.minilm.MiniLMEmbedder`, `encoders.sentence.SentenceEmbedder`): each says
    how to copy itself with another model and autocast dtype (`with_model`)."""

    model: Any

    def with_model(self, model: Any, device: torch.device,
                   autocast: torch.dtype | None) -> Self:
        raise NotImplementedError

    def int8(self, device: torch.device) -> Self:
        """A CPU int8 copy (`encoders.quantize`); this one stays float32 for its other users.
        It keeps the float weights' hash: the copy is a pure function of them."""
        from .quantize import quantize_int8  # torch.ao: only when a variant is asked for

        return self.with_model(quantize_int8(self.model, device), device, None)

    def bf16(self, device: torch.device) -> Self:
        """The same model with its matmuls autocast to bfloat16 on a CPU that has native
        bf16 (`encoders.quantize.check_cpu_bf16`); shares the float weights, changes none."""
        from .quantize import check_cpu_bf16

        check_cpu_bf16(device)
        return self.with_model(self.model, device, torch.bfloat16)
