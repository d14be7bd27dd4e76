"""Lookout configuration: `LOOKOUT_*` environment variables and an optional `lookout.toml`.

Read once at the entry point (CLI, worker) and passed down; library code never reads
`os.environ` itself.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from encoders.content_types import OPUS_RATES
from encoders.modality import Modality


class Settings(BaseSettings):
    """Every knob Lookout reads. Unset Kafka/Redis addresses mean "use the embedded stack"."""

    model_config = SettingsConfigDict(
        env_prefix="LOOKOUT_",
        extra="forbid",
        toml_file="lookout.toml",
        validate_default=True,
    )

    # --- where things live -------------------------------------------------------------
    home: Path = Field(Path(".lookout"), description="Embedded stack data, logs and pid files.")
    kafka_bootstrap: str | None = Field(
        None, description="External Kafka bootstrap servers; unset = embedded stack of `home`."
    )
    redis_url: str | None = Field(
        None, description="External Redis URL (Query Engine/RediSearch); unset = embedded."
    )

    # --- external Kafka security (TLS / SASL); Redis ACL user:password go in redis_url ---
    kafka_security_protocol: str = Field(
        "PLAINTEXT",
        pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$",
        description="Kafka security.protocol: PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL.",
    )
    kafka_sasl_mechanism: str | None = Field(
        None,
        pattern="^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$",
        description="SASL mechanism when the protocol is SASL_*: PLAIN | SCRAM-SHA-256/512.",
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: str | None = Field(None, description="SASL password.")
    kafka_ssl_cafile: Path | None = Field(
        None, description="CA bundle (PEM) that signed the brokers' certificates; unset = system."
    )

    # --- embedded stack ports (loopback only) -------------------------------------------
    kafka_port: int = Field(
        19092, ge=1, le=65535,
        description="Embedded Kafka broker port. The defaults of the three embedded ports lie "
        "below the Linux ephemeral range (32768-60999), so no outgoing connection can hold "
        "them when the stack starts.",
    )
    kafka_controller_port: int = Field(
        19093, ge=1, le=65535, description="Embedded KRaft controller port."
    )
    redis_port: int = Field(16379, ge=1, le=65535, description="Embedded Redis port.")
    kafka_version: str = Field("4.1.1", description="Apache Kafka version fetched from Maven.")

    # --- topics ---------------------------------------------------------------------------
    topic_prefix: str = Field("lookout", description="Prefix of every topic: <prefix>.frames …")
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of the input topics.")
    replication_factor: int = Field(
        1, ge=1, le=32,
        description="Replication of every topic Lookout creates (1 fits the embedded broker; "
        "3 for a production cluster). Existing topics are left as they are.",
    )
    min_insync_replicas: int | None = Field(
        None, ge=1, le=32,
        description="min.insync.replicas of the topics Lookout creates (unset: the broker's "
        "default; 2 with replication 3 in production). At most the replication factor.",
    )

    # --- worker ---------------------------------------------------------------------------
    worker_id: str = Field("lookout-worker", description="Faust app id = Kafka consumer group.")
    web_host: str = Field("127.0.0.1", description="Host the worker's HTTP API binds to.")
    web_port: int = Field(6066, ge=1, le=65535, description="Worker HTTP API / metrics port.")
    api_token: str | None = Field(
        None, description="Bearer token; required when web_host is not loopback."
    )
    grafana_url: str | None = Field(
        None, pattern=r"^https?://\S+$",
        description="Base URL of the Grafana holding the Lookout dashboards; the console's "
        "status view links to them (unset: no links).",
    )
    device: str = Field("auto", description="auto | cpu | cuda[:N]")
    torch_compile: bool = Field(False, description="Wrap encoders in torch.compile.")
    torch_threads: int = Field(
        0, ge=0, le=256, description="torch intra-op CPU threads (0 = torch's default)."
    )
    torch_threads_small_batches: int = Field(
        1, ge=0, le=256,
        description="torch threads for a CPU batch at most half the modality's batch size "
        "(the encoder is keeping up, so latency matters more than throughput; full batches "
        "get their inference lane's share of `torch_threads`). 0: always that share.",
    )

    encoder_video: str = Field("efficientnet-lite0", description="Encoder spec for frames.")
    encoder_audio: str = Field("aisfx", description="Encoder spec for audio chunks.")
    encoder_logs: str = Field("minilm", description="Encoder spec for log lines.")

    log_cache_shared: bool = Field(
        True, description="Share the log encoders' template vectors through Redis, so a "
        "restarted or added worker does not re-embed the templates its group has seen "
        "(a template is shared the second time a worker meets it).",
    )
    log_cache_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="TTL of a shared log template vector in Redis.",
    )

    batch_size_video: int | None = Field(
        None, ge=1, le=4096,
        description="Most frames embedded in one micro-batch (unset: 32 on a GPU, 8 on CPU).",
    )
    batch_size_audio: int | None = Field(
        None, ge=1, le=4096,
        description="Most audio chunks embedded in one micro-batch (unset: 32 on a GPU, 8 on "
        "CPU).",
    )
    batch_size_logs: int = Field(
        256, ge=1, le=65536, description="Most log lines embedded in one micro-batch."
    )
    max_wait_video_s: float = Field(
        0.0, ge=0, le=60, description="Longest wait (s) to fill a video micro-batch "
        "while the encoder is idle (0: none, batch adaptively)."
    )
    max_wait_audio_s: float = Field(
        0.0, ge=0, le=60, description="Longest wait (s) to fill an audio micro-batch "
        "while the encoder is idle (0: none, batch adaptively)."
    )
    max_wait_logs_s: float = Field(
        0.0, ge=0, le=60, description="Longest wait (s) to fill a logs micro-batch "
        "while the encoder is idle (0: none, batch adaptively)."
    )

    pipeline_in_flight: int = Field(
        0, ge=0, le=8,
        description="Batches per modality between take and commit. 0: one per inference "
        "lane plus the one being indexed, matched and alerted (3 with 2 lanes, 2 with 1); "
        "2 embeds one batch at a time (and the worker keeps one lane); 1: no overlap.",
    )
    inference_lanes: int = Field(
        0, ge=0, le=64,
        description="Batches embedded at once, each in its own thread with `torch_threads` "
        "/ lanes torch threads. 0: 2 on a CPU with 2+ torch threads (1.2-1.4x the items/s "
        "of one lane on 2 cores: two single-threaded calls do not wait on each other as "
        "one call's OpenMP threads do), 1 on a GPU or with `torch_compile`.",
    )

    retention_s: int = Field(7 * 24 * 3600, ge=60, description="TTL of indexed items in Redis.")
    webhook_max_age_s: float = Field(
        3600.0, gt=0,
        description="On an alerts partition the webhook group never committed on, alerts "
        "older than this (s, by alerts-topic time) are not sent to webhooks.",
    )
    webhook_allow_networks: str = Field(
        "",
        description="Comma-separated CIDRs webhooks may reach although internal (loopback, "
        "private, link-local); empty = public addresses only (SSRF guard).",
    )
    vector_dtype: str = Field(
        "float32", pattern="^(float32|float16)$", description="Vector storage type in Redis."
    )
    index_algorithm: str = Field(
        "hnsw", pattern="^(hnsw|flat)$",
        description="How Redis indexes vectors: hnsw (approximate graph: queries stay fast "
        "as the index grows, inserts cost more) or flat (exact: cheap inserts, each query "
        "compares every item). An existing index built otherwise is refused at start: "
        "docs/deploy.md, \"Index throughput\", has the figures and how to rebuild.",
    )
    index_hnsw_m: int = Field(
        16, ge=2, le=512,
        description="HNSW: links per node. Lower inserts faster and uses less memory, at "
        "some recall; takes effect when the index is (re)built.",
    )
    index_hnsw_ef_construction: int = Field(
        200, ge=1, le=4096,
        description="HNSW: candidates kept while inserting. Lower inserts faster, at some "
        "recall; takes effect when the index is (re)built.",
    )
    index_hnsw_ef_runtime: int = Field(
        50, ge=1, le=4096,
        description="HNSW: candidates kept while searching, sent with every KNN query (no "
        "rebuild). Higher: better recall, slower queries. Redis's own default, 10, gave "
        "recall@10 0.90 at 200k items in `lookout bench index`; 50 gave 0.999.",
    )
    thumb_max_width: int = Field(160, ge=16, le=1024, description="Evidence thumbnail width.")
    audio_clip_rate_hz: int = Field(
        8000, ge=0, le=48_000,
        description="Every audio item keeps a mono clip of its chunk at this rate (never "
        "above the encoder's) under the item's TTL, so search results can be played "
        "(GET /items/{key}/audio). With opus the rate must be one Opus has (8000, 12000, "
        "16000, 24000, 48000). 0: only chunks that raised an alert are kept (as sent).",
    )
    audio_clip_format: str = Field(
        "opus", pattern="^(opus|vorbis|pcm)$",
        description="How those clips are stored: opus (Ogg/Opus, ~3.7-4.6 KB per 1-s chunk at "
        "8000 Hz, measured), vorbis (Ogg/Vorbis, ~6 KB: its headers are ~3 KB a clip), or "
        "pcm (16-bit, 2 bytes x rate a second: 16 KB at 8000 Hz, served as WAV). Opus and "
        "Vorbis are lossy and every clip may be downsampled: `lookout index reindex` never "
        "re-embeds from them, only from alerted chunks kept as sent.",
    )
    status_interval_s: float = Field(
        5.0, ge=0.2, le=300,
        description="How often a worker writes its status heartbeat to Redis (GET /status "
        "shows the group from them); one silent for 3 intervals is left out.",
    )
    source_label_limit: int = Field(
        0, ge=0, description="Use source ids as metric labels for the first N sources (0 = never)."
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value in ("auto", "cpu") or value == "cuda" or value.startswith("cuda:"):
            return value
        raise ValueError(f"device must be auto, cpu or cuda[:N], not {value!r}")

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs "
                "kafka_sasl_mechanism, kafka_sasl_username and kafka_sasl_password"
            )
        return self

    @model_validator(mode="after")
    def _check_replication(self) -> Settings:
        if self.min_insync_replicas is not None and self.min_insync_replicas > (
                self.replication_factor):
            raise ValueError(
                f"min_insync_replicas {self.min_insync_replicas} is more than "
                f"replication_factor {self.replication_factor}: every write would be refused")
        return self

    @model_validator(mode="after")
    def _check_audio_clip_rate(self) -> Settings:
        rate = self.audio_clip_rate_hz
        if self.audio_clip_format == "opus" and rate and rate not in OPUS_RATES:
            raise ValueError(
                f"audio_clip_rate_hz {rate} is not an Opus rate "
                f"({', '.join(map(str, OPUS_RATES))}): pick one, or set "
                "audio_clip_format=vorbis or pcm")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    # --- derived --------------------------------------------------------------------------
    @property
    def uses_embedded_kafka(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def uses_embedded_redis(self) -> bool:
        return self.redis_url is None

    def resolved_kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    def resolved_redis_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}"

    def topic(self, name: str) -> str:
        """Full topic name for a logical one: frames, audio, logs, deadletter, alerts, queries."""
        return f"{self.topic_prefix}.{name}"

    def input_topic(self, modality: Modality) -> str:
        return self.topic({"video": "frames", "audio": "audio", "logs": "logs"}[modality])

    def encoder_spec(self, modality: Modality) -> str:
        return getattr(self, f"encoder_{modality.value}")

    def batch_size(self, modality: Modality, on_gpu: bool) -> int:
        """The configured batch size, or the device's default: on CPU, `make bench` found
        video and audio faster per item at batch 8 than at 32 (the GPU default)."""
        configured = getattr(self, f"batch_size_{modality.value}")
        if configured is not None:
            return configured
        return 32 if on_gpu else 8

    def max_wait_s(self, modality: Modality) -> float:
        return getattr(self, f"max_wait_{modality.value}_s")

    def batches_in_flight(self, lanes: int) -> int:
        """`pipeline_in_flight`, or (0) one batch per inference lane plus the one being
        indexed and alerted."""
        return self.pipeline_in_flight or lanes + 1
