"""Evidence of indexed items: `GET /items/{key}/thumb`, the thumbnail (JPEG) of a frame, and
`GET /items/{key}/audio`, the clip of an audio item (every item keeps a small one,
`LOOKOUT_AUDIO_CLIP_FORMAT` at `LOOKOUT_AUDIO_CLIP_RATE_HZ`; one that raised an alert keeps
its chunk as sent)."""

from __future__ import annotations

import io
import wave

import numpy as np
from aiohttp import web

from encoders.content_types import media_type, pcm_format
from streams.alerting.service import AlertingService
from streams.api.errors import ApiError
from streams.api.models import ErrorBody
from streams.api.openapi import Reply, Route, RouteSpec, bind
from streams.index.store import IndexStore

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/items/{key}/thumb", "JPEG thumbnail of an indexed frame.", "search",
              operation_id="getThumbnail",
              responses={200: Reply("the thumbnail", media_type="image/jpeg",
                                    schema={"type": "string", "contentMediaType": "image/jpeg"}),
                         404: Reply("no such item or no thumbnail", ErrorBody)}),
    RouteSpec("GET", "/items/{key}/audio",
              "The clip of an audio item, so that a browser can play it: the chunk as sent "
              "when it raised an alert (WAV or FLAC), else the mono clip every audio item "
              "keeps (LOOKOUT_AUDIO_CLIP_FORMAT at LOOKOUT_AUDIO_CLIP_RATE_HZ: "
              "audio/ogg; codecs=opus by default, served as kept); raw audio/L16 comes back "
              "as WAV.",
              "search",
              operation_id="getAudioClip",
              responses={200: Reply("the chunk", media_type="audio/*",
                                    schema={"type": "string", "contentMediaType": "audio/*"}),
                         404: Reply("no such item, or no clip kept for it", ErrorBody)}),
)


def playable(payload: bytes, content_type: str) -> tuple[bytes, str]:
    """(bytes, media type) a browser's <audio> plays: Ogg clips (Opus, Vorbis), WAV and
    FLAC as they are, with their type; raw big-endian PCM (audio/L16, RFC 2586) wrapped
    into a little-endian WAV (the only one re-encoded: browsers do not play L16)."""
    media = media_type(content_type)
    if media == "audio/ogg":
        return payload, content_type  # e.g. `audio/ogg; codecs=opus`, as kept
    if media != "audio/l16":
        return payload, "audio/flac" if media == "audio/flac" else "audio/wav"
    rate, channels = pcm_format(content_type)
    samples = np.frombuffer(payload[: len(payload) // 2 * 2], dtype=">i2").astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return out.getvalue(), "audio/wav"


def routes(service: AlertingService) -> list[Route]:
    stores = service.index_stores

    def store_of(key: str) -> IndexStore:
        store = next((s for s in stores.values() if key.startswith(s.key_prefix)), None)
        if store is None:
            prefixes = sorted(s.key_prefix for s in stores.values())
            raise ApiError(404, f"no such item: item keys start with one of {prefixes}; "
                                f"got {key!r}")
        return store

    async def thumb(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        data = await store_of(key).thumbnail(key)
        if not data:
            raise ApiError(404, f"item {key} has no thumbnail (not a frame, or expired)")
        return web.Response(
            body=data, content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def audio(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        kept = await store_of(key).clip(key)
        if kept is None:
            raise ApiError(404, f"item {key} has no clip: not audio, expired, or indexed "
                                "with LOOKOUT_AUDIO_CLIP_RATE_HZ=0 and raised no alert")
        body, media = playable(*kept)
        return web.Response(body=body, content_type=media,
                            headers={"Cache-Control": "max-age=3600"})

    return bind(ROUTES, {("GET", "/items/{key}/thumb"): thumb,
                         ("GET", "/items/{key}/audio"): audio})
