"""Hypothesis at every place bytes from outside enter a service: whatever arrives gives a clear
error (naming where, when the input had a where) or a dead letter with a reason — never an
unexpected exception, which in a consumer would be a crash loop or a stuck partition.

(The loaders of scoring models and programs are fuzzed in their own tests with
tests/config_fuzz.py; validate_event on arbitrary objects in tests/schemas.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import parse_event, validate_event
from schemas.records import RecordError, SendMessage
from services.common.kafka.deadletter import Origin
from services.common.kafka.topics import Topics
from services.common.tracking import TokenError, verify
from services.ingest.domain.auth import ApiKey, AuthError, authenticate
from services.ingest.domain.intake import Rejected, accept, events_from_body
from services.ingest.domain.providers import crm_events, email_events
from services.orchestrator.adapters.records import parse
from services.scoring.service_layer.handlers import Processor

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
KEY = ApiKey("k", "0" * 64, ("*",))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=5),
    max_leaves=20)
EVENT_KEYS = ["specversion", "id", "source", "type", "subject", "time", "data",
              "datacontenttype", "url", "email", "form_type", "path"]
event_like = st.fixed_dictionaries({}, optional={
    k: json_values | st.sampled_from(["1.0", "web.page_viewed", "crm.lead_upserted",
                                      "lead-1", "2026-11-24T09:00:00Z", "lead.erased"])
    for k in EVENT_KEYS}) | st.dictionaries(st.sampled_from(EVENT_KEYS) | st.text(max_size=6),
                                            json_values, max_size=8)


def dumps(value: Any) -> bytes:  # the stdlib encoder: it writes integers of any size
    return json.dumps(value).encode()


payloads = (st.binary(max_size=300) | json_values.map(dumps) | event_like.map(dumps)
            | st.lists(event_like, max_size=3).map(dumps))


T = TypeVar("T")
E = TypeVar("E", bound=Exception)


def outcome_of(call: Callable[[], T], error: type[E]) -> T | E:
    """What `call` returns, or the `error` it raises (anything else propagates: a failure)."""
    try:
        return call()
    except error as exc:
        return exc


@FAST
@given(value=json_values | event_like)
def test_validate_and_parse_agree_and_never_crash(value: Any) -> None:
    problems = validate_event(value)
    assert all(p.path and p.message for p in problems)
    if isinstance(value, dict):
        if problems:
            with pytest.raises(ValueError):  # noqa: PT011 - ValidationError is a ValueError
                parse_event(value)
        else:
            parse_event(value)


@FAST
@given(body=payloads, ctype=st.sampled_from([
    "application/json", "application/cloudevents+json", "application/cloudevents-batch+json",
    "text/plain", None, "application/json; charset=latin-1"]))
def test_ingest_intake_accepts_or_refuses_with_a_status(body: bytes, ctype: str | None) -> None:
    outcome = outcome_of(lambda: accept(
        events_from_body(body, ctype, max_events=5), key=KEY, received_at=NOW,
        max_future_seconds=300, max_event_bytes=4096), Rejected)
    if isinstance(outcome, Rejected):
        assert 400 <= outcome.status < 500 and outcome.message
        assert all(p.message for p in outcome.problems)
    else:
        assert outcome and all(not validate_event(orjson.loads(r.value)) for r in outcome)


@FAST
@given(doc=json_values | event_like | st.lists(event_like, max_size=3))
def test_webhook_mapping_refuses_with_a_status(doc: Any) -> None:
    body = json.loads(dumps(doc))
    for outcome in (outcome_of(lambda: email_events(body, webhook_id="w", max_events=5), Rejected),
                    outcome_of(lambda: crm_events(body, key_name="k", max_events=5), Rejected)):
        if isinstance(outcome, Rejected):
            assert 400 <= outcome.status < 500
        else:
            assert all(validate_event(e) == [] for e in outcome)


@FAST
@given(header=st.none() | st.text(max_size=40) | st.sampled_from(["Bearer", "Basic !!", "Basic "]))
def test_authentication_refuses_with_401(header: str | None) -> None:
    with pytest.raises(AuthError) as refused:
        authenticate((KEY,), header)
    assert refused.value.status == 401


@FAST
@given(token=st.text(max_size=80) | st.from_regex(r"[A-Za-z0-9_-]{1,40}\.[A-Za-z0-9_-]{1,40}",
                                                  fullmatch=True))
def test_any_tracking_token_is_refused_cleanly(token: str) -> None:
    with pytest.raises(TokenError):
        verify(token, keys=[b"k" * 32], now=0.0)


@FAST
@given(key=st.none() | st.sampled_from([b"lead-1", b""]) | st.binary(max_size=8),
       value=st.none() | payloads)
def test_scoring_scores_or_dead_letters_any_record(key: bytes | None, value: bytes | None) -> None:
    result = Processor([], Topics("")).process(key=key, value=value, origin=Origin("t", 0, 1),
                                               timestamp_ms=1_790_000_000_000, state=None,
                                               now=NOW)
    assert result.outcome in {"scored", "duplicate", "late", "erased", "dead_lettered"}
    if result.outcome == "dead_lettered":
        letter = orjson.loads(result.out[0].value)
        assert letter["error"] and letter["origin"]["topic"] == "t"


@FAST
@given(value=st.none() | payloads | st.builds(
    lambda e, s: dumps({"event": e, "score": s}), event_like, json_values))
def test_orchestrator_parses_or_says_why(value: bytes | None) -> None:
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        "t", 0, 1, 0, 0, b"lead-1", value, None, 0, 0, [])
    outcome = outcome_of(lambda: parse(record), ValueError)
    if isinstance(outcome, ValueError):
        assert str(outcome)
    else:
        assert outcome.lead_id and outcome.key


@FAST
@given(value=st.none() | payloads)
def test_dispatch_parses_a_command_or_says_why(value: bytes | None) -> None:
    outcome = outcome_of(lambda: SendMessage.from_bytes(value), RecordError)
    assert not isinstance(outcome, RecordError) or str(outcome)
