"""Building the email (pure): multipart text + HTML, a `Message-ID` derived from the dispatch
message id, `List-Unsubscribe` (https, plus mailto when configured) with RFC 8058
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and the tracking pixel and click-tracked
links of the HTML part.

Headers are never folded into RFC 2047 encoded words (which would break the URLs in
`List-Unsubscribe`): lines may use the 998 characters RFC 5322 allows. Bodies are
quoted-printable, so any SMTP server takes them whether or not it offers 8BITMIME."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
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


LINE_MAX = 998  # RFC 5322's limit on a line's length


class _Policy(EmailPolicy):
    """The SMTP policy with two shortcuts, each writing the same bytes as the standard path
    (tests/dispatch/unit/test_dispatch_messages.py); the standard path parsed every header
    when set and refolded it from its parse tree when flattened, most of the `email`
    package's CPU per message.

    - The headers `build_email` writes as plain text (`VERBATIM`) are stored as the text when
      it is printable ASCII on one line, and written out as they are.
    - Any other header given as text is parsed once per distinct (name, value) (`_parsed`):
      the sender's addresses and the MIME parts' headers repeat from message to message.
      Header objects are immutable, so messages can share them.
    Values that are not text (the recipient's `Address`) take the standard path."""

    VERBATIM = frozenset({"subject", "date", "message-id", "list-unsubscribe",
                          "list-unsubscribe-post", "x-nurture-message-id"})

    def header_store_parse(self, name: str, value: str) -> tuple[str, str]:
        if not isinstance(value, str):
            return super().header_store_parse(name, value)
        if name.lower() in self.VERBATIM and _PLAIN.fullmatch(value) \
                and len(name) + len(value) + 2 <= LINE_MAX:
            return name, value
        return name, _parsed(self.header_factory, name, value)


@functools.lru_cache(maxsize=512)
def _parsed(factory: HeaderRegistry, name: str, value: str) -> BaseHeader:
    if len(value.splitlines()) > 1:  # as the standard policy refuses it
        raise ValueError("Header values may not contain linefeed or carriage return characters")
    return factory(name, value)


# printable ASCII, one line, no leading or trailing white space (which folding would change)
_PLAIN = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
POLICY = _Policy(linesep="\r\n", max_line_length=LINE_MAX, header_factory=_HeaderClasses())
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
