"""The orchestrator's use cases, one handler each: decide a batch of scored events, fire due
timers, enroll, unenroll, erase, inbound SMS, move the shared clock, prune, and the API's reads.
Each opens a unit of work, loads the state, calls the pure Decider, saves and publishes; the
unit of work commits and wakes the outbox relay. No SQL and no Kafka client here."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.vocabulary import ERASED_EVENT, MERGED_EVENT, SCORE_DUE_EVENT
from services.common.db.outbox import Outgoing
from services.common.db.retention import Pruner
from services.common.kafka.topics import Topics
from services.common.observability.logging import lead_hash
from services.orchestrator.adapters import records
from services.orchestrator.adapters.records import Parsed, Record
from services.orchestrator.domain import inbound_sms
from services.orchestrator.domain.attribution import unattributed
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.effects import Effects
from services.orchestrator.domain.lead import Enrollment, Lead
from services.orchestrator.domain.merge import merge_leads
from services.orchestrator.domain.ranking import Cursor, PastTime
from services.orchestrator.domain.stages import score_at
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.service_layer.unit_of_work import UnitOfWork, Views

log = logging.getLogger(__name__)


class NotFound(LookupError):
    """No such program, or the lead is not enrolled in it (the API answers 404)."""


class Refused(ValueError):
    """The lead may not enter the program now; the message says why (the API answers 409)."""


@dataclass
class Batch:
    """A polled batch of scored events on its way through `handle_scored_events`."""

    parsed: list[Parsed]
    letters: list[Outgoing]  # dead letters: unparseable records, then failed decisions
    unparsed: int
    todo: list[Parsed]
    failed: list[str]  # dedupe keys of events whose decision raised


@dataclass
class Handlers:
    uow: Callable[[], UnitOfWork]
    decider: Decider
    topics: Topics
    metrics: OrchestratorMetrics

    # --- scored events ------------------------------------------------------------------------

    async def handle_scored_events(self, polled: Sequence[Record]) -> None:
        """One unit of work for a polled batch: redeliveries change nothing, an event whose
        decision raises is dead-lettered (its lead stays as it was) and the rest goes on."""
        started = time.monotonic()
        batch = self._parse(polled)
        async with self.uow() as uow:
            now = await uow.now()
            fresh = await uow.events.claim([p.key for p in batch.parsed], now=now,
                                           replayed={p.key for p in batch.parsed if p.replayed})
            for p in batch.parsed:  # the first occurrence of a fresh key
                if p.key in fresh:
                    fresh.discard(p.key)
                    batch.todo.append(p)
            leads = await uow.leads.lock([p.lead_id for p in batch.todo])
            effects = await self._decide(uow, batch, leads, now)
            # not marked processed: replayed from its dead letter after a fix, it is decided
            # again (and once decided, a second replay is a duplicate)
            await uow.events.mark_failed(batch.failed, now=now)
            await uow.leads.save(leads, effects)
            uow.publish(*batch.letters)
            events = [p.event for p in batch.todo]
            sends = await uow.leads.sends(unattributed(events))
        # counted once committed (a rolled-back batch comes again and counts then)
        self.metrics.count_events(
            duplicate=len(batch.parsed) - len(batch.todo), dead_lettered=len(batch.letters),
            processed=len(batch.todo) - (len(batch.letters) - batch.unparsed))
        self.metrics.observe(effects)
        self.metrics.observe_events(events, sends)
        self.metrics.batch_duration.observe(time.monotonic() - started)

    def _parse(self, polled: Sequence[Record]) -> Batch:
        """Each record parsed once (through the `ScoredEvent` model); the ones that are not a
        scored event become dead letters saying why."""
        parsed, letters = [], []
        for record in polled:
            try:
                parsed.append(records.parse(record))
            except ValueError as exc:  # RecordError: the wrong fields, never their values
                letters.append(records.dead_letter_row(record, str(exc), topics=self.topics))
        return Batch(parsed, letters, len(letters), [], [])

    async def _decide(self, uow: UnitOfWork, batch: Batch, leads: dict[str, Lead],
                      now: float) -> list[tuple[str, Effects]]:
        """Decide each event in order; `leads` ends as the leads are after the batch."""
        effects: list[tuple[str, Effects]] = []
        links = await self._links(uow, batch, leads)
        for p in batch.todo:
            if p.event["type"] == ERASED_EVENT:  # forget what came before it, in order
                leads.pop(p.lead_id, None)
                effects = [(lid, fx) for lid, fx in effects if lid != p.lead_id]
                await uow.leads.erase(p.lead_id, now=now)
                continue
            if p.event["type"] == SCORE_DUE_EVENT and p.lead_id not in leads:
                continue  # erased since its crossing was scheduled: nobody to move
            if p.event["type"] == MERGED_EVENT:  # then decided as the merged lead's event
                effects = await self._absorb(uow, p, leads, effects, links, now)
            # an id merged away whose event comes late counts for the lead it went into, with
            # that lead's scores (none from this event: scoring counted it for the lead)
            late = p.lead_id in links and p.lead_id not in leads
            lead_id = links[p.lead_id] if late else p.lead_id
            try:
                lead, fx = self.decider.decide_event(
                    leads.get(lead_id), lead_id, p.event, {} if late else p.score.models,
                    event_time=p.event_time or now, now=now,
                    scored_at=None if late else p.score.as_of.timestamp())
            except Exception as exc:  # one event the decisions choke on: dead-lettered,
                # the lead as it was before it; the batch and the partition go on
                log.exception("decision failed; event dead-lettered",
                              extra={"event_id": p.event.get("id")})
                batch.letters.append(records.dead_letter_row(
                    p.record, f"{type(exc).__name__}: {exc}", topics=self.topics))
                batch.failed.append(p.key)
                continue
            leads[lead_id] = lead
            effects.append((lead_id, fx))
        return effects

    async def _links(self, uow: UnitOfWork, batch: Batch,
                     leads: dict[str, Lead]) -> dict[str, str]:
        """absorbed id -> the lead it went into, for the batch's ids that were merged away;
        those leads locked too (after the batch's own, before any timer)."""
        links = await uow.leads.merged_into({p.lead_id for p in batch.todo} - set(leads))
        if links:
            leads.update(await uow.leads.lock(set(links.values()) - set(leads)))
        return links

    async def _absorb(self, uow: UnitOfWork, p: Parsed, leads: dict[str, Lead],
                      effects: list[tuple[str, Effects]], links: dict[str, str],
                      now: float) -> list[tuple[str, Effects]]:
        """Fold the lead `data.from` of a scored `lead.merged` into its subject
        (docs/identity.md), once (a redelivered merge is a duplicate before it gets here)."""
        absorbed = (p.event.get("data") or {}).get("from")
        if not isinstance(absorbed, str) or absorbed == p.lead_id:
            return effects
        # its later events go to the lead (in this batch, and those that come late), as do
        # those of the ids that had gone into it
        for other, into in list(links.items()):
            if into == absorbed:
                links[other] = p.lead_id
        links[absorbed] = p.lead_id
        await uow.leads.link(absorbed, into=p.lead_id, now=now)
        loser = leads.pop(absorbed, None)
        if loser is None:
            loser = (await uow.leads.lock([absorbed])).get(absorbed)
        else:  # decided earlier in this batch: stored as it is now, then moved
            await uow.leads.save({absorbed: loser},
                                 [(lid, fx) for lid, fx in effects if lid == absorbed])
            effects = [(lid, fx) for lid, fx in effects if lid != absorbed]
        if loser is None:  # nothing known of it here (e.g. a link before any event)
            return effects
        merged, moved = merge_leads(leads.get(p.lead_id), loser, p.lead_id)
        await uow.leads.absorb(absorbed, into=p.lead_id, moved=moved,
                               stages=(loser.stage, merged.stage), now=now)
        leads[p.lead_id] = merged
        log.info("lead merged", extra={"lead_hash": lead_hash(p.lead_id),
                                       "absorbed_hash": lead_hash(absorbed),
                                       "enrollments_moved": len(moved)})
        return effects

    # --- timers -------------------------------------------------------------------------------

    async def fire_timers(self, limit: int = 200) -> int:
        """Fire due timers in one unit of work; the number fired."""
        effects: list[tuple[str, Effects]] = []
        async with self.uow() as uow:
            now = await uow.now()
            # leads locked first, then their timers: the order a decision takes them in (it
            # locks a lead, then moves its score timer), so the two never wait on each other
            lead_ids = await uow.timers.due_leads(now=now, limit=limit)
            if not lead_ids:
                return 0
            leads = await uow.leads.lock(lead_ids)
            due = await uow.timers.claim_due(now=now, limit=limit, leads=lead_ids)
            for item in due:
                lead = leads.get(item.lead_id)
                if lead is None:
                    continue
                # decided at the current time, not the due time: a backlog (an outage, a clock
                # moved forward) still meets quiet hours and caps as they are now
                leads[item.lead_id], fx = self.decider.decide_timer(lead, item.timer, now)
                effects.append((item.lead_id, fx))
                self.metrics.timer_lateness.observe(max(0.0, now - item.timer.due_at))
            await uow.leads.save(leads, effects)
        self.metrics.observe(effects)
        return len(due)

    # --- API commands -------------------------------------------------------------------------

    async def enroll(self, lead_id: str, program_id: str) -> Enrollment:
        """Enroll a lead (creating it if needed); NotFound for an unknown program, Refused
        when it may not enter now."""
        if program_id not in self.decider.programs:
            raise NotFound(f"no program '{program_id}'")
        async with self.uow() as uow:
            now = await uow.now()
            lead = await self._lead_or_new(uow, lead_id, now)
            lead, fx, refused = self.decider.decide_enroll(lead, program_id, now, cause="api")
            await uow.leads.save({lead_id: lead}, [(lead_id, fx)])
        self.metrics.observe([(lead_id, fx)])
        if refused is not None:
            raise Refused(f"not enrolled: {refused}")
        return lead.enrollments[program_id]

    async def unenroll(self, lead_id: str, program_id: str) -> None:
        """End an active enrollment; NotFound when there is none."""
        async with self.uow() as uow:
            now = await uow.now()
            lead = (await uow.leads.lock([lead_id])).get(lead_id)
            current = lead.enrollments.get(program_id) if lead else None
            if lead is None or current is None or not current.active:
                raise NotFound(f"lead '{lead_id}' is not enrolled in '{program_id}'")
            lead, fx = self.decider.decide_unenroll(lead, program_id, now)
            await uow.leads.save({lead_id: lead}, [(lead_id, fx)])
        self.metrics.observe([(lead_id, fx)])

    async def _lead_or_new(self, uow: UnitOfWork, lead_id: str, now: float) -> Lead:
        lead = (await uow.leads.lock([lead_id])).get(lead_id)
        return lead or Lead(lead_id, stage_entered_at=now, created_at=now)

    async def erase(self, lead_id: str) -> bool:
        """Erase a person here and announce `lead.erased` to scoring and dispatch
        (docs/security.md); True if the lead was known. Idempotent."""
        async with self.uow() as uow:
            now = await uow.now()
            found = await uow.leads.erase(lead_id, now=now)
            uow.publish(records.erased_event(lead_id, topic=self.topics.events, now=now))
        log.info("lead erased", extra={"lead_hash": lead_hash(lead_id), "found": found})
        return found

    async def inbound_sms(self, form: Mapping[str, str]) -> str | None:
        """An inbound SMS (already authenticated): its events for every lead with the sender's
        number, published; the reply to send back (HELP), or None."""
        async with self.uow() as uow:
            now = await uow.now()
            leads = await uow.leads.with_phone(form.get("From", ""))
            events = inbound_sms.events_for(form, leads, now)
            if not leads:  # profiles hold E.164 numbers (ingest validates them), as providers send
                log.warning("inbound SMS from a number no lead has", extra={
                    "number_hash": hashlib.sha256(form.get("From", "").encode()).hexdigest()[:16],
                    "keyword": inbound_sms.keyword(form.get("Body", ""))})
            uow.publish(*records.event_rows(events, self.topics))
        return inbound_sms.reply(form)

    async def advance_clock(self, seconds: float, *,
                            settle_seconds: float = 30.0) -> dict[str, float]:
        """Move the shared clock forward, then decide every timer due by the new time before
        answering (for up to `settle_seconds`; `timers_due` says what was left): offset, now,
        timers fired and still due."""
        async with self.uow() as uow:
            offset = await uow.advance_clock(seconds)
            now = await uow.now()
        fired, deadline = 0, time.monotonic() + settle_seconds
        while time.monotonic() < deadline and (n := await self.fire_timers()):
            fired += n
        async with self.uow() as uow:
            due = await uow.timers.count_due(now=now)
        return {"offset_seconds": offset, "now": now, "timers_fired": fired,
                "timers_due": due}

    async def clock(self) -> dict[str, float]:
        """The shared clock: its offset from the wall clock and the time it says."""
        async with self.uow() as uow:
            return {"offset_seconds": await uow.clock_offset(), "now": await uow.now()}

    async def reset_clock(self) -> dict[str, float]:
        """Put the shared clock back on the wall clock; what was scheduled for later stays."""
        async with self.uow() as uow:
            await uow.reset_clock()
        return await self.clock()

    async def prune(self, pruner: Pruner) -> dict[str, int]:
        """Delete the rows past the retention (adapters/retention.py), by the shared clock;
        the rows deleted per table."""
        async with self.uow() as uow:
            now = await uow.now()
        return await pruner.prune(now=datetime.fromtimestamp(now, UTC))

    # --- API reads ----------------------------------------------------------------------------

    async def lead(self, views: Views, lead_id: str,
                   at: float | None = None) -> dict[str, Any] | None:
        """A lead's picture (None: unknown), its scores as of `at` (default: now by the shared
        clock): engagement decayed since the last event, `above` as it is then."""
        view = await views.lead(lead_id)
        if view is None:
            return None
        if at is None:
            async with self.uow() as uow:
                at = await uow.now()
        view["scores"] = {model: score_at(kept, at) for model, kept in view["scores"].items()}
        return view

    async def ranking(self, views: Views, *, model: str | None, limit: int,
                      cursor: str | None = None, at: float | None = None,
                      stage: str | None = None, owner: str | None = None) -> dict[str, Any]:
        """Leads by their score now (or `at`, not before now; a cursor keeps the time of its
        first page), best first; BadCursor for a cursor this API did not give, PastTime for an
        `at` before now."""
        after = None if cursor is None else Cursor.decode(cursor)
        if after is not None:
            at = after.t
        else:
            async with self.uow() as uow:
                now = await uow.now()
            if at is not None and at < now - 1.0:
                raise PastTime("is before now; the ranking is of scores now or later")
            at = now if at is None else at
        model = model or self.decider.stage_model
        leads, following = await views.ranking(model=model, t=at, limit=limit, cursor=after,
                                               stage=stage, owner=owner)
        return {"model": model, "as_of": at, "leads": leads,
                "next_cursor": None if following is None else following.encode()}

    async def programs(self, views: Views) -> list[dict[str, Any]]:
        """Every program with its per-step counts."""
        stats = await views.program_stats()
        return [{"id": p.id, "version": p.version, "name": p.name, "priority": p.priority,
                 "trigger": p.trigger.kind, "steps": [s.id for s in p.steps],
                 **stats.get(p.id, {"entered": 0, "active": 0, "waiting_at_step": {},
                                    "exited": {}, "messages": {}})}
                for p in self.decider.programs.values()]
