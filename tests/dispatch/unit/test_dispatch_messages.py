"""Building messages: the email's headers, parts and tracked links; the send-time triage;
the CRM task and webhook bodies."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.records import SendMessage
from services.common.tracking import Kind, verify
from services.dispatch.domain import email as email_domain
from services.dispatch.domain.email import (
    EmailContent,
    InvalidAddress,
    Sender,
    build_email,
    message_id_header,
)
from services.dispatch.domain.links import Tracker
from services.dispatch.domain.messages import Skip, build_task, build_webhook, triage

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KEY = b"k" * 32
BASE = "https://t.example.com"
SENDER = Sender("Acme <hi@acme.example>", "acme.example", reply_to="sales@acme.example",
                unsubscribe_mailto="unsubscribe@acme.example")
HTML = ('<html><body><p>Hi</p><a href="https://acme.example/pricing?a=1&amp;b=2">Plans</a>'
        '<a href="mailto:x@acme.example">Mail</a><a href="#top">Top</a></body></html>')


def cmd(channel: str = "email", **overrides: Any) -> SendMessage:
    fields: dict[str, Any] = {
        "message_id": "0123abcd", "lead_id": "lead-1", "channel": channel,
        "template": "pricing-followup", "program_id": "pricing", "step_id": "email-1",
        "context": {"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
                    "phone": "+14155550123", "owner_id": "owner-7", "stage": "mql",
                    "scores": {"b2b": {"total": 60, "breakdown": []}}}} | overrides
    return SendMessage(**fields)


def email(command: SendMessage | None = None, *, opens: bool = True,
          clicks: bool = True) -> EmailMessage:
    command = command or cmd()
    tracker = Tracker(command, BASE, KEY, NOW, timedelta(days=30))
    return build_email(command, EmailContent("Plans  for\nyou", "Hi Ada\n", HTML),
                       sender=SENDER, tracker=tracker, track_opens=opens, track_clicks=clicks,
                       now=NOW)


def parsed(message: EmailMessage) -> EmailMessage:
    out = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(out, EmailMessage)
    return out


def test_headers() -> None:
    msg = parsed(email())
    assert msg["Message-ID"] == "<0123abcd@acme.example>"
    assert msg["To"] == "Ada Lovelace <ada@example.com>"
    assert (msg["From"], msg["Reply-To"]) == ("Acme <hi@acme.example>", "sales@acme.example")
    assert msg["Subject"] == "Plans for you"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = (part.strip(" <>") for part in msg["List-Unsubscribe"].split(","))
    assert https.startswith(f"{BASE}/t/unsubscribe/")
    assert mailto == "mailto:unsubscribe@acme.example?subject=unsubscribe"
    claims = verify(https.rsplit("/", 1)[1], keys=[KEY], now=NOW.timestamp(),
                    kind="unsubscribe")
    assert (claims.message_id, claims.lead_id, claims.step_id) == ("0123abcd", "lead-1",
                                                                   "email-1")


def test_list_unsubscribe_is_never_encoded_or_folded_mid_url() -> None:
    raw = email().as_bytes().decode()
    line = next(li for li in raw.split("\r\n") if li.startswith("List-Unsubscribe:"))
    assert "=?utf-8?" not in line and line.endswith(">")


def test_multipart_with_tracked_links_and_pixel() -> None:
    msg = parsed(email())
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    body = msg.get_body(("html",))
    assert text is not None and body is not None
    assert text.get_content().splitlines() == ["Hi Ada"]
    page = body.get_content()
    hrefs = re.findall(r'href="([^"]+)"', page)
    assert hrefs[1:] == ["mailto:x@acme.example", "#top"]  # left alone
    click = html.unescape(hrefs[0])
    assert click.startswith(f"{BASE}/t/click/")
    claims = verify(click.rsplit("/", 1)[1], keys=[KEY], now=NOW.timestamp(), kind="click")
    assert claims.url == "https://acme.example/pricing?a=1&b=2"
    assert claims.exp == int((NOW + timedelta(days=30)).timestamp())
    pixel = re.search(r'<img src="([^"]+)"[^>]*></body>', page)
    assert pixel is not None and pixel[1].startswith(f"{BASE}/t/open/")


def test_tracking_can_be_turned_off() -> None:
    page = parsed(email(opens=False, clicks=False)).get_body(("html",))
    assert page is not None
    assert "/t/" not in page.get_content()


@pytest.mark.parametrize("address", ["", "not-an-address", "a@b@c", "ada@example.com\r\nBcc: x@y"])
def test_an_unusable_address_is_refused(address: str) -> None:
    with pytest.raises(InvalidAddress):
        email(cmd(context={"email": address}))


def test_message_id_is_derived_from_the_dispatch_id() -> None:
    assert message_id_header("abc-123", "x.io") == "<abc-123@x.io>"
    weird = message_id_header("lead 1|step<2>", "x.io")
    assert re.fullmatch(r"<[0-9a-f]{40}@x\.io>", weird)
    assert weird == message_id_header("lead 1|step<2>", "x.io")


T = NOW - timedelta(seconds=1)


@pytest.mark.parametrize(("command", "suppressions", "expected"), [
    (cmd(), {}, None),
    (cmd(expires_at=NOW), {}, Skip("expired", "expired")),
    (cmd(expires_at=NOW + timedelta(seconds=1)), {}, None),
    (cmd(expires_at=T), {"email": "unsubscribed"}, Skip("expired", "expired")),
    (cmd(), {"email": "unsubscribed"}, Skip("suppressed", "unsubscribed")),
    (cmd(), {"*": "complained"}, Skip("suppressed", "complained")),
    (cmd(), {"sms": "opted_out"}, None),
    (cmd(context={"email": "  "}), {}, Skip("suppressed", "no_address")),
    (cmd("sms", context={"email": "a@b.c"}), {}, Skip("suppressed", "no_address")),
    (cmd("sms"), {"sms": "opted_out"}, Skip("suppressed", "opted_out")),
    (cmd("crm_task", context={}), {}, None),
    (cmd("webhook", context={}), {}, None),
])
def test_triage(command: SendMessage, suppressions: dict[str, str],
                expected: Skip | None) -> None:
    assert triage(command, now=NOW, suppressions=suppressions) == expected


def test_the_task_says_who_when_and_why_now() -> None:
    task = build_task(cmd("crm_task", subject="Offer a call", due_at=NOW + timedelta(days=1)),
                      body="Call Ada", now=NOW)
    assert task.payload["owner_id"] == "owner-7"
    assert task.payload["subject"] == "Offer a call"
    assert task.payload["due_at"] == "2026-03-02T09:00:00+00:00"
    assert task.payload["body"] == "Call Ada"
    assert task.payload["external_id"] == "0123abcd"
    assert task.payload["why_now"]["scores"] == {"b2b": {"total": 60, "breakdown": []}}
    assert task.payload["lead"]["first_name"] == "Ada"


def test_a_task_for_a_lead_without_owner_goes_to_the_default_owner_if_one_is_set() -> None:
    context = {k: v for k, v in cmd("crm_task").context.items() if k != "owner_id"}
    ownerless = cmd("crm_task", context=context)
    assert build_task(ownerless, body=None, now=NOW).payload["owner_id"] is None
    assert build_task(ownerless, body=None, now=NOW,
                      default_owner="queue:sdr").payload["owner_id"] == "queue:sdr"
    owned = build_task(cmd("crm_task"), body=None, now=NOW, default_owner="queue:sdr")
    assert owned.payload["owner_id"] == "owner-7"  # the lead's own owner wins


def test_the_webhook_body_follows_the_standard_webhooks_shape() -> None:
    hook = build_webhook(cmd("webhook"), text="Hello", now=NOW)
    assert set(hook.payload) == {"type", "timestamp", "data"}
    assert hook.payload["data"]["text"] == "Hello"
    assert hook.payload["data"]["context"]["first_name"] == "Ada"


def test_the_unsubscribe_link_outlives_the_tracking_links() -> None:
    tracker = Tracker(cmd(), BASE, KEY, NOW, timedelta(days=90), timedelta(days=365))

    def expires(kind: Kind, target: str | None = None) -> float:
        token = tracker.url(kind, target).rsplit("/", 1)[1]
        return verify(token, keys=[KEY], now=NOW.timestamp(), kind=kind).exp - NOW.timestamp()

    assert expires("open") == expires("click", "https://x.io") == 90 * 86400
    assert expires("unsubscribe") == 365 * 86400
    same = Tracker(cmd(), BASE, KEY, NOW, timedelta(days=90))  # no separate lifetime given
    assert verify(same.url("unsubscribe").rsplit("/", 1)[1], keys=[KEY], now=NOW.timestamp(),
                  kind="unsubscribe").exp - NOW.timestamp() == 90 * 86400


_BOUNDARY = re.compile(rb"={15}\d+==")
_standard = EmailPolicy(linesep="\r\n", max_line_length=998)  # what POLICY refines


def wire(message: EmailMessage) -> bytes:
    return _BOUNDARY.sub(b"BOUNDARY", message.as_bytes())


@settings(max_examples=60, deadline=None)
@given(subject=st.text(min_size=1, max_size=120), message_id=st.text(
    st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60),
    first_name=st.text(max_size=20), sender_name=st.sampled_from(
        ["", "Acme", "Ädä & Co", '"Acme, Inc."', "Acme (sales)"]))
def test_our_policy_writes_the_bytes_the_standard_policy_writes(
        subject: str, message_id: str, first_name: str, sender_name: str) -> None:
    """POLICY keeps some headers as text (subject, date, ids, List-Unsubscribe) and parses
    the others once per distinct value, sharing them between messages; its messages come out
    as the stdlib's SMTP policy, which parses and refolds every header, writes them: any
    subject, non-ASCII or blank ones included, any message id, sender and name."""
    command = cmd(message_id=message_id,
                  context={"email": "ada@example.com", "first_name": first_name})
    tracker = Tracker(command, BASE, KEY, NOW, timedelta(days=30))
    content = EmailContent(subject, "Hi\n", HTML)
    sender = Sender(f"{sender_name} <hi@acme.example>".strip(), "acme.example",
                    reply_to="sales@acme.example")
    ours = build_email(command, content, sender=sender, tracker=tracker, track_opens=True,
                       track_clicks=True, now=NOW)
    with mock.patch.object(email_domain, "POLICY", _standard):
        theirs = build_email(command, content, sender=sender, tracker=tracker,
                             track_opens=True, track_clicks=True, now=NOW)
    assert wire(ours) == wire(theirs)
