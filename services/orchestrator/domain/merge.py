"""Folding one lead into another (docs/identity.md): an anonymous visitor who identified, an
alias, a CRM merge. Pure: the adapters move the rows (`adapters/merge.py`).

The rule is to lose nothing and to send nothing twice:
- profile fields: the newest value of each wins, whoever had it;
- stage: the absorbing lead's, unless it is new (then the absorbed one's); the furthest funnel
  stage either reached is remembered;
- enrollments: per program, the absorbing lead's if it has one (it may have finished the
  program already), else the absorbed one's moves over, with its timers;
- suppressions: a suppression on either side holds; contacts (for the caps) add up; last
  activity is the later, creation the earlier."""

from __future__ import annotations

from services.orchestrator.domain.lead import FUNNEL, Lead


def merge_leads(winner: Lead | None, loser: Lead, lead_id: str) -> tuple[Lead, tuple[str, ...]]:
    """(the merged lead, the programs whose enrollment moved from `loser`). `winner` None: the
    lead `lead_id` is new, and is `loser` under its new id."""
    if winner is None:
        merged = loser.copy()
        merged.lead_id = lead_id
        return merged, tuple(loser.enrollments)
    merged = winner.copy()
    for key, value in loser.profile.items():
        t = loser.profile_time.get(key, float("-inf"))
        if t >= merged.profile_time.get(key, float("-inf")):
            merged.profile[key], merged.profile_time[key] = value, t
    moved = tuple(p for p in loser.enrollments if p not in merged.enrollments)
    for program_id in moved:
        merged.enrollments[program_id] = loser.enrollments[program_id].copy()
    for program_id, at in loser.last_exit.items():
        merged.last_exit[program_id] = max(at, merged.last_exit.get(program_id, at))
    for channel, reason in loser.suppressed.items():
        merged.suppressed.setdefault(channel, reason)
    merged.contacts = sorted([*merged.contacts, *loser.contacts], key=lambda c: c.at)
    merged.tags = [*merged.tags, *(t for t in loser.tags if t not in merged.tags)]
    for name, at in loser.scheduled_dates.items():
        merged.scheduled_dates.setdefault(name, at)
    merged.last_activity_at = _later(merged.last_activity_at, loser.last_activity_at)
    merged.created_at = min(merged.created_at, loser.created_at)
    merged.enrollment_count += loser.enrollment_count
    merged.furthest = _further(merged.furthest, loser.furthest)
    return merged, moved


def _later(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _further(a: str | None, b: str | None) -> str | None:
    if a not in FUNNEL:
        return b if b in FUNNEL else a
    if b not in FUNNEL:
        return a
    return a if FUNNEL.index(a) >= FUNNEL.index(b) else b
