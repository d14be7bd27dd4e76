"""Synthesised scenario material: camera frames from skimage photos, sounds, log lines.

Pure functions of a numpy `Generator`, so a seed fixes every pixel, sample and line.
`streams.demo.scenario` decides *when* things happen and writes the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

AUDIO_RATE = 44_100

# --- video ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VisualObject:
    """A photo that appears in front of a camera, and how a person would name it."""

    label: str
    text: str
    load: Callable[[], np.ndarray]  # RGB uint8
    example_box: tuple[float, float, float, float]  # crop (x0, y0, x1, y1) as fractions


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        image = getattr(data, name)()
        if isinstance(image, tuple):  # stereo_motorcycle -> (left, right, disparity)
            image = image[0]
        if image.ndim == 3:  # drop alpha; gray textures stay 2-D
            image = image[..., :3]
        return np.ascontiguousarray(image)

    return load


OBJECTS: dict[str, VisualObject] = {
    o.label: o
    for o in (
        VisualObject("coffee", "a cup of coffee", _skimage("coffee"), (0.12, 0.05, 0.88, 0.95)),
        VisualObject("cat", "a cat", _skimage("chelsea"), (0.08, 0.0, 0.85, 1.0)),
        VisualObject("rocket", "a rocket on a launch pad", _skimage("rocket"),
                     (0.2, 0.0, 0.85, 1.0)),
        VisualObject("astronaut", "an astronaut", _skimage("astronaut"),
                     (0.1, 0.05, 0.9, 0.95)),
        VisualObject("motorcycle", "a motorcycle", _skimage("stereo_motorcycle"),
                     (0.05, 0.1, 0.95, 0.95)),
    )
}

BACKGROUND_TINTS: dict[str, tuple[float, float, float]] = {
    "brick": (1.0, 0.78, 0.62),
    "gravel": (0.85, 0.85, 0.9),
    "grass": (0.7, 0.95, 0.6),
}


def load_background(name: str) -> np.ndarray:
    """A gray skimage texture tinted to colour: float32 HxWx3 in 0..255."""
    gray = _skimage(name)().astype(np.float32)
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    tint = np.asarray(BACKGROUND_TINTS[name], dtype=np.float32)
    return gray[..., None] * tint[None, None, :]


def resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def crop_fraction(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    return rgb[round(y0 * h): round(y1 * h), round(x0 * w): round(x1 * w)]


class CameraRenderer:
    """Renders one camera: a slowly panning, flickering, noisy background and objects."""

    def __init__(self, background: str, width: int, height: int, fps: float,
                 rng: np.random.Generator) -> None:
        tex = load_background(background)
        self.tex = resize(tex, int(width * 1.6), int(width * 1.6 * tex.shape[0] / tex.shape[1]))
        self.width, self.height, self.fps = width, height, fps
        self.noise = [rng.normal(0.0, 7.0, (height, width, 3)).astype(np.float32)
                      for _ in range(12)]
        self.phase = rng.uniform(0, 2 * np.pi, 3)
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def _object(self, label: str, scale_pct: int) -> np.ndarray:
        key = (label, scale_pct)
        if key not in self._cache:
            image = OBJECTS[label].load()
            ih, iw = image.shape[:2]
            s = min(self.height * scale_pct / 100 / ih, self.width * scale_pct / 92 / iw)
            self._cache[key] = resize(image, max(8, round(iw * s)), max(8, round(ih * s))
                                      ).astype(np.float32)
        return self._cache[key]

    def frame(self, index: int, label: str | None, event_start_s: float) -> np.ndarray:
        """Frame `index` (RGB uint8) with `label` in front when an event is on."""
        t = index / self.fps
        th, tw = self.tex.shape[:2]
        max_x, max_y = tw - self.width, th - self.height
        x = int((0.5 + 0.5 * np.sin(t / 23.0 + self.phase[0])) * max_x)
        y = int((0.5 + 0.5 * np.sin(t / 31.0 + self.phase[1])) * max_y)
        out = self.tex[y: y + self.height, x: x + self.width].copy()
        if label is not None:
            dt = t - event_start_s
            obj = self._object(label, 88 + int(4 * np.sin(dt / 2.0)))
            oh, ow = obj.shape[:2]
            cx = (self.width - ow) // 2 + int(10 * np.sin(dt / 1.7))
            cy = (self.height - oh) // 2 + int(5 * np.cos(dt / 2.3))
            cx = min(max(cx, 0), self.width - ow)
            cy = min(max(cy, 0), self.height - oh)
            out[cy: cy + oh, cx: cx + ow] = obj
        out *= 1.0 + 0.06 * np.sin(t * 0.9 + self.phase[2])
        out += self.noise[index % len(self.noise)]
        return np.clip(out, 0, 255).astype(np.uint8)


def object_example(label: str) -> np.ndarray:
    """The example image users register: another crop and scale of the object's photo."""
    obj = OBJECTS[label]
    crop = crop_fraction(obj.load(), obj.example_box)
    h, w = crop.shape[:2]
    return resize(crop, 288, max(8, round(288 * h / w)))


def background_example(renderer: CameraRenderer, index: int) -> np.ndarray:
    """What a camera sees with nothing in front of it: a negative example for its queries."""
    return renderer.frame(index, None, 0.0)


# --- audio ------------------------------------------------------------------------------

SOUND_TEXT = {
    "siren": "a two-tone siren",
    "beeping": "repeated electronic beeping",
    "crash": "a crash of breaking glass",
}


def pink_noise(n: int, rng: np.random.Generator, brown: bool = False) -> np.ndarray:
    """1/f (or 1/f^2 with `brown`) noise, unit RMS."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spectrum /= freqs ** (1.0 if brown else 0.5)
    out = np.fft.irfft(spectrum, n)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def ambience(n: int, rng: np.random.Generator, kind: str, rate: int = AUDIO_RATE) -> np.ndarray:
    """Background of a microphone: room noise (pink) or machine room (brown + mains hum)."""
    t = np.arange(n) / rate
    if kind == "machine":
        hum = 0.012 * (np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 100 * t))
        return (0.02 * pink_noise(n, rng, brown=True) + hum).astype(np.float32)
    return (0.018 * pink_noise(n, rng)).astype(np.float32)


def sound_event(label: str, duration_s: float, rng: np.random.Generator,
                rate: int = AUDIO_RATE, phase_s: float = 0.0) -> np.ndarray:
    """Samples of one event; `phase_s` shifts periodic sounds (examples use another phase)."""
    n = round(duration_s * rate)
    t = np.arange(n) / rate + phase_s
    if label == "siren":  # hi-lo siren, 0.5 s per tone, slightly squared
        freq = np.where((t // 0.5) % 2 == 0, 660.0, 880.0)
        wave = np.tanh(2.5 * np.sin(2 * np.pi * np.cumsum(freq) / rate)) * 0.28
    elif label == "beeping":  # 2 kHz beeps, 0.12 s on / 0.38 s off
        gate = ((t % 0.5) < 0.12).astype(np.float32)
        wave = 0.3 * np.sin(2 * np.pi * 2000.0 * t) * gate
    elif label == "crash":  # decaying broadband bursts with tinkling partials
        wave = np.zeros(n)
        for start in np.sort(rng.uniform(0, max(duration_s - 0.3, 0.01), 6)):
            i = round(start * rate)
            m = n - i
            tt = np.arange(m) / rate
            burst = rng.normal(size=m) * np.exp(-tt / 0.12)
            bell = sum(np.sin(2 * np.pi * f * tt) for f in rng.uniform(2500, 6000, 3))
            wave[i:] += 0.35 * burst + 0.1 * bell * np.exp(-tt / 0.3)
        wave = np.clip(wave, -0.9, 0.9)
    else:
        raise ValueError(f"unknown sound {label!r}")
    fade = min(n // 2, round(0.01 * rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[n - fade:] *= ramp[::-1]
    return wave.astype(np.float32)


# --- logs -------------------------------------------------------------------------------

NORMAL_TEMPLATES: dict[str, list[str]] = {
    "web": [
        '{ip} - - "GET /api/v1/orders/{id} HTTP/1.1" 200 {bytes} {ms}ms',
        '{ip} - - "GET /api/v1/products?page={n} HTTP/1.1" 200 {bytes} {ms}ms',
        '{ip} - - "POST /api/v1/cart/{id}/items HTTP/1.1" 201 {bytes} {ms}ms',
        '{ip} - - "GET /static/app.{hex}.js HTTP/1.1" 304 0 {ms}ms',
        "request {hex} user={user} completed in {ms} ms",
        "cache hit ratio {pct}% over the last 60 s",
        "health check ok: 3/3 upstreams healthy",
        "rate limiter: {n} requests/s, 0 rejected",
        "feature flag checkout_v2 evaluated for user {user}: on",
    ],
    "db": [
        "LOG: checkpoint complete: wrote {n} buffers ({pct}%); 0 WAL file(s) added",
        "LOG: duration: {ms} ms statement: SELECT * FROM orders WHERE id = {id}",
        'LOG: automatic vacuum of table "orders.public.{table}": index scans: 1',
        "LOG: connection authorized: user=app database=orders application_name={app}",
        "LOG: disconnection: session time: 0:00:0{d}.{ms} user=app database=orders host={ip}",
        "replication lag {ms} ms to replica db-2",
        "LOG: duration: {ms} ms statement: UPDATE carts SET updated_at = now() WHERE id = {id}",
    ],
    "auth": [
        "login succeeded for user {user} from {ip} (mfa=totp)",
        "issued access token for client {app} scope=read:orders ttl=3600s",
        "refreshed session {hex} for user {user}",
        "logout of user {user}, session {hex} closed",
        "JWKS keys rotated, 2 active signing keys",
    ],
}

# Benign lines that share words with incidents: rare, and listed as negatives.
NEAR_MISS_TEMPLATES: dict[str, list[str]] = {
    "web": ["disk usage {pct2}% on /var, within limits",
            "log rotation freed {n} MB on /var/log"],
    "db": ["LOG: memory usage {pct2}% of shared_buffers, ok",
           "connection pool resized to {d}0 connections"],
    "auth": ["password changed for user {user}",
             "single failed login for user {user} from {ip}, then success"],
}

INCIDENT_TEMPLATES: dict[str, list[str]] = {
    "disk-full": [
        "write failed: No space left on device (errno 28) path=/var/lib/app/cache/{hex}",
        "disk quota exceeded on /var for user {user}",
        "filesystem /data is 100% full, 0 MB free",
        "ENOSPC: no space left on device, open '/var/log/app/{app}.log'",
        'ERROR: could not extend file "base/{n}/{id}": No space left on device',
        "disk full: cannot write checkpoint to /data/wal",
    ],
    "oom-kill": [
        "Out of memory: Killed process {pid} ({app}) total-vm:{big}kB, anon-rss:{big}kB",
        "oom-kill: constraint=CONSTRAINT_MEMCG, task={app}, pid={pid}",
        "worker {pid} was killed by the OOM killer (memory limit 512 MiB exceeded)",
        "java.lang.OutOfMemoryError: Java heap space",
        "container {app} terminated: OOMKilled (exit code 137)",
    ],
    "db-refused": [
        "could not connect to database at {ip}:5432: Connection refused",
        'OperationalError: connection to server at "db-1" ({ip}), port 5432 failed: '
        "Connection refused",
        "database unavailable: connect ECONNREFUSED {ip}:5432",
        "DB pool: failed to open connection to postgres://db-1:5432/orders "
        "(connection refused), retry {d}/5",
    ],
    "auth-bruteforce": [
        "Failed password for invalid user {user} from {ip} port {port} ssh2",
        "authentication failure for user {user} from {ip}: invalid credentials "
        "({n} attempts in 60 s)",
        "too many failed login attempts for account {user} from {ip}; account locked for 15 min",
        "possible brute-force attack: {n} failed logins from {ip} in the last minute",
    ],
}

# Standing-query text per incident: what an operator would write (canonical error wording).
INCIDENT_TEXT: dict[str, list[str]] = {
    "disk-full": ["disk full: no space left on device", "disk quota exceeded",
                  "the filesystem is 100% full"],
    "oom-kill": ["process killed by the OOM killer: out of memory",
                 "container terminated: OOMKilled", "OutOfMemoryError"],
    "db-refused": ["cannot connect to the database: connection refused",
                   "database connection failed"],
    "auth-bruteforce": ["many failed login attempts from one address",
                        "failed password for invalid user over ssh",
                        "account locked after too many failed logins"],
}

# Negatives: benign look-alikes and neighbouring incidents (suppress when closer than positives).
NEAR_MISS_TEXT: dict[str, list[str]] = {
    "disk-full": ["disk usage is within normal limits", "log rotation freed disk space",
                  "out of memory"],
    "oom-kill": ["memory usage is normal", "no space left on device"],
    "db-refused": ["connection pool resized", "database connection authorized"],
    "auth-bruteforce": ["a single failed login followed by a successful login",
                        "password changed successfully"],
}

_USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
          "mallory", "oscar", "peggy", "trent", "victor", "walter"]
_APPS = ["checkout", "billing", "search", "inventory", "reports", "mailer"]
_TABLES = ["orders", "carts", "users", "payments", "sessions"]


def fill(template: str, rng: np.random.Generator) -> str:
    """A template with random ids, addresses, users and numbers."""
    def ip() -> str:
        return f"10.{rng.integers(0, 255)}.{rng.integers(0, 255)}.{rng.integers(1, 255)}"

    return template.format(
        ip=ip(),
        id=int(rng.integers(1000, 999_999)),
        bytes=int(rng.integers(200, 60_000)),
        ms=int(rng.integers(2, 900)),
        n=int(rng.integers(2, 400)),
        pct=int(rng.integers(40, 99)),
        pct2=int(rng.integers(30, 80)),
        hex=f"{int(rng.integers(0, 2**32)):08x}",
        user=_USERS[int(rng.integers(len(_USERS)))],
        app=_APPS[int(rng.integers(len(_APPS)))],
        table=_TABLES[int(rng.integers(len(_TABLES)))],
        d=int(rng.integers(1, 9)),
        pid=int(rng.integers(300, 65_000)),
        port=int(rng.integers(30_000, 65_000)),
        big=int(rng.integers(1_000_000, 9_000_000)),
    )
