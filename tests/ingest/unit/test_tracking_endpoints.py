"""Open pixel, click redirect and one-click unsubscribe on ingest, for tokens dispatch signs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from schemas import validate_event
from services.common.config.settings import KafkaSettings
from services.common.tracking import TrackingClaims, sign
from services.ingest.adapters.publisher import FakePublisher
from services.ingest.bootstrap import bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import ApiKeyConfig, IngestSettings

KEY = b"tracking-secret-0123456789"


def token(kind: str, *, url: str | None = None, exp: float | None = None,
          key: bytes = KEY) -> str:
    claims = TrackingClaims(message_id="m-1", lead_id="lead-1", program_id="p", step_id="s",
                            kind=kind, exp=int(exp or time.time() + 3600), url=url)  # type: ignore[arg-type]
    return sign(claims, key=key)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(publisher: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    settings = IngestSettings(api_keys=[ApiKeyConfig(name="k", sha256=hash_key("nk_x"))])
    app = create_app(bootstrap(settings, KafkaSettings(), publisher=publisher, tracking_keys=[KEY]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingest") as c:
        yield c


def published(publisher: FakePublisher) -> list[dict[str, object]]:
    return [orjson.loads(r.value) for r in publisher.published]


async def test_open_pixel_records_one_opened_event(client: httpx.AsyncClient,
                                                   publisher: FakePublisher) -> None:
    r = await client.get(f"/t/open/{token('open')}")
    assert (r.status_code, r.headers["content-type"]) == (200, "image/gif")
    await client.get(f"/t/open/{token('open')}")
    events = published(publisher)
    assert [(e["type"], e["subject"]) for e in events] == [("email.opened", "lead-1")] * 2
    assert events[0]["id"] == events[1]["id"]  # a reload is the same event downstream
    assert events[0]["data"] == {"message_id": "m-1", "program_id": "p", "step_id": "s"}
    assert validate_event(events[0]) == []


async def test_click_redirects_only_to_the_signed_url(client: httpx.AsyncClient,
                                                      publisher: FakePublisher) -> None:
    r = await client.get(f"/t/click/{token('click', url='https://x.io/case-study')}")
    assert (r.status_code, r.headers["location"]) == (302, "https://x.io/case-study")
    assert published(publisher)[0]["type"] == "email.clicked"
    assert validate_event(published(publisher)[0]) == []
    forged = token("click", url="https://evil.example", key=b"another-secret-0123456789")
    assert (await client.get(f"/t/click/{forged}")).status_code == 404
    wrong_kind = await client.get(f"/t/click/{token('open')}")
    assert wrong_kind.status_code == 404
    assert len(publisher.published) == 1


async def test_expired_click_and_open_links_record_nothing(client: httpx.AsyncClient,
                                                           publisher: FakePublisher) -> None:
    past = time.time() - 10
    r = await client.get(f"/t/click/{token('click', url='https://x.io/a', exp=past)}")
    assert r.status_code == 404 and "location" not in r.headers
    pixel = await client.get(f"/t/open/{token('open', exp=past)}")
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    assert publisher.published == []


async def test_one_click_unsubscribe_and_the_page(client: httpx.AsyncClient,
                                                  publisher: FakePublisher) -> None:
    tok = token("unsubscribe")
    page = await client.get(f"/t/unsubscribe/{tok}")
    assert page.status_code == 200 and "<form" in page.text
    r = await client.post(f"/t/unsubscribe/{tok}", content=b"List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    (event,) = published(publisher)
    assert event["type"] == "email.unsubscribed"
    assert event["data"]["method"] == "one_click"  # type: ignore[index]
    assert validate_event(event) == []


async def test_an_expired_unsubscribe_link_says_so_and_records_nothing(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    tok = token("unsubscribe", exp=time.time() - 10)
    page = await client.get(f"/t/unsubscribe/{tok}")
    assert page.status_code == 410 and "expired" in page.text and "<form" not in page.text
    r = await client.post(f"/t/unsubscribe/{tok}", content=b"List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 410
    forged = token("unsubscribe", key=b"another-secret-0123456789")
    assert (await client.post(f"/t/unsubscribe/{forged}")).status_code == 404
    assert publisher.published == []


async def test_unsubscribe_when_kafka_is_down_says_try_again(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    publisher.available = False
    r = await client.post(f"/t/unsubscribe/{token('unsubscribe')}")
    assert r.status_code == 503
