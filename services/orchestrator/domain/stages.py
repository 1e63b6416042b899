"""What an event does to the lead record, and the lifecycle stage transitions (pure).

Stage rules, in order (first match wins):
| event / condition                                   | from                         | to          |
|-----------------------------------------------------|------------------------------|-------------|
| crm.deal_won                                        | any but customer             | customer    |
| crm.deal_lost                                       | opportunity, sql             | recycled    |
| crm.opportunity_opened                              | any but opportunity/customer | opportunity |
| score crosses the stage model's `sql` upward        | subscriber, lead, mql, recycled,
|                                                     | cold                         | sql         |
| score crosses the stage model's `mql` upward        | subscriber, lead, recycled, cold | mql     |
| score falls below `mql` (crossed downward, by an    | mql                          | lead        |
| event or by decay alone: `lead.score_due`)          |                              |             |
| any behavioral event                                | cold                         | lead        |
| a form other than newsletter                        | subscriber                   | lead        |
A new lead starts as `subscriber` if its first event is a newsletter sign-up, else `lead`.
Programs can also set a stage (`set_stage` step), e.g. `cold` after re-engagement fails.

`scores` is the lead's score per model right after the event (`LeadScore.models` of the scored
event, read as typed `ModelScore`s); empty when the event came without scores."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.records import ModelScore
from schemas.vocabulary import LIFTED_BY_CONSENT, SCORE_DUE_EVENT, suppression_of
from services.common.config.flatten import flatten
from services.orchestrator.domain.lead import Lead

BEHAVIORAL_PREFIXES = ("web.", "product.")
BEHAVIORAL_TYPES = frozenset({"email.opened", "email.clicked", "email.replied", "sms.replied"})
def is_behavioral(etype: str) -> bool:
    return etype.startswith(BEHAVIORAL_PREFIXES) or etype in BEHAVIORAL_TYPES


def update_record(lead: Lead, etype: str, data: Mapping[str, Any],
                  scores: Mapping[str, ModelScore], event_time: float,
                  scored_at: float | None = None) -> bool:
    """Fold the event into the lead; True when the profile changed. `scored_at`: the time the
    scores are as of (the lead's newest event time; default `event_time`)."""
    changed = False
    if etype == "crm.lead_upserted":
        for key, value in flatten(data):
            if event_time >= lead.profile_time.get(key, -math.inf):
                changed |= lead.profile.get(key) != value
                lead.profile[key] = value
                lead.profile_time[key] = event_time
    elif etype == "crm.owner_assigned" and isinstance(data.get("owner_id"), str):
        lead.profile["owner_id"] = data["owner_id"]
    suppressed = suppression_of(etype, data)
    if suppressed is not None:
        channel, reason = suppressed
        lead.suppressed[channel] = reason
    elif etype == "crm.lead_upserted":
        for channel, lifted in LIFTED_BY_CONSENT.items():
            # consent granted again (START by SMS, a re-subscribe in the CRM) lifts an opt-out
            if lead.profile.get(f"consent.{channel}") == "granted" \
                    and lead.suppressed.get(channel) == lifted \
                    and lead.profile_time.get(f"consent.{channel}") == event_time:
                del lead.suppressed[channel]
    if is_behavioral(etype):
        lead.last_activity_at = max(lead.last_activity_at or event_time, event_time)
    for model, snap in scores.items():
        lead.scores[model] = snapshot(snap, event_time if scored_at is None else scored_at)
        if snap.interests:
            lead.interests = list(snap.interests)
        if snap.journey_stage:
            lead.journey_stage = snap.journey_stage
    return changed


def snapshot(snap: ModelScore, as_of: float) -> dict[str, Any]:
    """What the lead keeps of a model's score (JSON-ready: it is saved with the lead), with what
    `score_at` needs to age it. Built by hand: this runs for every event."""
    nxt = snap.next_crossing
    return {"total": snap.total, "fit": snap.fit, "engagement": snap.engagement,
            "above": list(snap.above),
            "breakdown": [{"rule": c.rule, "points": c.points, "kind": c.kind}
                          for c in snap.breakdown],
            "as_of": as_of, "model": snap.model, "version": snap.version,
            "half_life": snap.half_life, "thresholds": snap.thresholds,
            "next_crossing": None if nxt is None else {
                "threshold": nxt.threshold, "direction": nxt.direction,
                "at": nxt.at.timestamp()}}


def score_at(kept: Mapping[str, Any], when: float) -> dict[str, Any]:
    """A kept snapshot as of `when` (no event since: engagement decayed, `above` recomputed,
    `ModelScore.aged`); `as_of` says the time. A snapshot saved before scores carried their
    half-life is given as it is."""
    if kept.get("half_life") is None or "as_of" not in kept:
        return dict(kept)
    nxt = kept.get("next_crossing")
    score = ModelScore.model_validate({
        **kept, "previous_total": None,
        "next_crossing": None if nxt is None else {**nxt, "at": _utc(nxt["at"])}})
    aged = score.aged(when - kept["as_of"])
    return {**kept, "as_of": max(when, kept["as_of"]), "total": aged.total, "fit": aged.fit,
            "engagement": aged.engagement, "above": list(aged.above),
            "breakdown": [c.model_dump() for c in aged.breakdown]}


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def crossed(scores: Mapping[str, ModelScore], model: str, threshold: str) -> str | None:
    """`up` or `down` when this event crossed `model`'s `threshold`, else None."""
    snap = scores.get(model)
    for crossing in snap.crossed if snap is not None else ():
        if crossing.threshold == threshold:
            return crossing.direction
    return None


def initial_stage(etype: str, data: Mapping[str, Any]) -> str:
    newsletter = etype == "web.form_submitted" and data.get("form_type") == "newsletter"
    return "subscriber" if newsletter else "lead"


def next_stage(lead: Lead, etype: str, data: Mapping[str, Any],
               scores: Mapping[str, ModelScore], stage_model: str) -> tuple[str, str] | None:
    """(new stage, cause) for this event, or None. See the table in the module docstring."""
    stage = lead.stage
    if etype == "crm.deal_won" and stage != "customer":
        return "customer", "deal won"
    if etype == "crm.deal_lost" and stage in ("opportunity", "sql"):
        return "recycled", "deal lost"
    if etype == "crm.opportunity_opened" and stage not in ("opportunity", "customer"):
        return "opportunity", "opportunity opened"
    if crossed(scores, stage_model, "sql") == "up" and stage in (
            "subscriber", "lead", "mql", "recycled", "cold"):
        return "sql", f"{stage_model} score crossed sql"
    if crossed(scores, stage_model, "mql") == "up" and stage in (
            "subscriber", "lead", "recycled", "cold"):
        return "mql", f"{stage_model} score crossed mql"
    if crossed(scores, stage_model, "mql") == "down" and stage == "mql":
        how = " as engagement faded" if etype == SCORE_DUE_EVENT else ""
        return "lead", f"{stage_model} score fell below mql{how}"
    if stage == "cold" and is_behavioral(etype):
        return "lead", "active again"
    if stage == "subscriber" and etype == "web.form_submitted" \
            and data.get("form_type") != "newsletter":
        return "lead", "submitted a form"
    return None
