"""Settings come from LOOKOUT_* variables and lookout.toml, and derive topic and service names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from encoders.modality import MODALITIES, Modality
from streams.config.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither the developer's LOOKOUT_* variables nor a lookout.toml nearby leak in."""
    for key in list(os.environ):
        if key.startswith("LOOKOUT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults_use_the_embedded_stack_in_dot_lookout() -> None:
    settings = Settings()

    assert settings.home == Path(".lookout")
    assert settings.uses_embedded_kafka and settings.uses_embedded_redis
    assert settings.resolved_kafka_bootstrap() == "127.0.0.1:19092"
    assert settings.resolved_redis_url() == "redis://127.0.0.1:16379"


def test_environment_variables_configure_home_ports_and_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOKOUT_HOME", "/srv/lookout")
    monkeypatch.setenv("LOOKOUT_KAFKA_PORT", "29092")
    monkeypatch.setenv("LOOKOUT_REDIS_URL", "redis://cache:6379/2")

    settings = Settings()

    assert settings.home == Path("/srv/lookout")
    assert settings.resolved_kafka_bootstrap() == "127.0.0.1:29092"
    assert settings.uses_embedded_kafka
    assert not settings.uses_embedded_redis
    assert settings.resolved_redis_url() == "redis://cache:6379/2"


def test_lookout_toml_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "lookout.toml").write_text('topic_prefix = "plant"\nredis_port = 17000\n')
    monkeypatch.setenv("LOOKOUT_REDIS_PORT", "17001")

    settings = Settings()

    assert settings.topic("logs") == "plant.logs"
    assert settings.redis_port == 17001


def test_every_modality_has_its_own_topic_encoder_and_batching() -> None:
    settings = Settings(topic_prefix="t1")

    topics = {m: settings.input_topic(m) for m in MODALITIES}

    assert topics == {
        Modality.VIDEO: "t1.frames",
        Modality.AUDIO: "t1.audio",
        Modality.LOGS: "t1.logs",
    }
    assert settings.encoder_spec(Modality.LOGS) == settings.encoder_logs
    assert settings.batch_size(Modality.LOGS, on_gpu=False) == settings.batch_size_logs == 256
    assert settings.max_wait_s(Modality.AUDIO) == settings.max_wait_audio_s


@given(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), st.sampled_from(["alerts", "x"]))
def test_topic_names_are_prefix_dot_name(prefix: str, name: str) -> None:
    assert Settings(topic_prefix=prefix).topic(name) == f"{prefix}.{name}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kafka_port", 0),
        ("redis_port", 70000),
        ("device", "tpu"),
        ("partitions", 0),
        ("vector_dtype", "int8"),
    ],
)
def test_out_of_range_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_valid_devices_are_accepted(device: str) -> None:
    assert Settings(device=device).device == device


def test_unknown_settings_are_rejected() -> None:
    with pytest.raises(ValidationError, match="kafka_prot"):
        Settings(kafka_prot=1)


def test_unset_video_and_audio_batches_default_to_the_device_and_a_set_one_wins() -> None:
    unset = Settings()
    for modality in (Modality.VIDEO, Modality.AUDIO):
        assert unset.batch_size(modality, on_gpu=True) == 32
        assert unset.batch_size(modality, on_gpu=False) == 8
    pinned = Settings(batch_size_video=16)
    assert pinned.batch_size(Modality.VIDEO, on_gpu=False) == 16
    assert pinned.batch_size(Modality.VIDEO, on_gpu=True) == 16


def test_embedded_default_ports_lie_outside_the_ephemeral_range() -> None:
    """An outgoing connection takes a port from the ephemeral range; a default there could
    be busy by chance when the stack starts."""
    from pathlib import Path

    low, high = 32768, 60999  # Linux default; the machine's own range when it says
    range_file = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if range_file.exists():
        low, high = (int(x) for x in range_file.read_text().split())
    for name in ("kafka_port", "kafka_controller_port", "redis_port"):
        port = Settings.model_fields[name].default
        assert not low <= port <= high, (name, port, (low, high))


def test_audio_clips_default_to_opus_at_8000_hz() -> None:
    s = Settings()
    assert (s.audio_clip_format, s.audio_clip_rate_hz) == ("opus", 8000)


@pytest.mark.parametrize("rate", [11025, 22050, 44100])
def test_an_opus_clip_rate_must_be_one_opus_has(rate: int) -> None:
    with pytest.raises(ValidationError, match="not an Opus rate"):
        Settings(audio_clip_rate_hz=rate)
    assert Settings(audio_clip_rate_hz=rate, audio_clip_format="vorbis").audio_clip_rate_hz \
        == rate
    assert Settings(audio_clip_rate_hz=0).audio_clip_rate_hz == 0  # no clips: any format


def test_an_unknown_clip_format_is_refused() -> None:
    with pytest.raises(ValidationError, match="audio_clip_format"):
        Settings(audio_clip_format="mp3")
