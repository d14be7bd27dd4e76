"""The three kinds of content Lookout watches; each has its own topic, index and encoder.

Defined at the bottom layer (beside the encoders) so that every layer above, from the wire
format to the CLI, names a modality the same way without importing configuration.
"""

from __future__ import annotations

from enum import StrEnum


class Modality(StrEnum):
    """A kind of content: its value is the topic suffix, index part and spec key."""

    VIDEO = "video"
    AUDIO = "audio"
    LOGS = "logs"


MODALITIES: tuple[Modality, ...] = (Modality.VIDEO, Modality.AUDIO, Modality.LOGS)
