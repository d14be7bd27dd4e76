"""Webhook secrets are named (`secret_env`), never stored in the query topic."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.core.errors import QueryValidationError
from streams.queries.model import (
    RegisteredQuery,
    StandingQuery,
    Webhook,
    parse_query,
    require_secret_envs,
)

ENV = "LOOKOUT_WEBHOOK_SECRET_OPS"


def _query(webhook: dict) -> dict:
    return {"name": "disk", "modality": "logs", "positives": ["disk full"],
            "webhooks": [webhook]}


def test_a_secret_sent_by_a_person_is_refused_with_what_to_do_instead():
    with pytest.raises(QueryValidationError) as e:
        parse_query(_query({"url": "https://h.example/", "secret": "s3cret"}))
    assert "not stored in the query topic" in str(e.value)
    assert "LOOKOUT_WEBHOOK_SECRET_<NAME>" in str(e.value) and "s3cret" not in str(e.value)


def test_the_stored_query_names_the_secret_and_does_not_hold_it():
    q = parse_query(_query({"url": "https://h.example/", "secret_env": ENV}))
    record = RegisteredQuery(query=q, fingerprint=q.fingerprint(), model_id="m", dim=1,
                             positive_vectors_b64="AAAAAA==")
    env = {ENV: "s3cret"}
    assert q.webhooks[0].resolve_secret(env) == "s3cret"
    assert "s3cret" not in record.model_dump_json()
    assert ENV in record.model_dump_json()


@pytest.mark.parametrize("name", ["HOME", "AWS_SECRET_ACCESS_KEY", "LOOKOUT_API_TOKEN",
                                  "LOOKOUT_WEBHOOK_SECRET_", "LOOKOUT_WEBHOOK_SECRET_a"])
def test_only_webhook_secret_variables_can_be_named(name):
    """Otherwise a query could make the worker sign with any of its secrets (and let its
    author test guesses of it against the signatures)."""
    with pytest.raises(QueryValidationError, match="secret_env"):
        parse_query(_query({"url": "https://h.example/", "secret_env": name}))


def test_a_named_secret_missing_here_is_a_key_error_not_an_unsigned_post():
    hook = Webhook(url="https://h.example/", secret_env=ENV)
    with pytest.raises(KeyError):
        hook.resolve_secret({})
    with pytest.raises(KeyError):
        hook.resolve_secret({ENV: ""})
    assert Webhook(url="https://h.example/").resolve_secret({}) is None


def test_registration_needs_the_named_secret_in_the_workers_environment():
    q = parse_query(_query({"url": "https://h.example/", "secret_env": ENV}))
    require_secret_envs(q, {ENV: "x"})
    with pytest.raises(QueryValidationError, match=f"{ENV} is not set in the worker"):
        require_secret_envs(q, {})


def test_queries_stored_with_a_plain_secret_still_load_and_sign_but_never_show_it():
    """Records written before secrets were named keep working (no alert goes unsigned);
    what list/show return has the webhook URLs only."""
    stored = StandingQuery.model_validate(
        _query({"url": "https://h.example/", "secret": "legacy"}))
    assert stored.webhooks[0].resolve_secret({}) == "legacy"
    assert "legacy" not in repr(stored.webhooks[0])
    record = RegisteredQuery(query=stored, fingerprint="f", model_id="m", dim=1,
                             positive_vectors_b64="AAAAAA==")
    assert "legacy" not in str(record.summary())


def test_both_forms_at_once_are_refused():
    with pytest.raises(ValidationError):
        Webhook(url="https://h.example/", secret="a", secret_env=ENV)
