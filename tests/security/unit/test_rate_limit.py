"""Per-API-key rate limiting: the token bucket's properties, and ingest answering 429 with
Retry-After once a key's bucket is empty (other keys unaffected, nothing published)."""

from __future__ import annotations

import httpx
import orjson
from hypothesis import given
from hypothesis import strategies as st

from services.common.config.settings import KafkaSettings
from services.ingest.adapters.publisher import FakePublisher
from services.ingest.bootstrap import bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.domain.ratelimit import RateLimiter, client_group, retry_after
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import ApiKeyConfig, IngestSettings

times = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=60)


@given(rate=st.floats(min_value=0.01, max_value=100), burst=st.integers(1, 50), at=times)
def test_never_more_than_burst_plus_refill(rate: float, burst: int, at: list[float]) -> None:
    limiter = RateLimiter(rate=rate, burst=burst)
    at = sorted(at)
    granted = [t for t in at if limiter.acquire("k", now=t) == 0.0]
    if granted:
        assert len(granted) <= burst + (granted[-1] - granted[0]) * rate + 1e-6


@given(rate=st.floats(min_value=0.01, max_value=100), burst=st.integers(1, 50),
       start=st.floats(min_value=0, max_value=1e6))
def test_refused_request_is_told_a_wait_that_works(rate: float, burst: int, start: float) -> None:
    limiter = RateLimiter(rate=rate, burst=burst)
    for _ in range(burst):
        assert limiter.acquire("k", now=start) == 0.0
    wait = limiter.acquire("k", now=start)
    assert 0 < wait <= 1 / rate + 1e-9
    assert limiter.acquire("other", now=start) == 0.0  # buckets are per key
    assert limiter.acquire("k", now=start + wait + 1e-6) == 0.0
    assert int(retry_after(wait)) >= wait


def test_a_clock_stepping_back_adds_no_tokens() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    assert limiter.acquire("k", now=100.0) == 0.0
    assert limiter.acquire("k", now=50.0) > 0
    assert limiter.acquire("k", now=100.5) > 0


def test_rate_zero_is_off() -> None:
    limiter = RateLimiter(rate=0, burst=1)
    assert all(limiter.acquire("k", now=0.0) == 0.0 for _ in range(1000))


async def test_ingest_answers_429_with_retry_after_per_key() -> None:
    settings = IngestSettings(api_keys=[ApiKeyConfig(name="a", sha256=hash_key("nk_a")),
                                        ApiKeyConfig(name="b", sha256=hash_key("nk_b"))],
                              rate_limit_per_second=0.01, rate_limit_burst=2)
    publisher = FakePublisher()
    app = create_app(bootstrap(settings, KafkaSettings(), publisher=publisher))
    body = orjson.dumps({"specversion": "1.0", "id": "e1", "source": "s", "subject": "lead-1",
                         "type": "web.page_viewed", "data": {"url": "https://x.io/"}})

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingest") as client:
        async def post(key: str) -> httpx.Response:
            return await client.post("/v1/events", content=body, headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/json"})

        assert [(await post("nk_a")).status_code for _ in range(2)] == [202, 202]
        refused = await post("nk_a")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 101
        assert "rate limit" in refused.json()["detail"]
        assert (await post("nk_b")).status_code == 202
        assert (await post("nk_nobody")).status_code == 401  # auth first, no bucket for it
        metrics = (await client.get("/metrics")).text
    assert len(publisher.published) == 3
    assert 'nurture_ingest_events_rejected_total{reason="rate_limited"} 1.0' in metrics


def test_client_addresses_are_grouped_ipv6_by_its_64() -> None:
    assert client_group("2001:db8:1:2:aaaa::1") == client_group("2001:db8:1:2:bbbb::9") \
        == "2001:db8:1:2::/64"
    assert client_group("2001:db8:1:3::1") != client_group("2001:db8:1:2::1")
    assert client_group("::ffff:198.51.100.7") == "198.51.100.7"
    assert client_group("198.51.100.7") == "198.51.100.7"
    assert client_group("not an address") == "not an address"


def test_a_full_limiter_forgets_the_least_recently_used_buckets_not_all() -> None:
    limiter = RateLimiter(rate=0.001, burst=1, max_keys=10)
    for n in range(10):
        assert limiter.acquire(f"k{n}", now=0.0) == 0.0
    assert limiter.acquire("k0", now=0.0) > 0  # k0 used again: now the most recent
    assert limiter.acquire("k10", now=0.0) == 0.0  # full: k1, the oldest, is forgotten
    assert limiter.acquire("k0", now=0.0) > 0 and limiter.acquire("k2", now=0.0) > 0
    assert limiter.acquire("k1", now=0.0) == 0.0
