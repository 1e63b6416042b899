from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.ingest.domain.intake import Rejected
from services.ingest.domain.segment import (
    ClientIp,
    check_batch_size,
    context_attributes,
    map_batch,
)

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def call(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "userId": "lead-7", "messageId": f"m-{kind}",
            "timestamp": "2026-11-20T10:00:00+00:00"} | fields


def one(c: dict[str, Any]) -> dict[str, Any]:
    (event,) = map_batch({"batch": [c]}, key_name="site", received_at=NOW)
    return event


def test_identify_maps_traits_onto_the_profile() -> None:
    event = one(call("identify", traits={
        "email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace",
        "company": {"name": "Analytical Engines", "employee_count": 40},
        "address": {"country": "gb"}, "plan": "pro", "tags": ["a", "b"]},
        context={"timezone": "Europe/London"}))
    assert event["type"] == "crm.lead_upserted"
    assert event["subject"] == "lead-7" and event["id"] == "m-identify"
    assert event["source"] == "segment:site"
    assert event["time"] == "2026-11-20T10:00:00+00:00"
    assert event["data"] == {
        "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
        "company": "Analytical Engines", "company_size": 40, "country": "GB",
        "timezone": "Europe/London", "attributes": {"plan": "pro", "tags": '["a","b"]'}}


def test_page_uses_properties_then_context_and_campaign_as_utm() -> None:
    event = one(call("page", name="Pricing", properties={"url": "https://x.io/pricing"},
                     context={"page": {"referrer": "https://google.com"},
                              "campaign": {"name": "q4", "source": "ads"}}))
    assert event["type"] == "web.page_viewed"
    assert event["data"] == {"url": "https://x.io/pricing", "referrer": "https://google.com",
                             "title": "Pricing", "utm": {"campaign": "q4", "source": "ads"}}


@pytest.mark.parametrize(("name", "props", "etype", "data"), [
    ("Demo Requested", {}, "web.form_submitted",
     {"form_type": "demo_request", "form_id": "demo-request"}),
    ("form_submitted", {"formId": "contact-us", "form_type": "contact"}, "web.form_submitted",
     {"form_id": "contact-us", "form_type": "contact"}),
    ("File Downloaded", {"id": "wp-9", "name": "ROI guide"}, "web.content_downloaded",
     {"content_id": "wp-9", "title": "ROI guide"}),
    ("Webinar Attended", {"webinar_id": "w1"}, "web.webinar_attended", {"webinar_id": "w1"}),
    ("Report Exported", {"rows": 10}, "product.activity",
     {"action": "Report Exported", "properties": {"rows": 10}}),
])
def test_track_names_map_to_types(name: str, props: dict[str, Any], etype: str,
                                  data: dict[str, Any]) -> None:
    event = one(call("track", event=name, properties=props))
    assert (event["type"], event["data"]) == (etype, data)


def test_anonymous_id_is_the_lead_when_there_is_no_user_id() -> None:
    event = one(call("page", userId=None, anonymousId="anon-1", properties={"url": "https://x.io"}))
    assert event["subject"] == "anon-1"


def test_rudderstack_identify_traits_in_the_context_and_its_gmt_timezone() -> None:
    event = one(call("identify", context={"traits": {"email": "ada@example.com"},
                                          "timezone": "GMT+0100"}))
    assert event["data"] == {"email": "ada@example.com"}  # "GMT+0100" is no zone name: left out
    assert one(call("identify", traits={"email": "a@x.io"}, context={
        "timezone": "Europe/Berlin"}))["data"]["timezone"] == "Europe/Berlin"


def test_alias_links_the_previous_id_to_the_user() -> None:
    event = one(call("alias", previousId="anon-9"))
    assert (event["type"], event["subject"], event["data"]) == (
        "identity.linked", "anon-9", {"lead_id": "lead-7", "via": "alias"})


def test_a_call_with_both_ids_carries_the_anonymous_one() -> None:
    assert one(call("page", anonymousId="anon-1", properties={"url": "https://x.io"}))[
        "anonymousid"] == "anon-1"
    assert "anonymousid" not in one(call("page", userId=None, anonymousId="anon-1",
                                         properties={"url": "https://x.io"}))


def test_problems_point_at_segment_fields_and_reject_the_whole_batch() -> None:
    batch = {"batch": [
        call("page", properties={"url": "https://x.io"}),
        call("identify", traits={"email": "not-an-email"}),
        call("alias", previousId=""),
        call("track", event="Signed Up", userId=None, anonymousId=None),
        call("page"),
    ]}
    with pytest.raises(Rejected) as info:
        map_batch(batch, key_name="site", received_at=NOW)
    assert info.value.status == 422
    paths = {(p.index, p.path) for p in info.value.problems}
    assert (1, "traits.email") in paths
    assert (2, "previousId") in paths
    assert (3, "userId") in paths
    assert (4, "data.url") in paths
    assert not any(p.index == 0 for p in info.value.problems)


@pytest.mark.parametrize("doc", [[], {"batch": "x"}, {"nobatch": []}])
def test_wrong_shape_is_400(doc: Any) -> None:
    with pytest.raises(Rejected) as info:
        map_batch(doc, key_name="site", received_at=NOW)
    assert info.value.status == 400


def test_device_clock_skew_is_corrected_with_sent_at() -> None:
    doc = {"sentAt": "2026-11-24T10:30:00Z",  # the device clock runs an hour ahead
           "batch": [call("page", properties={"url": "https://x.io"},
                          timestamp="2026-11-24T10:29:00Z")]}
    (event,) = map_batch(doc, key_name="s", received_at=datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    assert event["time"] == "2026-11-24T09:29:00.000Z"


def test_a_call_without_message_id_gets_one_derived_from_the_call() -> None:
    plain = call("track", event="Report Exported", messageId=None)
    del plain["messageId"]
    first = one(plain)
    assert first["id"].startswith("derived-")
    # a retry of the same call (sentAt changes) is the same event; another call is another
    assert one({**plain, "sentAt": "2026-11-24T09:29:59Z"})["id"] == first["id"]
    assert one({**plain, "event": "Report Shared"})["id"] != first["id"]
    with pytest.raises(Rejected) as info:
        one(call("track", event="Report Exported", messageId=""))
    assert ("messageId", "must be a non-empty string") in {
        (p.path, p.message) for p in info.value.problems}


def test_limits_are_segments_bytes_not_a_count_of_calls() -> None:
    small = [call("track", event="Report Exported", messageId=f"m-{n}") for n in range(600)]
    assert len(map_batch({"batch": small}, key_name="site", received_at=NOW)) == 600
    big = call("track", event="Report Exported", properties={"blob": "x" * 33_000})
    with pytest.raises(Rejected) as info:
        map_batch({"batch": [small[0], big]}, key_name="site", received_at=NOW)
    (problem,) = info.value.problems
    assert problem.index == 1 and "over Segment's limit of 32 KB per call" in problem.message
    with pytest.raises(Rejected) as whole:
        check_batch_size(501 * 1024)
    assert whole.value.status == 413 and "500 KB per batch" in whole.value.message
    check_batch_size(500 * 1024)


CONTEXT = {"ip": "203.0.113.77", "userAgent": "Mozilla/5.0 (X11)", "locale": "en-GB",
           "library": {"name": "analytics-next", "version": "1.70.0"}, "timezone": "Europe/London"}


@pytest.mark.parametrize(("policy", "kept"), [
    ("truncate", "203.0.113.0"), ("keep", "203.0.113.77"), ("drop", None)])
def test_context_travels_as_extension_attributes_and_the_ip_as_configured(
        policy: ClientIp, kept: str | None) -> None:
    doc = {"batch": [call("page", properties={"url": "https://x.io"}, context=CONTEXT)]}
    (event,) = map_batch(doc, key_name="site", received_at=NOW, client_ip=policy)
    assert (event["useragent"], event["locale"], event["library"]) == (
        "Mozilla/5.0 (X11)", "en-GB", "analytics-next/1.70.0")
    assert event.get("clientip") == kept
    assert context_attributes({"ip": "2001:db8:1234:5678::1"}, "truncate") == {
        "clientip": "2001:db8:1234::"}
    assert context_attributes({"ip": "not-an-ip"}, "keep") == {}


def test_an_ipv4_mapped_address_is_truncated_as_ipv4_and_a_missing_one_taken_from_the_request(
        ) -> None:
    assert context_attributes({"ip": "::ffff:198.51.100.7"}, "truncate") == {
        "clientip": "198.51.100.0"}
    assert context_attributes({}, "truncate", "203.0.113.9") == {"clientip": "203.0.113.0"}
    assert context_attributes({"ip": "192.0.2.1"}, "keep", "203.0.113.9") == {
        "clientip": "192.0.2.1"}
    assert context_attributes({"library": {"name": "", "version": "1"}}, "drop") == {}


def test_group_traits_are_kept_as_group_attributes() -> None:
    event = one(call("group", groupId="acct-9", traits={
        "name": "Analytical Engines", "employees": 40, "plan": "enterprise", "mrr": 1200,
        "regions": ["eu"]}))
    assert event["data"] == {
        "company": "Analytical Engines", "company_size": 40,
        "attributes": {"group_plan": "enterprise", "group_mrr": 1200, "group_regions": '["eu"]',
                       "group_id": "acct-9"}}
