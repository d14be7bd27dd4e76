"""int8 dynamic quantisation of a transformer's Linear layers for CPU inference.

Measured on all-MiniLM-L6-v2 while choosing this recipe (the demo's log templates plus
random-word lines, 394 lines): quantising every Linear with torch's defaults gives ~2x
the lines/s, but cosine vs float32 falls to 0.92 (min) because fbgemm halves the
activation range (`reduce_range`, a guard for CPUs without VNNI, whose 16-bit
accumulation would otherwise saturate); per-channel weights lift it to 0.96. With the
full activation range (safe with VNNI) and the feed-forward output projections kept in
float32 (their inputs, after GELU, carry the outliers that int8 clips) the minimum was
0.994, and the unit test holds it >= 0.99 on the bench's corpus. That is what
`quantize_int8` does; it refuses CPUs without VNNI rather than give worse vectors.

On a CPU with native bfloat16, autocasting the float model to bf16 (`check_cpu_bf16`,
`minilm:bf16`) was both faster than int8 and closer to float32 (cosine >= 0.9999).
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path

import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from .errors import EncoderError

KEEP_FLOAT = re.compile(r"(?<!attention\.)output\.dense$")
"""Linear layers left in float32: BERT's feed-forward output projections (not the
attention's `attention.output.dense`)."""


class FullRangeDynamicLinear(DynamicLinear):
    """torch's dynamic int8 Linear with the full 8-bit activation range (needs VNNI)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic(
            x, self._packed_params._packed_params, reduce_range=False
        )
        return y.to(x.dtype)


@cache
def cpu_has_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has 8-bit dot products with 32-bit sums (avx512_vnni / avx_vnni)."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_vnni|avx_vnni)\b", flags))


@cache
def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU multiplies bfloat16 natively (avx512_bf16 or amx_bf16); without it
    torch emulates bf16 matmuls and they are slower than float32."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def check_cpu_bf16(device: torch.device) -> None:
    """Refuse bfloat16 autocast where it would not pay: off the CPU, or without native bf16.

    Measured on all-MiniLM-L6-v2 (the bench's distinct lines, 2-core AMD EPYC with
    avx512_bf16): cosine vs float32 >= 0.9999 (LayerNorm, softmax and the pooling stay
    float32 under autocast) at ~1.5-2x the lines/s of float32."""
    if device.type != "cpu":
        raise EncoderError(
            f"bf16 autocast here is for CPU inference, not {device}: on a GPU the encoder "
            "already runs in bfloat16/float16; drop the :bf16"
        )
    if not cpu_has_bf16():
        raise EncoderError(
            "bf16 needs a CPU with native bfloat16 (avx512_bf16 or amx_bf16 in "
            "/proc/cpuinfo): without it bf16 is emulated and slower than float32; "
            "use the float32 encoder here"
        )


def quantize_int8(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A copy of `module` with its Linear layers (but `KEEP_FLOAT`) in dynamic int8."""
    if device.type != "cpu":
        raise EncoderError(
            f"int8 quantisation is for CPU inference, not {device}: on a GPU the encoder "
            "already runs in bfloat16/float16; drop the :int8"
        )
    if not cpu_has_vnni():
        raise EncoderError(
            "int8 quantisation needs a CPU with VNNI (avx512_vnni or avx_vnni in "
            "/proc/cpuinfo): without it int8 loses too much (cosine vs float32 < 0.99); "
            "use the float32 encoder here"
        )
    spec = {
        name: per_channel_dynamic_qconfig
        for name, layer in module.named_modules()
        if isinstance(layer, torch.nn.Linear) and not KEEP_FLOAT.search(name)
    }
    return quantize_dynamic(
        copy.deepcopy(module), spec, dtype=torch.qint8,
        mapping={torch.nn.Linear: FullRangeDynamicLinear},
    )
