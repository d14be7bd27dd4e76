"""Reading a payload's content-type, shared by the image, audio and log decoders."""

from __future__ import annotations


def media_type(content_type: str | None) -> str:
    """`image/jpeg; q=1` -> `image/jpeg` (lower case, parameters dropped)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_content_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """`audio/L16;rate=16000;channels=1` -> ("audio/l16", {"rate": "16000", "channels": "1"})."""
    params = {}
    for p in (content_type or "").split(";")[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            params[k.strip().lower()] = v.strip().strip('"')
    return media_type(content_type), params
