"""SQLAlchemy Core tables of dispatch (schema chosen by the connection's search_path; created
by the Alembic migrations in services/dispatch/migrations)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from services.dispatch.domain.deliveries import FINAL_STATUSES, STATUSES

__all__ = ["FINAL_STATUSES", "STATUSES", "deliveries", "metadata", "outbox", "suppressions"]
metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column("lead_id", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", TS),
    sa.Column("last_error", sa.Text),
    sa.Column("provider_id", sa.Text),
    sa.Column("payload", sa.LargeBinary),
    sa.Column("origin_topic", sa.Text, nullable=False),
    sa.Column("origin_partition", sa.Integer, nullable=False),
    sa.Column("origin_offset", sa.BigInteger, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

suppressions = sa.Table(
    "suppressions", metadata,
    sa.Column("lead_id", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", TS, nullable=False),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("key", sa.LargeBinary),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("headers", JSONB, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("parked_reason", sa.Text),
)
