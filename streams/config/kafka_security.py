"""Kafka TLS/SASL settings turned into what each client library takes.

One place maps `Settings.kafka_security_protocol`, `kafka_sasl_*` and `kafka_ssl_cafile` onto
Faust's `broker_credentials`, aiokafka's and kafka-python's keyword arguments, so the worker,
the producers and the admin client connect the same way to a secured cluster.
"""

from __future__ import annotations

import ssl
from typing import Any

from streams.config.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying TLS context for SSL/SASL_SSL (system CAs unless a CA file is given)."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    return ssl.create_default_context(cafile=cafile)


def faust_broker_credentials(settings: Settings) -> Any | None:
    """Value for `faust.App(broker_credentials=...)`; None for PLAINTEXT."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=ssl_context(settings),
    )


def _sasl_kwargs(settings: Settings) -> dict[str, Any]:
    """The SASL arguments, spelled the same by aiokafka and kafka-python."""
    return {
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": settings.kafka_sasl_password,
    }


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `aiokafka.AIOKafkaProducer`/`AIOKafkaConsumer`."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol.endswith("SSL"):
        kwargs["ssl_context"] = ssl_context(settings)
    if protocol.startswith("SASL_"):
        kwargs.update(_sasl_kwargs(settings))
    return kwargs


def kafka_python_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's `KafkaProducer`, `KafkaConsumer`, `KafkaAdminClient`."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol.endswith("SSL"):
        kwargs["ssl_check_hostname"] = True
        if settings.kafka_ssl_cafile:
            kwargs["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    if protocol.startswith("SASL_"):
        kwargs.update(_sasl_kwargs(settings))
    return kwargs
