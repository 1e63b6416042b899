"""The funnel report, from what a marketer's dashboard would read: the orchestrator's API
(`/v1/funnel`, `/v1/programs`) and database, and the services' `/metrics`; cross-checked with
what the demo's SMTP server received. Collecting is I/O; `summarize` and `markdown` are pure."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deploy.demo.driver import Ledger
from deploy.demo.personas import LeadSpec

NURTURED_SQL = """
WITH engaged AS (
  SELECT lead_id, min(at) AS at FROM "{s}".stage_history
  WHERE to_stage IN ('opportunity', 'customer') GROUP BY lead_id),
nurtured AS (
  SELECT DISTINCT m.lead_id FROM "{s}".messages m LEFT JOIN engaged e USING (lead_id)
  WHERE m.status = 'sent' AND m.channel = 'email' AND (e.at IS NULL OR m.at < e.at))
SELECT l.lead_id, l.stage, n.lead_id IS NOT NULL AS nurtured,
       (l.state -> 'scores' -> 'b2b' ->> 'total')::float AS score,
       EXISTS (SELECT 1 FROM "{s}".stage_history h WHERE h.lead_id = l.lead_id
               AND h.to_stage IN ('opportunity', 'customer')) AS opportunity,
       EXISTS (SELECT 1 FROM "{s}".stage_history h WHERE h.lead_id = l.lead_id
               AND h.to_stage = 'customer') AS customer
FROM "{s}".leads l LEFT JOIN nurtured n USING (lead_id)"""


def scrape(body: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of counter `name` (without `_total`) in a Prometheus text exposition."""
    return [(dict(s.labels), s.value) for fam in text_string_to_metric_families(body)
            if fam.name == name for s in fam.samples if s.name == f"{name}_total"]


async def collect(*, client: httpx.AsyncClient, orchestrator: str, token: str,
                  metrics: dict[str, str], engine: AsyncEngine, schema: str, ledger: Ledger,
                  leads: list[LeadSpec], run: dict[str, Any]) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    funnel = (await client.get(f"{orchestrator}/v1/funnel", headers=auth)).raise_for_status()
    programs = (await client.get(f"{orchestrator}/v1/programs",
                                 headers=auth)).raise_for_status()
    bodies = {name: (await client.get(url)).text for name, url in metrics.items()}
    async with engine.connect() as conn:
        held = [tuple(r) for r in await conn.execute(text(
            f'SELECT status, reason, count(*) FROM "{schema}".messages '  # noqa: S608
            "WHERE status <> 'sent' GROUP BY 1, 2 ORDER BY 3 DESC"))]
        sent = {r[0]: (r[1], r[2]) for r in await conn.execute(text(
            f'SELECT message_id, program_id, step_id FROM "{schema}".messages '  # noqa: S608
            "WHERE status = 'sent' AND channel = 'email' AND message_id IS NOT NULL"))}
        rows = [dict(r._mapping) for r in await conn.execute(
            text(NURTURED_SQL.format(s=schema)))]
    return summarize(funnel=funnel.json(), programs=programs.json(), held=held, sent=sent,
                     leads=rows, personas={lead.lead_id: lead.persona for lead in leads},
                     ledger=ledger, bodies=bodies, run=run)


def summarize(*, funnel: dict[str, Any], programs: Any, held: list[tuple[Any, ...]],
              sent: dict[str, tuple[str, str]], leads: list[dict[str, Any]],
              personas: dict[str, str], ledger: Ledger, bodies: dict[str, str],
              run: dict[str, Any]) -> dict[str, Any]:
    per_program: dict[str, Counter[str]] = defaultdict(Counter)
    for mid, (program, _step) in sent.items():
        per_program[program]["sent"] += 1
        per_program[program]["opened"] += mid in ledger.opened
        per_program[program]["clicked"] += mid in ledger.clicked
        per_program[program]["unsubscribed"] += mid in ledger.unsubscribed
    entered = {pr["id"]: pr.get("entered", 0) for pr in programs} \
        if isinstance(programs, list) else {}
    groups: dict[str, dict[str, Any]] = {}
    for name, nurtured in (("nurtured", True), ("not nurtured", False)):
        members = [r for r in leads if r["nurtured"] is nurtured]
        won = [ledger.won[r["lead_id"]] for r in members
               if r["customer"] and r["lead_id"] in ledger.won]
        groups[name] = {
            "leads": len(members), "opportunities": sum(r["opportunity"] for r in members),
            "customers": sum(r["customer"] for r in members),
            "conversion": round(sum(r["customer"] for r in members) / len(members), 4)
            if members else None,
            "mean_deal": round(statistics.fmean(won)) if won else None,
            "revenue": round(sum(won))}
    dispatch_sent = sum(v for labels, v in scrape(bodies.get("dispatch", ""),
                                                  "nurture_dispatch_messages")
                        if labels.get("channel") == "email" and labels.get("outcome") == "sent")
    by_type: Counter[str] = Counter()
    late = 0  # opens and clicks stamped long before the lead's newest event: a clock mix-up
    for labels, v in scrape(bodies.get("scoring", ""), "nurture_scoring_events"):
        by_type[labels.get("type", "")] += int(v)
        if labels.get("type") in ("email.opened", "email.clicked") \
                and labels.get("outcome") == "late":
            late += int(v)
    transitions = {f"{lab.get('from_stage')}->{lab.get('to_stage')}": int(v) for lab, v in
                   scrape(bodies.get("orchestrator", ""),
                          "nurture_orchestrator_stage_transitions")}
    return {
        "run": run,
        "funnel": funnel,
        "stage_transitions": transitions,
        "programs": {prog: {"entered": entered.get(prog, 0), **dict(c)}
                     for prog, c in sorted(per_program.items())},
        "entered_without_email": {prog: n for prog, n in entered.items()
                                  if prog not in per_program and n},
        "held": [{"status": s, "reason": r, "messages": int(n)} for s, r, n in held],
        "nurtured": groups,
        "personas": persona_table(leads, personas),
        "scores": [{"stage": r["stage"], "score": r["score"], "persona": personas.get(
            r["lead_id"])} for r in leads if r["score"] is not None],
        "checks": {
            "emails_received_by_smtp": ledger.mails,
            "emails_sent_by_dispatch_metric": int(dispatch_sent),
            "emails_sent_in_orchestrator_db": len(sent),
            "opens_followed": len(ledger.opened), "opens_scored": by_type["email.opened"],
            "clicks_followed": len(ledger.clicked), "clicks_scored": by_type["email.clicked"],
            "opens_clicks_scored_late": late,
            "unsubscribes": len(ledger.unsubscribed),
            "crm_tasks_received": ledger.tasks,
            "events_posted": sum(ledger.posted.values()),
            "link_errors": dict(ledger.follow_errors),
            "unknown_recipients": ledger.unknown_recipients,
        },
    }


def persona_table(leads: list[dict[str, Any]], personas: dict[str, str]) -> dict[str, Any]:
    table: dict[str, dict[str, Any]] = {}
    for name in sorted(set(personas.values())):
        members = [r for r in leads if personas.get(r["lead_id"]) == name]
        scores = [r["score"] for r in members if r["score"] is not None]
        table[name] = {"leads": len(members), "customers": sum(r["customer"] for r in members),
                       "median_score": round(statistics.median(scores), 1) if scores else None}
    return table


def _days(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 86400:.1f} d"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def markdown(rep: dict[str, Any]) -> str:
    f, run = rep["funnel"], rep["run"]
    out = [f"# Nurture demo: {run['leads']} leads, {run['days']} simulated days "
           f"(seed {run['seed']}, {run['wall_seconds']:.0f} s wall clock)", "",
           "## Funnel", "", "| stage | now | ever reached | median time in stage |",
           "|---|---:|---:|---:|"]
    for stage, n in f["leads_by_stage"].items():
        out.append(f"| {stage} | {n} | {f['reached'][stage]} | "
                   f"{_days(f['median_seconds_in_stage'][stage])} |")
    out += ["", "| conversion | ratio |", "|---|---:|"]
    out += [f"| {k} | {_pct(v)} |" for k, v in f["conversion"].items()]
    cyc = f["sales_cycle"]
    out += ["", f"Sales cycle (sql/opportunity → customer): median "
                f"{_days(cyc['median_seconds'])} over {cyc['deals']} deals.", "",
            "## Programs (emails)", "",
            "| program | entered | sent | opened | clicked | unsubscribed | open rate | CTR |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for prog, c in rep["programs"].items():
        sent = c.get("sent", 0)
        out.append(f"| {prog} | {c['entered']} | {sent} | {c.get('opened', 0)} | "
                   f"{c.get('clicked', 0)} | {c.get('unsubscribed', 0)} | "
                   f"{_pct(c.get('opened', 0) / sent if sent else None)} | "
                   f"{_pct(c.get('clicked', 0) / sent if sent else None)} |")
    if rep["entered_without_email"]:
        out += ["", "Entered, no email of their own (tasks, SMS): " + ", ".join(
            f"{k} {v}" for k, v in rep["entered_without_email"].items())]
    out += ["", "## Messages held", "", "| status | reason | messages |", "|---|---|---:|"]
    out += [f"| {h['status']} | {h['reason']} | {h['messages']} |" for h in rep["held"]]
    out += ["", "## Nurtured vs not nurtured", "",
            "| | leads | opportunities | customers | conversion | mean deal | revenue |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for name, g in rep["nurtured"].items():
        deal = "-" if g["mean_deal"] is None else f"${g['mean_deal']:,}"
        out.append(f"| {name} | {g['leads']} | {g['opportunities']} | {g['customers']} | "
                   f"{_pct(g['conversion'])} | {deal} | ${g['revenue']:,} |")
    out += ["", "## Personas", "", "| persona | leads | customers | median b2b score |",
            "|---|---:|---:|---:|"]
    out += [f"| {k} | {v['leads']} | {v['customers']} | {v['median_score']} |"
            for k, v in rep["personas"].items()]
    out += ["", "## Cross-checks", "", "| check | value |", "|---|---:|"]
    out += [f"| {k} | {v} |" for k, v in rep["checks"].items()]
    return "\n".join(out) + "\n"
