"""The contact policy: one contact budget per lead across all programs and channels (pure).

A message that may not go now is deferred to the next allowed moment (quiet hours end, a cap
window frees up) or dropped (suppressed, no consent, or it would expire first); either way the
verdict says why. Only person-facing channels (email, SMS) count against caps and quiet hours;
CRM tasks and webhooks are internal and always go."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.vocabulary import PERSON_CHANNELS
from services.orchestrator.domain.lead import Contact, Lead


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `max` messages on `channel` ("any" = all person-facing channels together) in any
    sliding window of `window_seconds`."""

    channel: str
    max: int
    window_seconds: int


@dataclass(frozen=True, slots=True)
class QuietHours:
    """No person-facing message between `start` and `end`, in the lead's own time zone (the
    window may span midnight: 20:00-08:00)."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    caps: tuple[Cap, ...] = (Cap("email", 3, 7 * 86400), Cap("sms", 2, 7 * 86400),
                             Cap("any", 4, 7 * 86400))
    quiet_hours: QuietHours | None = QuietHours(time(20, 0), time(8, 0))
    default_timezone: str = "UTC"
    sms_requires_consent: bool = True

    @property
    def history_seconds(self) -> int:
        return max((c.window_seconds for c in self.caps), default=0)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str  # send | defer | drop
    reason: str | None = None
    until: float | None = None  # for defer: when to try again


SEND = Verdict("send")


def zone(lead: Lead, policy: ContactPolicy) -> ZoneInfo:
    for name in (lead.timezone, policy.default_timezone):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                continue
    return ZoneInfo("UTC")


def quiet_until(policy: ContactPolicy, tz: ZoneInfo, now: float) -> float | None:
    """End of the quiet window `now` falls in (epoch seconds), or None if not quiet."""
    quiet = policy.quiet_hours
    if quiet is None:
        return None
    local = datetime.fromtimestamp(now, tz)
    if not quiet.contains(local.time()):
        return None
    day = local.date() if local.time() < quiet.end else local.date() + timedelta(days=1)
    end = datetime.combine(day, quiet.end, tzinfo=tz)
    # a wall-clock end that falls in a DST gap resolves to a real instant; never go backwards
    return max(end.astimezone(UTC).timestamp(), now + 1)


def suppression(lead: Lead, channel: str, policy: ContactPolicy) -> str | None:
    reason = lead.suppressed.get(channel) or lead.suppressed.get("all")
    if reason:
        return f"suppressed: {reason}"
    consent = lead.consent(channel)
    if consent == "denied":
        return f"no consent for {channel}"
    if channel == "sms" and policy.sms_requires_consent and consent != "granted":
        return "no consent for sms"
    if channel == "sms" and not lead.profile.get("phone"):
        return "no phone number"
    if channel == "email" and not lead.profile.get("email"):
        return "no email address"
    return None


def cap_free_at(policy: ContactPolicy, lead: Lead, channel: str, now: float) -> float | None:
    """When the caps allow one more `channel` message (None: now)."""
    latest = None
    for cap in policy.caps:
        if cap.channel not in (channel, "any"):
            continue
        recent = sorted(c.at for c in lead.contacts
                        if now - cap.window_seconds < c.at <= now
                        and (cap.channel == "any" or c.channel == channel)
                        and c.channel in PERSON_CHANNELS)
        if len(recent) >= cap.max:
            free = recent[len(recent) - cap.max] + cap.window_seconds
            latest = free if latest is None else max(latest, free)
    return latest


def check(policy: ContactPolicy, lead: Lead, channel: str, now: float, *,
          expires_at: float | None = None) -> Verdict:
    """May `lead` get a `channel` message now? (Caps count the lead's recent contacts.)"""
    if channel not in PERSON_CHANNELS:
        return SEND
    reason = suppression(lead, channel, policy)
    if reason:
        return Verdict("drop", reason)
    tz = zone(lead, policy)
    when, why = now, None
    for _ in range(8):  # quiet hours and caps can push each other; settle within a few rounds
        free = cap_free_at(policy, lead, channel, when)
        if free is not None:
            when, why = free, "frequency cap"
            continue
        quiet = quiet_until(policy, tz, when)
        if quiet is not None:
            when, why = quiet, why or "quiet hours"
            continue
        break
    if why is None:
        return SEND
    if expires_at is not None and when > expires_at:
        return Verdict("drop", f"expired: {why}")
    return Verdict("defer", why, when)


def record(lead: Lead, channel: str, program_id: str, now: float, policy: ContactPolicy) -> None:
    """Count a sent message against the lead's budget (and forget what no cap looks at)."""
    horizon = now - policy.history_seconds
    lead.contacts = [c for c in lead.contacts if c.at > horizon]
    if channel in PERSON_CHANNELS:
        lead.contacts.append(Contact(now, channel, program_id))
