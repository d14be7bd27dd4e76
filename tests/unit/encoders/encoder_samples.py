"""Real test inputs for the encoder tests: skimage photos, WAV bytes, tones, espeak speech."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

PHOTO_NAMES = ("astronaut", "camera", "chelsea", "coffee", "rocket", "stereo_motorcycle", "horse")
SR = 44_100


def photo(name: str) -> np.ndarray:
    """An skimage.data picture as RGB uint8 HxWx3."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
        img = img[0]
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.dtype != np.uint8:
        img = (img * 255).astype(np.uint8) if img.max() <= 1 else img.astype(np.uint8)
    return np.ascontiguousarray(img[..., :3])


def transformed(img: np.ndarray) -> np.ndarray:
    """Crop 10% per side, mirror, brighten: what a second camera pass might look like."""
    h, w = img.shape[:2]
    crop = img[h // 10 : h - h // 10, w // 10 : w - w // 10, :][:, ::-1]
    return np.clip(crop.astype(np.float32) * 1.2 + 10, 0, 255).astype(np.uint8)


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return buf.tobytes()


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def wav_bytes(samples: np.ndarray, rate: int = SR, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(samples, dtype=np.float32), rate, format=fmt)
    return buf.getvalue()


def tone(
    freq: float, seconds: float = 1.0, amp: float = 0.5, phase: float = 0.0, rate: int = SR
) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * freq * t + phase)


def speech_wav(text: str, out: Path) -> bytes | None:
    """Speech made with espeak-ng, or None when it is not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    subprocess.run([exe, "-w", str(out), text], check=True, capture_output=True, timeout=60)
    return out.read_bytes()
