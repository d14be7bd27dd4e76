"""Errors of the streaming side, rooted in the one `LookoutError` tree."""

from __future__ import annotations

from encoders.errors import LookoutError

__all__ = [
    "LookoutError",
    "ConfigError",
    "StackError",
    "StackNotRunning",
    "PortInUse",
    "WireFormatError",
    "ProducerError",
    "QueryValidationError",
    "QueryTooLarge",
    "QueryNotFound",
    "IndexStoreError",
    "IndexMismatch",
    "RedisUnavailable",
]


class ConfigError(LookoutError):
    """A setting is missing or out of range."""


class StackError(LookoutError):
    """The embedded Kafka/Redis stack could not be set up, started or stopped."""


class StackNotRunning(StackError):
    """A command needs the embedded stack and it is not up; run `lookout stack up`."""


class PortInUse(StackError):
    """A port the stack wants is taken by a process the stack did not start."""


class WireFormatError(LookoutError):
    """A record breaks docs/wire-format.md; the reason goes to the dead-letter topic."""


class ProducerError(LookoutError):
    """A producer could not read its source or deliver records to Kafka."""


class QueryValidationError(LookoutError):
    """A standing query or search request is invalid; the message says which field to fix."""


class QueryTooLarge(QueryValidationError):
    """A registered query would not fit in one record of the queries topic."""


class QueryNotFound(LookoutError):
    """No standing query has the given id."""


class AlertNotFound(LookoutError):
    """No alert with the given id in the history (never raised, or expired)."""


class IndexStoreError(LookoutError):
    """Redis vector search rejected an operation or is unreachable."""


class IndexMismatch(IndexStoreError):
    """Redis holds an index of another model, vector dtype or schema version than this
    worker writes; the message says what differs and which `lookout index` command helps."""


class RedisUnavailable(IndexStoreError):
    """Redis cannot be reached right now; the worker pauses and retries instead of dropping."""
