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
| score falls below `mql` (crossed downward)          | mql                          | lead        |
| any behavioral event                                | cold                         | lead        |
| a form other than newsletter                        | subscriber                   | lead        |
A new lead starts as `subscriber` if its first event is a newsletter sign-up, else `lead`.
Programs can also set a stage (`set_stage` step), e.g. `cold` after re-engagement fails.

`scores` is the lead's score per model right after the event (`LeadScore.models` of the scored
event, read as typed `ModelScore`s); empty when the event came without scores."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from schemas.records import ModelScore
from schemas.vocabulary import LIFTED_BY_CONSENT, suppression_of
from services.common.config.flatten import flatten
from services.orchestrator.domain.lead import Lead

BEHAVIORAL_PREFIXES = ("web.", "product.")
BEHAVIORAL_TYPES = frozenset({"email.opened", "email.clicked", "email.replied", "sms.replied"})
def is_behavioral(etype: str) -> bool:
    return etype.startswith(BEHAVIORAL_PREFIXES) or etype in BEHAVIORAL_TYPES


def update_record(lead: Lead, etype: str, data: Mapping[str, Any],
                  scores: Mapping[str, ModelScore], event_time: float) -> bool:
    """Fold the event into the lead; True when the profile changed."""
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
        lead.scores[model] = snapshot(snap)
        if snap.interests:
            lead.interests = list(snap.interests)
        if snap.journey_stage:
            lead.journey_stage = snap.journey_stage
    return changed


def snapshot(snap: ModelScore) -> dict[str, Any]:
    """What the lead keeps of a model's score (JSON-ready: it is saved with the lead)."""
    return {"total": snap.total, "fit": snap.fit, "engagement": snap.engagement,
            "above": list(snap.above),
            "breakdown": [{"rule": c.rule, "points": c.points} for c in snap.breakdown]}


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
        return "lead", f"{stage_model} score fell below mql"
    if stage == "cold" and is_behavioral(etype):
        return "lead", "active again"
    if stage == "subscriber" and etype == "web.form_submitted" \
            and data.get("form_type") != "newsletter":
        return "lead", "submitted a form"
    return None
