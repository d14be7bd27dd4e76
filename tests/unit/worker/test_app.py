"""The composition root wires every stage from explicit parts, without connecting to anything."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from encoders.modality import MODALITIES
from encoders.registry import build_encoder
from streams.alerting.alerts import AlertClaimBusy
from streams.alerting.policy import PolicyStateConflict
from streams.alerting.service import AlertingObserver
from streams.api.openapi import HEALTH_ROUTES
from streams.cli.reference_docs import all_route_specs
from streams.config.settings import Settings
from streams.core.metrics import Metrics
from streams.embedded import Services
from streams.worker.app import create_app


@pytest.fixture(scope="module")
def app():
    settings = Settings(topic_prefix="t1", web_port=18066)
    encoders = {m: build_encoder("trivial", m.value, device="cpu") for m in MODALITIES}
    services = Services(kafka_bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:1")
    return create_app(settings, services=services, metrics=Metrics(CollectorRegistry()),
                      encoders=encoders)


def test_the_stages_share_one_set_of_encoders_and_indexes(app) -> None:
    w = app.worker
    assert w.pipeline.encoders is w.encoders and w.pipeline.index_stores is w.index_stores
    assert w.alerting.index_stores is w.index_stores
    assert w.pipeline.inference is w.alerting.inference is w.inference
    assert [type(o) for o in w.pipeline.observers] == [AlertingObserver]
    assert w.readiness.encoders_loaded and not w.readiness.ready
    assert w.pipeline.problems is w.readiness.problems  # a failing device shows in /readyz


def test_alert_contention_is_waited_out_not_given_up(app) -> None:
    """Another worker holding an alert's claim passes; giving up would lose the alert."""
    (observer,) = app.worker.pipeline.observers
    assert {AlertClaimBusy, PolicyStateConflict} <= set(observer.transient)
    assert observer.stage == "alert"


def test_lag_is_watched_on_the_input_topics(app) -> None:
    assert app.worker.lag.topics == {"t1.frames", "t1.audio", "t1.logs"}


def test_every_documented_route_is_registered_through_faust(app) -> None:
    served = {(m, path) for path, view in app.web.views.items() for m in view.get_methods()}
    for spec in all_route_specs():
        assert (spec.method, spec.path) in served, spec
    assert ("GET", "/openapi.json") in served and HEALTH_ROUTES[-1].path == "/openapi.json"


def test_faust_keeps_its_data_under_lookout_home_not_the_current_directory(app) -> None:
    home = Settings().home.absolute()
    assert app.conf.datadir == home / "workers" / "lookout-worker-data"
    assert app.conf.datadir.is_relative_to(home)


def test_readiness_follows_kafka_and_redis(app) -> None:
    assert app.worker.probe.interval_s == 5.0
    assert set(app.worker.probe._checks) == {"Kafka", "Redis"}  # noqa: SLF001
