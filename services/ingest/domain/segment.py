"""Segment-compatible batches (`POST /v1/batch`) mapped onto Nurture's CloudEvents (pure).

Any Segment or RudderStack SDK pointed at Nurture works unchanged. The mapping (also in the README):

| Segment call                       | Nurture type              | lead id (`subject`)        |
|------------------------------------|---------------------------|----------------------------|
| identify (traits)                  | crm.lead_upserted         | userId, else anonymousId   |
| group (traits of the company)      | crm.lead_upserted         | "                          |
| page / screen                      | web.page_viewed           | "                          |
| track "Form Submitted"             | web.form_submitted        | "                          |
| track "Demo Requested"             | web.form_submitted (demo) | "                          |
| track "Content/File Downloaded"    | web.content_downloaded    | "                          |
| track "Webinar Registered/Attended"| web.webinar_*             | "                          |
| any other track                    | product.activity          | "                          |
| alias                              | identity.linked           | previousId                 |

`messageId` becomes the event `id` (a call without one gets an id derived from its content, so
a retried identical call is the same event), `segment:<api key name>` its `source`, `timestamp`
its `time` (corrected for the device's clock skew with `sentAt`, as Segment does). Of `context`,
the user agent, locale, library and client address travel as extension attributes (`useragent`,
`locale`, `library`, `clientip`: the address truncated to its network, dropped or kept whole by
configuration). Limits are Segment's: 32 KB per call, 500 KB per batch.
An `alias` call becomes `identity.linked` (subject `previousId`, `data.lead_id` the `userId`), and
a call with both `userId` and `anonymousId` carries the anonymous id as the `anonymousid`
attribute, from which ingest links the two (docs/identity.md). The endpoint accepts the calls
that map and dead-letters the others (see `map_calls`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

import orjson

from schemas import validate_event
from schemas.cloudevent import new_event
from schemas.formats import is_iana_timezone
from schemas.vocabulary import event_epoch, rfc3339
from services.common.kafka.deadletter import Origin, dead_letter
from services.ingest.domain.intake import FieldProblem, Record, Rejected

ORIGIN_TOPIC = "http:/v1/batch"
CONSUMER = "nurture-ingest"
MAX_CALL_BYTES = 32 * 1024  # Segment's limits (its HTTP tracking API)
MAX_BATCH_BYTES = 500 * 1024
ClientIp = Literal["truncate", "drop", "keep"]
"""What becomes of a call's `context.ip`: its network only (IPv4 /24, IPv6 /48), nothing, or
the whole address."""
MAX_ATTRIBUTE = 1024  # the longest extension attribute value (schemas/cloudevent.schema.json)

Mapped = tuple[str, dict[str, Any], dict[str, str]]  # (type, data, data field -> segment path)

PROFILE_TRAITS = {  # Nurture profile field -> Segment trait spellings, first match wins
    "email": ("email",), "phone": ("phone",), "title": ("title",),
    "first_name": ("firstName", "first_name"), "last_name": ("lastName", "last_name"),
    "seniority": ("seniority",), "industry": ("industry",),
    "company_domain": ("companyDomain", "company_domain", "website"),
    "company_size": ("employees", "company_size", "companySize"),
    "owner_id": ("ownerId", "owner_id"), "lead_source": ("leadSource", "lead_source"),
    "contract_renewal_date": ("contractRenewalDate", "contract_renewal_date"),
    "timezone": ("timezone",),
}
IGNORED_TRAITS = {"address", "company", "createdAt", "created_at", "name", "id", "consent"}


def _norm(event_name: str) -> str:
    return re.sub(r"[\s_-]+", " ", event_name.strip().lower())


def _scalar(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None \
        else orjson.dumps(value).decode()


def _pick(source: dict[str, Any], fields: Mapping[str, tuple[str, ...]],
          base: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Copy the first present spelling of each field; remember where each value came from."""
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for field, spellings in fields.items():
        for spelling in spellings:
            if source.get(spelling) is not None:
                data[field], origin[field] = source[spelling], f"{base}.{spelling}"
                break
    return data, origin


def _profile(traits: dict[str, Any], context: dict[str, Any],
             base: str) -> tuple[dict[str, Any], dict[str, str]]:
    data, origin = _pick(traits, PROFILE_TRAITS, base)
    company = traits.get("company")
    if isinstance(company, str):
        data["company"], origin["company"] = company, f"{base}.company"
    elif isinstance(company, dict):
        for key, field in (("name", "company"), ("industry", "industry"),
                           ("employee_count", "company_size")):
            if company.get(key) is not None:
                data[field], origin[field] = company[key], f"{base}.company.{key}"
    address = traits.get("address")
    if isinstance(address, dict) and isinstance(address.get("country"), str):
        data["country"], origin["country"] = address["country"].upper(), f"{base}.address.country"
    zone = context.get("timezone")  # the device's: used when it is a zone name (RudderStack's
    if "timezone" not in data and isinstance(zone, str) and is_iana_timezone(zone):  # "GMT+01")
        data["timezone"], origin["timezone"] = zone, "context.timezone"
    consumed = {s for spellings in PROFILE_TRAITS.values() for s in spellings} | IGNORED_TRAITS
    extra = {k: _scalar(v) for k, v in traits.items() if k not in consumed and v is not None}
    if extra:
        data["attributes"], origin["attributes"] = extra, base
    return data, origin


def _identify(call: dict[str, Any]) -> Mapped:
    """The traits of the call (`traits`, or RudderStack's `context.traits`) on the profile."""
    context = _obj(call, "context")
    if call.get("traits") is None and isinstance(context.get("traits"), dict):
        data, origin = _profile(context["traits"], context, "context.traits")
    else:
        data, origin = _profile(_obj(call, "traits"), context, "traits")
    return "crm.lead_upserted", data, origin


GROUP_FIELDS = {"company": ("name",), "industry": ("industry",), "company_size": ("employees",),
                "company_domain": ("website",)}


def _group(call: dict[str, Any]) -> Mapped:
    """The lead's company: its profile fields, and the group's id and other scalar traits as
    `group_<name>` attributes."""
    traits = _obj(call, "traits")
    data, origin = _pick(traits, GROUP_FIELDS, "traits")
    consumed = {spelling for spellings in GROUP_FIELDS.values() for spelling in spellings}
    extra = {f"group_{k}": _scalar(v) for k, v in traits.items()
             if k not in consumed and v is not None}
    if isinstance(call.get("groupId"), str | int):
        extra["group_id"] = str(call["groupId"])
    if extra:
        data["attributes"], origin["attributes"] = extra, "traits"
    return "crm.lead_upserted", data, origin


def _page(call: dict[str, Any]) -> Mapped:
    props, page = _obj(call, "properties"), _obj(_obj(call, "context"), "page")
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for field in ("url", "path", "title", "referrer"):
        if props.get(field) is not None:
            data[field], origin[field] = props[field], f"properties.{field}"
        elif page.get(field) is not None:
            data[field], origin[field] = page[field], f"context.page.{field}"
    if "title" not in data and isinstance(call.get("name"), str):
        data["title"], origin["title"] = call["name"], "name"
    campaign = _obj(_obj(call, "context"), "campaign")
    utm = {("campaign" if k == "name" else k): v for k, v in campaign.items()
           if k in ("name", "source", "medium", "term", "content") and isinstance(v, str)}
    if utm:
        data["utm"], origin["utm"] = utm, "context.campaign"
    for field in ("content_topics", "content_stage"):
        if props.get(field) is not None:
            data[field], origin[field] = props[field], f"properties.{field}"
    return "web.page_viewed", data, origin


TOPICS = ("content_topics", "topics")
TRACK_FIELDS: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "form submitted": ("web.form_submitted", {
        "form_id": ("form_id", "formId"), "form_type": ("form_type", "formType"),
        "page_url": ("page_url", "url")}),
    "demo requested": ("web.form_submitted", {
        "form_id": ("form_id", "formId"), "page_url": ("page_url", "url")}),
    "content downloaded": ("web.content_downloaded", {
        "content_id": ("content_id", "contentId", "id"), "title": ("title", "name"),
        "content_type": ("content_type", "contentType"), "content_topics": TOPICS,
        "content_stage": ("content_stage", "stage")}),
    "webinar registered": ("web.webinar_registered", {
        "webinar_id": ("webinar_id", "webinarId", "id"), "title": ("title", "name"),
        "content_topics": TOPICS}),
    "webinar attended": ("web.webinar_attended", {
        "webinar_id": ("webinar_id", "webinarId", "id"), "title": ("title", "name"),
        "attended_seconds": ("attended_seconds", "duration"), "content_topics": TOPICS}),
}
TRACK_ALIASES = {"file downloaded": "content downloaded", "whitepaper downloaded":
                 "content downloaded", "webinar joined": "webinar attended"}


def _track(call: dict[str, Any]) -> Mapped:
    name = call.get("event")
    if not isinstance(name, str) or not name.strip():
        raise _CallError("event", "is required for a track call")
    props = _obj(call, "properties")
    key = TRACK_ALIASES.get(_norm(name), _norm(name))
    if key in TRACK_FIELDS:
        etype, fields = TRACK_FIELDS[key]
        data, origin = _pick(props, fields, "properties")
        if key == "demo requested":
            data["form_type"] = "demo_request"
            data.setdefault("form_id", "demo-request")
        return etype, data, origin
    data = {"action": name, "properties": props}
    return "product.activity", data, {"action": "event", "properties": "properties"}


class _CallError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def _obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _CallError(key, "must be an object")
    return value


def _alias(call: dict[str, Any]) -> Mapped:
    """`previousId` is `userId` (docs/identity.md); the event's subject is `previousId`."""
    user = call.get("userId")
    if not isinstance(user, str | int) or user == "":
        raise _CallError("userId", "an alias call needs the userId that previousId becomes")
    return "identity.linked", {"lead_id": str(user), "via": "alias"}, {"lead_id": "userId"}


MAPPERS: dict[str, Callable[[dict[str, Any]], Mapped]] = {
    "identify": _identify, "group": _group, "page": _page, "screen": _page, "track": _track,
    "alias": _alias,
}


def _corrected_time(call: dict[str, Any], sent_at: Any, received_at: datetime) -> str:
    """Segment's clock-skew correction: timestamp - sentAt + receivedAt, both stamps being the
    device's clock. Without `sentAt` the timestamp is taken as it is."""
    when = call.get("timestamp") or call.get("originalTimestamp")
    if not isinstance(when, str):
        return rfc3339(received_at.timestamp())
    sent = call.get("sentAt") or sent_at
    try:
        skew = received_at.timestamp() - event_epoch(sent)
        return rfc3339(event_epoch(when) + skew)
    except ValueError:
        return when  # validated (and refused if unusable) with the rest of the event


def check_batch_size(size: int) -> None:
    """Rejected(413) for a batch body over Segment's limit."""
    if size > MAX_BATCH_BYTES:
        raise Rejected(413, f"the batch is {size} bytes, over Segment's limit of "
                            f"{MAX_BATCH_BYTES // 1024} KB per batch")


def message_id(call: dict[str, Any]) -> str:
    """The call's `messageId`; for a call without one, an id derived from the call itself
    (without `sentAt`, which a retry changes), so that a retried identical call dedupes."""
    given = call.get("messageId")
    if isinstance(given, str) and given:
        return given
    if given is not None:
        raise _CallError("messageId", "must be a non-empty string")
    stable = {k: v for k, v in call.items() if k not in ("messageId", "sentAt")}
    digest = hashlib.blake2b(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS),
                             digest_size=16).hexdigest()
    return f"derived-{digest}"


def context_attributes(context: dict[str, Any], client_ip: ClientIp,
                       client_address: str | None = None) -> dict[str, str]:
    """The extension attributes kept from a call's `context` (`client_address`: its address
    when it names none)."""
    if client_address is not None and "ip" not in context:
        context = {**context, "ip": client_address}
    out: dict[str, str] = {}
    for field, attribute in (("userAgent", "useragent"), ("locale", "locale")):
        if isinstance(context.get(field), str) and context[field]:
            out[attribute] = context[field][:MAX_ATTRIBUTE]
    library = context.get("library")
    if isinstance(library, dict) and isinstance(library.get("name"), str) and library["name"]:
        out["library"] = "/".join(str(part) for part in (library["name"], library.get("version"))
                                  if part)[:MAX_ATTRIBUTE]
    if client_ip != "drop" and isinstance(context.get("ip"), str):
        try:
            address = ipaddress.ip_address(context["ip"])
        except ValueError:
            return out  # not an address: left out
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        prefix = 24 if address.version == 4 else 48
        out["clientip"] = str(address) if client_ip == "keep" else str(
            ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
    return out


def _envelope(call: dict[str, Any], etype: str, data: dict[str, Any], *, source: str,
              received_at: datetime, sent_at: Any = None, client_ip: ClientIp = "truncate",
              client_address: str | None = None) -> dict[str, Any]:
    user, anonymous = call.get("userId"), call.get("anonymousId")
    if call.get("type") == "alias":
        lead, anonymous = call.get("previousId"), None
        if lead in (None, ""):
            raise _CallError("previousId", "an alias call needs the previousId it merges")
    else:
        lead = user if user not in (None, "") else anonymous
        if lead in (None, ""):
            raise _CallError("userId", "userId or anonymousId is required")
    when = _corrected_time(call, sent_at, received_at)
    # both ids: the visitor is the user (ingest links them: `identity.links_of`)
    linked = str(anonymous) if anonymous not in (None, "") and lead == user else None
    return new_event(id=message_id(call), source=source, type=etype, subject=str(lead),
                     time=when, data=data, anonymousid=linked,
                     **context_attributes(_obj(call, "context"), client_ip, client_address))


def _translate(path: str, origin: dict[str, str]) -> str:
    if not path.startswith("data."):
        return {"subject": "userId", "id": "messageId", "time": "timestamp"}.get(path, path)
    field, sep, rest = path[5:].partition(".")
    head = field.split("[", 1)[0]
    if head in origin:
        return origin[head] + field[len(head):] + (sep + rest)
    return path


def map_batch(
    doc: Any, *, key_name: str, received_at: datetime, client_ip: ClientIp = "truncate",
) -> list[dict[str, Any]]:
    """CloudEvents for a Segment batch body, or Rejected listing every call that cannot map."""
    mapped, problems = map_calls(doc, key_name=key_name, received_at=received_at,
                                 client_ip=client_ip)
    if problems:
        raise Rejected(422, f"{len({p.index for p in problems})} of {len(doc['batch'])} calls "
                            "cannot be accepted; nothing was accepted", problems)
    return [event for _, event in mapped]


def map_calls(
    doc: Any, *, key_name: str, received_at: datetime, client_ip: ClientIp = "truncate",
    client_address: str | None = None,
) -> tuple[list[tuple[int, dict[str, Any]]], list[FieldProblem]]:
    """(index, CloudEvent) for every call that maps and validates, and the problems of the
    others (Segment field paths; a call over 32 KB is one). Rejected(400) only for a body that
    is no batch at all. `client_address`: the `context.ip` of calls that name none."""
    if not isinstance(doc, dict) or not isinstance(doc.get("batch"), list):
        raise Rejected(400, "a Segment batch is a JSON object with a 'batch' array")
    calls = doc["batch"]
    if not calls:
        raise Rejected(400, "the batch is empty")
    events: list[tuple[int, dict[str, Any]]] = []
    problems: list[FieldProblem] = []
    for index, call in enumerate(calls):
        try:
            etype, data, origin = _map_call(call)
            event = _envelope(call, etype, data, source=f"segment:{key_name}",
                              received_at=received_at, sent_at=doc.get("sentAt"),
                              client_ip=client_ip, client_address=client_address)
        except _CallError as exc:
            problems.append(FieldProblem(index, exc.path, exc.message))
            continue
        found = [FieldProblem(index, _translate(p.path, origin), p.message)
                 for p in validate_event(event)]
        problems += found
        if not found:
            events.append((index, event))
    return events, problems


def _map_call(call: Any) -> Mapped:
    if not isinstance(call, dict):
        raise _CallError("", "each call must be an object")
    size = len(orjson.dumps(call))
    if size > MAX_CALL_BYTES:
        raise _CallError("", f"the call is {size} bytes, over Segment's limit of "
                             f"{MAX_CALL_BYTES // 1024} KB per call")
    mapper = MAPPERS.get(str(call.get("type")))
    if mapper is None:
        raise _CallError("type", f"unsupported call type {call.get('type')!r}; "
                                 "supported: identify, track, page, screen, group, alias")
    return mapper(call)


def dead_letters(calls: list[Any], problems: list[FieldProblem], *, topic: str,
                 when: datetime) -> list[Record]:
    """One dead letter per rejected Segment call: its original JSON and every reason, so it is
    not lost and can be fixed and sent again (`nurture-dlq list` finds it; having no origin
    topic, `replay` leaves it)."""
    reasons: dict[int, list[str]] = {}
    for p in problems:
        reasons.setdefault(p.index, []).append(f"{p.path}: {p.message}" if p.path else p.message)
    out = []
    for index, why in sorted(reasons.items()):
        call = calls[index]
        lead = call.get("userId") or call.get("anonymousId") if isinstance(call, dict) else None
        key, value, headers = dead_letter(
            key=str(lead).encode() if lead else None, value=orjson.dumps(call),
            origin=Origin(ORIGIN_TOPIC, 0, index), error="; ".join(why)[:2000],
            consumer=CONSUMER, failed_at=when)
        out.append(Record(key, value, "deadletter", headers, topic=topic))
    return out
