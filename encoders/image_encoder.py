"""Shared decoding for frame encoders: OpenCV per item on CPU, one nvJPEG batch on CUDA."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Encoder
from .errors import EncoderInputError
from .image import JPEG_TYPES, decode_image, decode_jpegs_on_device, media_type


class ImageEncoder(Encoder):
    """A frame encoder; families fill in `_embed` over RGB uint8 HWC arrays or CHW tensors."""

    modality = "video"

    @property
    def decode_ahead(self) -> bool:
        """OpenCV on the CPU, ahead of the batch; on CUDA the batch decodes in one nvJPEG
        call instead (`decode_many`)."""
        return not self.runtime.is_cuda

    def decode(self, payload: bytes, content_type: str | None = None) -> np.ndarray:
        return decode_image(payload, content_type)

    def decode_many(
        self, payloads: Sequence[bytes], content_types: Sequence[str | None] | None = None
    ) -> list[Any]:
        """On CUDA, all-JPEG batches decode on the GPU in one call; if that batch holds a bad
        image, fall back to per-item CPU decoding so only that one is reported."""
        types = content_types or [None] * len(payloads)
        all_jpeg = all(media_type(t) in JPEG_TYPES or t is None for t in types)
        if self.runtime.is_cuda and len(payloads) > 1 and all_jpeg:
            try:
                return list(decode_jpegs_on_device(payloads, self.device))
            except EncoderInputError:
                pass  # one bad image; the CPU path below names it
        return super().decode_many(payloads, content_types)
