"""The ranking of leads by their score now, on PostgreSQL: the index rows follow the lead
documents as they are saved and erased, and paging the listing (`PgViews.ranking`) gives the
brute-force order of the decayed scores, before and after the scores moved, with filters."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.records.scored import decayed
from services.common.kafka.topics import Topics
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.adapters.queries import PgViews
from services.orchestrator.adapters.unit_of_work import PgUnitOfWork
from services.orchestrator.domain.lead import Lead
from services.orchestrator.domain.ranking import Cursor
from tests.support import migrated_schema

pytestmark = pytest.mark.integration
D = 86400.0
HALF = 30 * D
T0 = 1_790_000_000.0
STAGES = ("lead", "mql", "sql")


def lead(i: int, rnd: random.Random) -> Lead:
    fit = rnd.choice([0.0, 10.0, 25.0])
    engagement = rnd.choice([0.0, 4.0, 30.0, 75.0, 140.0, -12.0]) * rnd.random()
    as_of = T0 + rnd.randint(0, 40) * D
    the_lead = Lead(f"lead-{i:03d}", stage=rnd.choice(STAGES),
                    profile={"owner_id": rnd.choice(["ann", "bob"])})
    the_lead.scores["b2b"] = {
        "total": fit + engagement, "fit": fit, "engagement": engagement, "above": [],
        "breakdown": [], "as_of": as_of, "model": "b2b", "version": 1, "half_life": HALF,
        "thresholds": {"mql": 50.0}, "next_crossing": None}
    return the_lead


def expected(leads: list[Lead], t: float, **only: str) -> list[str]:
    def score(x: Lead) -> float:
        s = x.scores["b2b"]
        return float(s["fit"] + decayed(s["engagement"], HALF, t - s["as_of"]))
    chosen = [x for x in leads if all((x.stage if k == "stage" else x.profile["owner_id"]) == v
                                      for k, v in only.items())]
    return [x.lead_id for x in sorted(chosen, key=lambda x: (score(x), x.lead_id), reverse=True)]


async def listing(views: PgViews, t: float, limit: int, **only: str) -> list[str]:
    seen: list[str] = []
    cursor: Cursor | None = None
    while True:
        rows, cursor = await views.ranking(model="b2b", t=t, limit=limit, cursor=cursor, **only)
        seen += [r["lead_id"] for r in rows]
        if cursor is None:
            return seen


async def test_the_listing_pages_through_the_decayed_order(database_url: str) -> None:
    rnd = random.Random(11)
    leads = [lead(i, rnd) for i in range(120)]
    async with migrated_schema(database_url, upgrade, "rank") as engine:
        await save(engine, leads)
        views = PgViews(engine)
        for t in (T0 + 40 * D, T0 + 200 * D):  # the order changes as engagement fades
            assert await listing(views, t, 9) == expected(leads, t)
        assert expected(leads, T0 + 40 * D) != expected(leads, T0 + 200 * D)
        assert await listing(views, T0 + 50 * D, 7, stage="mql") == \
            expected(leads, T0 + 50 * D, stage="mql")
        assert await listing(views, T0 + 50 * D, 500, owner="bob") == \
            expected(leads, T0 + 50 * D, owner="bob")

        rows, _ = await views.ranking(model="b2b", t=T0 + 90 * D, limit=1, cursor=None)
        top = leads[[x.lead_id for x in leads].index(rows[0]["lead_id"])]
        assert rows[0]["stage"] == top.stage and rows[0]["owner_id"] == top.profile["owner_id"]
        assert rows[0]["score"]["as_of"] == T0 + 90 * D  # read as of the listing's time

        moved = leads[5]  # a new event: its row follows the document
        moved.scores["b2b"] = {**moved.scores["b2b"], "engagement": 500.0, "as_of": T0 + 89 * D}
        moved.stage = "sql"
        await save(engine, [moved])
        rows, _ = await views.ranking(model="b2b", t=T0 + 90 * D, limit=1, cursor=None,
                                      stage="sql")
        assert rows[0]["lead_id"] == moved.lead_id
        async with PgUnitOfWork(engine, Topics(), asyncio.Event()) as uow:
            await uow.leads.erase(moved.lead_id, now=T0)
        assert moved.lead_id not in await listing(views, T0 + 90 * D, 500)


async def save(engine: AsyncEngine, leads: list[Lead]) -> None:
    async with PgUnitOfWork(engine, Topics(), asyncio.Event()) as uow:
        await uow.leads.save({x.lead_id: x for x in leads}, [])
