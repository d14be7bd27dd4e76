"""The error tree shared by every Lookout package; encoders sit lowest, so it lives here."""

from __future__ import annotations


class LookoutError(Exception):
    """Base of every error Lookout raises on purpose; the message says what to do."""


class EncoderError(LookoutError):
    """An encoder could not be built or run."""


class EncoderInputError(EncoderError):
    """A payload (image, sound, log line) is empty, corrupt or of an unsupported kind."""


class ModelNotAvailable(EncoderError):
    """A model's weights or package are missing; the message says what to install or configure."""


class UnknownEncoderSpec(EncoderError):
    """An encoder spec string names no known model family."""


class NoTextSpace(EncoderError):
    """The encoder cannot embed text into its own space (e.g. aisfx); names a model that can."""
