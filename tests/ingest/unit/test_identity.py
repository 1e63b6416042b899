"""The links an accepted event implies (docs/identity.md), and the refusal of a self-link."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.ingest.domain.auth import ApiKey, hash_key
from services.ingest.domain.identity import links_of
from services.ingest.domain.intake import Rejected, accept

NOW = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
KEY = ApiKey("crm", hash_key("nk_x"), sources=("*",))


def event(etype: str, data: dict[str, Any], subject: str = "user-1", **attrs: Any) -> dict:
    return {"specversion": "1.0", "id": "e-1", "source": "crm", "type": etype,
            "subject": subject, "time": "2026-11-20T10:00:00Z", "data": data, **attrs}


@pytest.mark.parametrize(("given", "link"), [
    (event("crm.leads_merged", {"winner_id": "user-1", "loser_id": "user-2"}),
     ("user-2", "user-1", "crm_merge")),
    (event("web.form_submitted", {"form_id": "f", "anonymous_id": "anon-1"}),
     ("anon-1", "user-1", "form")),
    (event("web.page_viewed", {"url": "https://x.io/"}, anonymousid="anon-1"),
     ("anon-1", "user-1", "identify")),
])
def test_events_naming_two_ids_imply_a_link(given: dict[str, Any],
                                            link: tuple[str, str, str]) -> None:
    (linked,) = links_of(given)
    assert (linked["subject"], linked["data"]["lead_id"], linked["data"]["via"]) == link
    assert (linked["type"], linked["id"], linked["source"], linked["time"]) == (
        "identity.linked", "e-1.link", "crm", "2026-11-20T10:00:00Z")


@pytest.mark.parametrize("given", [
    event("web.page_viewed", {"url": "https://x.io/"}),
    event("web.page_viewed", {"url": "https://x.io/", "anonymous_id": "user-1"}),
])
def test_an_event_of_one_id_implies_no_link(given: dict[str, Any]) -> None:
    assert links_of(given) == []


def test_accept_publishes_the_link_behind_its_event() -> None:
    records = accept([event("crm.leads_merged", {"winner_id": "user-1", "loser_id": "user-2"})],
                     key=KEY, received_at=NOW)
    assert [(r.key, r.event_type) for r in records] == [
        (b"user-1", "crm.leads_merged"), (b"user-2", "identity.linked")]


@pytest.mark.parametrize(("given", "path"), [
    (event("crm.leads_merged", {"winner_id": "user-1", "loser_id": "user-1"}), "data.loser_id"),
    (event("identity.linked", {"lead_id": "user-1"}), "data.lead_id"),
])
def test_a_self_link_is_refused_naming_the_field(given: dict[str, Any], path: str) -> None:
    with pytest.raises(Rejected) as info:
        accept([given], key=KEY, received_at=NOW)
    assert info.value.status == 422
    assert [p.path for p in info.value.problems] == [path]


def test_a_key_that_may_not_link_makes_no_links() -> None:
    crm_only = ApiKey("crm", hash_key("nk_y"), sources=("*",), types=("crm.*",))
    records = accept([event("crm.leads_merged", {"winner_id": "user-1", "loser_id": "user-2"})],
                     key=crm_only, received_at=NOW)
    assert [r.event_type for r in records] == ["crm.leads_merged"]


def test_a_browser_key_makes_only_a_pages_links() -> None:
    page = ApiKey("site", hash_key("nk_z"), sources=("*",), types=("*",),
                  origins=("https://www.example.com",))
    with pytest.raises(Rejected) as info:
        accept([event("identity.linked", {"lead_id": "user-1", "via": "crm_merge"}, "crm-9")],
               key=page, received_at=NOW)
    assert [p.path for p in info.value.problems] == ["data.via"]
    records = accept([event("identity.linked", {"lead_id": "user-1", "via": "alias"}, "anon-9")],
                     key=page, received_at=NOW)
    assert [r.key for r in records] == [b"anon-9"]
