"""TLS/SASL settings reach every Kafka client library in the form it expects."""

from __future__ import annotations

import ssl

import faust
import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaProducer

from streams.cli.common import load_settings
from streams.config.kafka_security import (
    aiokafka_kwargs,
    faust_broker_credentials,
    kafka_python_kwargs,
)
from streams.config.settings import Settings
from streams.core.errors import ConfigError

SASL = dict(
    kafka_security_protocol="SASL_SSL",
    kafka_sasl_mechanism="SCRAM-SHA-512",
    kafka_sasl_username="lookout",
    kafka_sasl_password="s3cret",
)


def test_plaintext_adds_nothing() -> None:
    s = Settings()
    assert aiokafka_kwargs(s) == {} and kafka_python_kwargs(s) == {}
    assert faust_broker_credentials(s) is None


def test_sasl_ssl_maps_to_each_client() -> None:
    s = Settings(**SASL)
    creds = faust_broker_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert str(creds.protocol.value) == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    kw = aiokafka_kwargs(s)
    assert isinstance(kw.pop("ssl_context"), ssl.SSLContext)
    assert kw == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                  "sasl_plain_username": "lookout", "sasl_plain_password": "s3cret"}
    assert kafka_python_kwargs(s)["sasl_plain_password"] == "s3cret"


def test_client_constructors_accept_the_kwargs() -> None:
    """The names are real constructor parameters (no broker is contacted)."""
    import inspect

    s = Settings(**SASL)
    assert set(aiokafka_kwargs(s)) <= set(inspect.signature(AIOKafkaProducer).parameters)
    assert set(kafka_python_kwargs(s)) <= set(KafkaProducer.DEFAULT_CONFIG)


def test_ssl_only_uses_the_ca_file(tmp_path) -> None:
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "ca.pem")
    assert kafka_python_kwargs(s) == {
        "security_protocol": "SSL", "ssl_check_hostname": True,
        "ssl_cafile": str(tmp_path / "ca.pem"),
    }
    assert isinstance(faust_broker_credentials(Settings(kafka_security_protocol="SSL")),
                      faust.SSLCredentials)


@pytest.mark.parametrize("missing", ["kafka_sasl_mechanism", "kafka_sasl_password"])
def test_sasl_without_credentials_is_a_config_error(missing) -> None:
    values = {k: v for k, v in SASL.items() if k != missing}
    with pytest.raises(ConfigError, match="needs kafka_sasl_mechanism"):
        load_settings(**values)


def test_unknown_protocol_is_rejected() -> None:
    with pytest.raises(ConfigError, match="LOOKOUT_KAFKA_SECURITY_PROTOCOL"):
        load_settings(kafka_security_protocol="TLS")
