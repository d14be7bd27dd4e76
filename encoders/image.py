"""Image payloads: JPEG/PNG decoding (OpenCV on CPU, nvJPEG on CUDA), model preprocessing
and evidence thumbnails."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .content_types import media_type
from .errors import EncoderInputError

JPEG_TYPES = frozenset({"image/jpeg", "image/jpg"})
IMAGE_TYPES = JPEG_TYPES | {"image/png"}
_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_SIG, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND"
MAX_PIXELS = 64_000_000


def sniff_image(payload: bytes, content_type: str | None = None) -> str:
    """Check the container and say which it is; truncation is caught here because OpenCV
    would silently decode a cut-off JPEG as a half-grey picture."""
    if not payload:
        raise EncoderInputError("empty image payload (0 bytes)")
    declared = media_type(content_type)
    if declared and declared not in IMAGE_TYPES:
        raise EncoderInputError(
            f"unsupported image content-type {declared!r}: send image/jpeg or image/png"
        )
    if payload.startswith(_JPEG_SOI):
        if _JPEG_EOI not in payload[-64:]:
            raise EncoderInputError(
                f"truncated JPEG: no end-of-image marker (FFD9) in the last bytes "
                f"of {len(payload)} bytes"
            )
        return "image/jpeg"
    if payload.startswith(_PNG_SIG):
        if _PNG_IEND not in payload[-16:]:
            raise EncoderInputError(
                f"truncated PNG: no IEND chunk at the end of {len(payload)} bytes"
            )
        return "image/png"
    raise EncoderInputError(
        f"not a JPEG or PNG image (starts with {payload[:8].hex()}, {len(payload)} bytes)"
    )


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers


def image_size(payload: bytes, kind: str) -> tuple[int, int]:
    """(width, height) read from the PNG IHDR or the JPEG start-of-frame header, without
    decoding: a 48 KB PNG can announce 20000x20000 pixels (1.2 GB once decoded)."""
    if kind == "image/png":
        if len(payload) < 24 or payload[12:16] != b"IHDR":
            raise EncoderInputError("corrupt PNG: no IHDR header")
        return int.from_bytes(payload[16:20], "big"), int.from_bytes(payload[20:24], "big")
    i = 2
    while i + 9 <= len(payload):
        if payload[i] != 0xFF:
            raise EncoderInputError(f"corrupt JPEG: no marker at byte {i}")
        marker = payload[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            height = int.from_bytes(payload[i + 5:i + 7], "big")
            return int.from_bytes(payload[i + 7:i + 9], "big"), height
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        i += 2 + int.from_bytes(payload[i + 2:i + 4], "big")
    raise EncoderInputError("corrupt JPEG: no start-of-frame header with the image size")


def check_image_size(payload: bytes, kind: str) -> None:
    """Refuse an image whose header announces more than MAX_PIXELS, before decoding it."""
    width, height = image_size(payload, kind)
    if width == 0 or height == 0:
        raise EncoderInputError(f"image header announces {width}x{height} pixels")
    if width * height > MAX_PIXELS:
        raise EncoderInputError(
            f"image too large: its header announces {width}x{height} pixels (limit "
            f"{MAX_PIXELS:,} pixels); refused before decoding")


def decode_image(payload: bytes, content_type: str | None = None) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8 array HxWx3 (CPU, OpenCV); EncoderInputError if unusable."""
    check_image_size(payload, sniff_image(payload, content_type))
    buf = np.frombuffer(payload, dtype=np.uint8)
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as e:
        raise EncoderInputError(f"corrupt image data: OpenCV could not decode it ({e})") from e
    if bgr is None or bgr.size == 0:
        raise EncoderInputError(f"corrupt image data: OpenCV could not decode {len(payload)} bytes")
    if bgr.shape[0] * bgr.shape[1] > MAX_PIXELS:
        raise EncoderInputError(f"image too large: {bgr.shape[1]}x{bgr.shape[0]} pixels")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_jpegs_on_device(payloads: Sequence[bytes], device: torch.device) -> list[torch.Tensor]:
    """Batched nvJPEG decode -> list of CHW uint8 RGB tensors on `device`.

    Raises EncoderInputError (naming the index) when a payload is not a sound JPEG; the
    caller can then fall back to per-item CPU decoding to dead-letter just that one.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    for i, p in enumerate(payloads):
        if sniff_image(p) != "image/jpeg":
            raise EncoderInputError(f"item {i} is not a JPEG; GPU decoding takes JPEG only")
        check_image_size(p, "image/jpeg")
    datas = [torch.frombuffer(bytearray(p), dtype=torch.uint8) for p in payloads]
    try:
        return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=device))
    except RuntimeError as e:
        raise EncoderInputError(f"corrupt JPEG in batch (nvJPEG: {e})") from e


def make_thumbnail(
    rgb: np.ndarray | torch.Tensor, max_width: int = 160, quality: int = 80
) -> bytes:
    """Small JPEG of an RGB frame for alert evidence; never wider than `max_width`.

    Takes what `decode`/`decode_many` return: HWC uint8 arrays, or CHW tensors (GPU decode).
    """
    if isinstance(rgb, torch.Tensor):
        rgb = rgb.detach().permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise EncoderInputError(f"thumbnail needs an HxWx3 RGB array, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    if w > max_width:
        new_h = max(1, round(h * max_width / w))
        rgb = cv2.resize(rgb, (max_width, new_h), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise EncoderInputError("could not encode thumbnail JPEG")
    return buf.tobytes()


def thumbnail_source(rgb: np.ndarray | torch.Tensor, max_width: int) -> np.ndarray:
    """A decoded frame as `make_thumbnail` takes it, on the CPU: a tensor (GPU decode) is
    shrunk to at most `max_width` on its own device first, so a 720p frame crosses to the
    host as ~60 KB instead of 2.7 MB and the resize is not the CPU's. Arrays pass as they
    are (`make_thumbnail` resizes them wherever it runs)."""
    if not isinstance(rgb, torch.Tensor):
        return rgb
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise EncoderInputError(f"thumbnail needs a 3xHxW RGB tensor, got shape "
                                f"{tuple(rgb.shape)}")
    h, w = rgb.shape[1:]
    if w > max_width:
        size = (max(1, round(h * max_width / w)), max_width)
        rgb = F.interpolate(rgb.detach().unsqueeze(0).float(), size=size, mode="area")[0]
        rgb = rgb.round_().clamp_(0, 255)
    return rgb.permute(1, 2, 0).to("cpu", torch.uint8).numpy()


@dataclass(frozen=True)
class ImagePreprocess:
    """Size, resize mode and mean/std one model family expects; travels with its loader."""

    size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    mode: str = "squash"  # "squash": whole frame to size x size; "center_crop": CLIP style

    def recipe(self) -> dict[str, object]:
        """The parameters that shape a frame before the model sees it (part of the model id)."""
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std),
                "mode": self.mode}

    def __call__(
        self, items: Sequence[np.ndarray | torch.Tensor], device: torch.device
    ) -> torch.Tensor:
        """RGB uint8 images (HWC numpy or CHW tensor, any device) -> normalised [B,3,S,S]."""
        out = torch.empty((len(items), 3, self.size, self.size), dtype=torch.float32, device=device)
        mean = torch.tensor(self.mean, device=device).view(3, 1, 1)
        std = torch.tensor(self.std, device=device).view(3, 1, 1)
        for i, item in enumerate(items):
            out[i] = (self._resize(_as_chw(item, device)) - mean) / std
        return out

    def _resize(self, chw: torch.Tensor) -> torch.Tensor:
        x = chw.float().unsqueeze(0) / 255.0
        h, w = x.shape[-2:]
        if self.mode == "center_crop":
            scale = self.size / min(h, w)
            nh, nw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
            top, left = (nh - self.size) // 2, (nw - self.size) // 2
            x = x[..., top : top + self.size, left : left + self.size]
        else:
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
            )
        return x[0].clamp_(0.0, 1.0)


def _as_chw(item: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(item, torch.Tensor):
        return item.to(device)
    if item.ndim == 2:
        item = np.repeat(item[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(item[..., :3])).permute(2, 0, 1).to(device)
