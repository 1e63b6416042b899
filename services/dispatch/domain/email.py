"""Building the email (pure): multipart text + HTML, a `Message-ID` derived from the dispatch
message id, `List-Unsubscribe` (https, plus mailto when configured) with RFC 8058
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and the tracking pixel and click-tracked
links of the HTML part.

Headers are never folded into RFC 2047 encoded words (which would break the URLs in
`List-Unsubscribe`): lines may use the 998 characters RFC 5322 allows. Bodies are
quoted-printable, so any SMTP server takes them whether or not it offers 8BITMIME."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from schemas.records import SendMessage
from services.dispatch.domain.errors import DispatchError
from services.dispatch.domain.links import Tracker


class _HeaderClasses(HeaderRegistry):
    """The stdlib registry creates a new header class (`type(...)`) for every header it sets or
    parses, a good share of the CPU an email costs; this one creates one per header name."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


POLICY = policy.SMTP.clone(max_line_length=998, header_factory=_HeaderClasses())
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,200}")


class InvalidAddress(DispatchError):
    """The lead's email address cannot be used in a `To` header. Permanent."""

    def __init__(self) -> None:
        super().__init__("invalid_address", "the lead's email address is not valid")


@dataclass(frozen=True, slots=True)
class EmailContent:
    """A rendered email: subject and text part, and the HTML part when the template has one."""

    subject: str
    text: str
    html: str | None


@dataclass(frozen=True, slots=True)
class Sender:
    """Who the email is from: `from_address` may carry a display name (`Acme <hi@acme.io>`);
    `message_id_domain` is the right-hand side of `Message-ID`; `unsubscribe_mailto` adds a
    mailto to `List-Unsubscribe`."""

    from_address: str
    message_id_domain: str
    reply_to: str | None = None
    unsubscribe_mailto: str | None = None


def message_id_header(message_id: str, domain: str) -> str:
    """`<id@domain>`, the dispatch id itself when it is a valid dot-atom, else its hash."""
    left = message_id if _ATOM.fullmatch(message_id) and ".." not in message_id \
        and not message_id.startswith(".") and not message_id.endswith(".") \
        else hashlib.sha256(message_id.encode()).hexdigest()[:40]
    return f"<{left}@{domain}>"


def build_email(cmd: SendMessage, content: EmailContent, *, sender: Sender, tracker: Tracker,
                track_opens: bool, track_clicks: bool, now: datetime) -> EmailMessage:
    """The email for `cmd`, ready for SMTP."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender.from_address
    msg["To"] = _recipient(cmd)
    if sender.reply_to:
        msg["Reply-To"] = sender.reply_to
    msg["Subject"] = " ".join(content.subject.split())
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id_header(cmd.message_id, sender.message_id_domain)
    unsubscribe = [f"<{tracker.url('unsubscribe')}>"]
    if sender.unsubscribe_mailto:
        unsubscribe.append(f"<mailto:{sender.unsubscribe_mailto}?subject=unsubscribe>")
    msg["List-Unsubscribe"] = ", ".join(unsubscribe)
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Nurture-Message-Id"] = cmd.message_id
    msg.set_content(content.text, cte="quoted-printable")
    if content.html is not None:
        body = tracker.track_clicks(content.html) if track_clicks else content.html
        body = tracker.add_pixel(body) if track_opens else body
        msg.add_alternative(body, subtype="html", cte="quoted-printable")
    return msg


def _recipient(cmd: SendMessage) -> Address:
    email = str(cmd.context.get("email", "")).strip()
    name = " ".join(" ".join(str(cmd.context.get(k) or "") for k in ("first_name",
                                                                     "last_name")).split())
    if parseaddr(email)[1] != email or email.count("@") != 1 or any(c in email for c in "\r\n"):
        raise InvalidAddress()
    try:
        return Address(display_name=name, addr_spec=email)
    except (ValueError, IndexError):
        raise InvalidAddress() from None
