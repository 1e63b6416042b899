"""CRM tasks: POST the task as JSON to a configurable URL with a bearer token, and
`Idempotency-Key: <message id>` so a retried or reconciled task is created once by CRMs that
honor it (the body's `external_id` carries the same id for those that dedupe on a field)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import httpx
import orjson

from services.dispatch.adapters.handoff import Handoff, no_handoff
from services.dispatch.adapters.http import post, provider_id
from services.dispatch.domain.errors import ProviderError
from services.dispatch.domain.messages import Task


class TaskApi(Protocol):
    """Creates tasks for lead owners in the CRM."""

    async def create(self, task: Task, *, handoff: Handoff = no_handoff) -> str:
        """Create `task`, awaiting `handoff` right before the request goes out; the CRM's id
        of it ("" if it returned none). Raises ProviderError."""
        ...


class HttpTaskApi:
    """The real TaskApi."""

    def __init__(self, client: httpx.AsyncClient, *, url: str, token: str | None) -> None:
        self.client, self.url, self.token = client, url, token

    async def create(self, task: Task, *, handoff: Handoff = no_handoff) -> str:
        headers = {"Content-Type": "application/json", "Idempotency-Key": task.message_id}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        response = await post(self.client, self.url, reason="crm", handoff=handoff, headers=headers,
                              content=orjson.dumps(task.payload))
        return provider_id(response, "id")


@dataclass
class FakeTaskApi:
    """A TaskApi that keeps what it is given and raises queued `failures` first."""

    created: list[Task] = field(default_factory=list)
    failures: list[ProviderError] = field(default_factory=list)

    async def create(self, task: Task, *, handoff: Handoff = no_handoff) -> str:
        await handoff()
        if self.failures:
            raise self.failures.pop(0)
        self.created.append(task)
        return f"task-{len(self.created)}"
