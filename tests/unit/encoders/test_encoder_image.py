"""Image decoding, thumbnails and preprocessing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from encoder_samples import jpeg_bytes, png_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from encoders.errors import EncoderInputError
from encoders.image import ImagePreprocess, decode_image, make_thumbnail, thumbnail_source


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    img = np.zeros((48, 64, 3), dtype=np.uint8)
    img[..., 0] = 200  # red
    img[:, 32:, 2] = 255  # blue right half
    return img


def test_jpeg_and_png_decode_to_rgb(rgb: np.ndarray) -> None:
    from_png = decode_image(png_bytes(rgb), "image/png")
    assert from_png.shape == (48, 64, 3) and from_png.dtype == np.uint8
    assert np.array_equal(from_png, rgb)  # PNG is lossless and channel order is RGB
    from_jpeg = decode_image(jpeg_bytes(rgb), "image/jpeg; charset=binary")
    assert np.abs(from_jpeg.astype(int) - rgb.astype(int)).mean() < 6


@pytest.mark.parametrize(
    ("payload", "ctype", "reason"),
    [
        (b"", "image/jpeg", "empty"),
        (b"hello world, not a picture", "image/jpeg", "not a JPEG or PNG"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100 + b"\xff\xd9", "image/jpeg", "corrupt"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50 + b"IEND\xaeB`\x82", "image/png", "corrupt"),
        (b"\xff\xd8\xff", "image/gif", "unsupported image content-type"),
    ],
)
def test_bad_images_raise_input_error_naming_the_problem(
    payload: bytes, ctype: str, reason: str
) -> None:
    with pytest.raises(EncoderInputError, match=reason):
        decode_image(payload, ctype)


def test_truncated_jpeg_is_rejected_not_half_decoded() -> None:
    # Some OpenCV builds decode a cut-off JPEG as a half-grey picture; the EOI check catches it.
    data = jpeg_bytes(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    with pytest.raises(EncoderInputError, match="truncated JPEG"):
        decode_image(data[: len(data) // 2], "image/jpeg")


def test_truncated_png_is_rejected(rgb: np.ndarray) -> None:
    data = png_bytes(rgb)
    with pytest.raises(EncoderInputError, match="truncated PNG"):
        decode_image(data[:-30], "image/png")


def test_thumbnail_is_a_small_jpeg(rgb: np.ndarray) -> None:
    big = cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_NEAREST)
    thumb = make_thumbnail(big, max_width=160)
    assert thumb[:2] == b"\xff\xd8"
    small = decode_image(thumb, "image/jpeg")
    assert small.shape == (120, 160, 3)
    assert make_thumbnail(rgb, max_width=160)[:2] == b"\xff\xd8"  # never upscales
    assert decode_image(make_thumbnail(rgb, 160)).shape == rgb.shape
    chw = torch.from_numpy(big).permute(2, 0, 1)  # what GPU decoding hands over
    assert decode_image(make_thumbnail(chw, 160)).shape == (120, 160, 3)


@pytest.mark.parametrize("mode", ["squash", "center_crop"])
def test_preprocess_shapes_and_normalisation(rgb: np.ndarray, mode: str) -> None:
    prep = ImagePreprocess(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), mode=mode)
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    out = prep([rgb, chw], torch.device("cpu"))
    assert out.shape == (2, 3, 32, 32)
    assert torch.allclose(out[0], out[1])  # numpy HWC and tensor CHW give the same input
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert out[0, 0].mean() > 0.4  # red channel stays bright


def _png_announcing(width: int, height: int) -> bytes:
    """A tiny PNG whose header announces width x height (what a decompression bomb does)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b""))


def _jpeg_announcing(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + (17).to_bytes(2, "big") + b"\x08" + height.to_bytes(2, "big") \
        + width.to_bytes(2, "big") + b"\x03" + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xe0\x00\x04ab" + sof + b"\xff\xd9"


@pytest.mark.parametrize("make", [_png_announcing, _jpeg_announcing])
def test_decompression_bombs_are_refused_from_the_header_before_decoding(make) -> None:
    with pytest.raises(EncoderInputError, match="30000x30000 pixels.*before decoding"):
        decode_image(make(30_000, 30_000))


def test_image_size_is_read_from_real_headers(rgb: np.ndarray) -> None:
    from encoders.image import image_size

    h, w = rgb.shape[:2]
    assert image_size(jpeg_bytes(rgb), "image/jpeg") == (w, h)
    assert image_size(png_bytes(rgb), "image/png") == (w, h)


@given(h=st.integers(1, 300), w=st.integers(1, 700), max_width=st.integers(8, 200))
@settings(max_examples=60, deadline=None)
def test_a_frame_decoded_on_a_device_is_shrunk_there_to_the_thumbnails_size(
        h: int, w: int, max_width: int) -> None:
    """What crosses to the host is at most `max_width` wide, keeps the aspect ratio and is
    never enlarged; the JPEG made from it has the size the array path gives."""
    rgb = (np.random.default_rng(h * w).random((h, w, 3)) * 255).astype(np.uint8)
    chw = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    small = thumbnail_source(chw, max_width)
    assert small.dtype == np.uint8 and small.ndim == 3 and small.shape[2] == 3
    assert small.shape[1] == min(w, max_width)
    assert small.shape[0] == (h if w <= max_width else max(1, round(h * max_width / w)))
    assert decode_image(make_thumbnail(small, max_width)).shape == \
        decode_image(make_thumbnail(rgb, max_width)).shape
    assert thumbnail_source(rgb, max_width) is rgb  # arrays are resized by make_thumbnail


def test_shrinking_by_a_whole_factor_averages_like_opencv_area() -> None:
    rgb = (np.random.default_rng(1).random((480, 640, 3)) * 255).astype(np.uint8)
    chw = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    expected = cv2.resize(rgb, (160, 120), interpolation=cv2.INTER_AREA)
    assert np.abs(thumbnail_source(chw, 160).astype(int) - expected.astype(int)).max() <= 1
