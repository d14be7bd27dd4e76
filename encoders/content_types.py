"""Reading a payload's content-type: one parser for the wire format and every decoder.

`parse_content_type` is strict (the wire format rejects what it cannot read);
`media_type` is lenient (decoders sniff with it, e.g. a missing type means "a container").
Both the worker's wire checks (`streams.core.wire`) and the decoders use these, so a type
the wire accepts is read the same way by the decoder that gets it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+$")


class ContentTypeError(ValueError):
    """A content-type that is not a media type, or raw PCM without usable parameters."""


@dataclass(frozen=True)
class ContentType:
    """A parsed `content-type`: lower-case media type and lower-case parameter names."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return ";".join([self.media_type, *(f"{k}={v}" for k, v in self.params.items())])


def media_type(content_type: str | None) -> str:
    """`image/jpeg; q=1` -> `image/jpeg` (lower case, parameters dropped; "" when unset)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_content_type(value: str) -> ContentType:
    """Split `type/subtype; k=v; ...`; ContentTypeError when it is not a media type."""
    parts = [p.strip() for p in value.split(";")]
    kind = parts[0].lower()
    main, sep, sub = kind.partition("/")
    if not sep or not main or not sub or not _TOKEN.match(main) or not _TOKEN.match(sub):
        raise ContentTypeError(f"content-type {value!r} is not a media type like 'image/jpeg'")
    params: dict[str, str] = {}
    for part in parts[1:]:
        if not part:
            continue
        name, eq, raw = part.partition("=")
        name, raw = name.strip().lower(), raw.strip()
        if not eq or not name or not raw:
            raise ContentTypeError(f"content-type {value!r} has a malformed parameter {part!r}")
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
        params[name] = raw
    return ContentType(kind, params)


def pcm_format(content_type: ContentType | str) -> tuple[int, int]:
    """(sample rate, channels) of an `audio/L16;rate=R;channels=C` type; channels default 1."""
    ct = parse_content_type(content_type) if isinstance(content_type, str) else content_type
    if ct.media_type != "audio/l16":
        raise ContentTypeError(f"{ct} is not raw PCM (audio/L16)")
    if "rate" not in ct.params:
        raise ContentTypeError("audio/L16 needs a rate parameter, e.g. audio/L16;rate=16000")
    rate = _int_param(ct, "rate", ct.params["rate"])
    channels = _int_param(ct, "channels", ct.params.get("channels", "1"))
    if not 1 <= rate <= 768_000:
        raise ContentTypeError(f"audio/L16 rate {rate} is outside 1..768000 Hz")
    if not 1 <= channels <= 64:
        raise ContentTypeError(f"audio/L16 channels {channels} is outside 1..64")
    return rate, channels


def _int_param(ct: ContentType, name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ContentTypeError(f"audio/L16 {name} {raw!r} is not an integer") from None


#: Media types of the compressed listening clips (`LOOKOUT_AUDIO_CLIP_FORMAT`), as browsers
#: name them in `<audio>`/`canPlayType` (Ogg container, one mono stream).
CLIP_MEDIA_TYPES: dict[str, str] = {
    "opus": "audio/ogg; codecs=opus",
    "vorbis": "audio/ogg; codecs=vorbis",
}
#: The only sample rates an Opus stream can carry (libsndfile refuses any other).
OPUS_RATES: tuple[int, ...] = (8000, 12000, 16000, 24000, 48000)
