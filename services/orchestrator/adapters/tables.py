"""The orchestrator's tables (SQLAlchemy Core). Created by the Alembic migrations in
`services/orchestrator/migrations/`; the schema comes from the connection's search_path."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()
TS = DateTime(timezone=True)

leads = Table(
    "leads", metadata,
    Column("lead_id", Text, primary_key=True),
    Column("stage", Text, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("stage_entered_at", TS),
    Column("last_activity_at", TS),
    Column("updated_at", TS, nullable=False),
)
stage_history = Table(
    "stage_history", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("lead_id", Text, nullable=False, index=True),
    Column("from_stage", Text),
    Column("to_stage", Text, nullable=False),
    Column("at", TS, nullable=False),
    Column("cause", Text, nullable=False),
)
enrollments = Table(
    "enrollments", metadata,
    Column("lead_id", Text, primary_key=True),
    Column("program_id", Text, primary_key=True),
    Column("entered_at", TS, primary_key=True),
    Column("program_version", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("step_id", Text),
    Column("exit_reason", Text),
    Column("exited_at", TS),
)
timers = Table(
    "timers", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("due_at", TS, nullable=False, index=True),
    Column("lead_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("program_id", Text, nullable=False),
    Column("generation", Integer, nullable=False),
)
messages = Table(
    "messages", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("lead_id", Text, nullable=False, index=True),
    Column("program_id", Text, nullable=False),
    Column("step_id", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text),
    Column("at", TS, nullable=False),
    Column("until", TS),
    Column("message_id", Text),
)
processed_events = Table(
    "processed_events", metadata,
    Column("event_key", Text, primary_key=True),
    Column("processed_at", TS, nullable=False),
    Column("failed", Boolean, nullable=False),  # its decision raised: dead-lettered (0005)
)
outbox = Table(
    "outbox", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("topic", Text, nullable=False),
    Column("key", LargeBinary),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("parked_reason", Text),
)
lead_scores = Table(  # revision 0007: the rank per model (domain/ranking.py), with the lead
    "lead_scores", metadata,
    Column("model", Text, primary_key=True),
    Column("lead_id", Text, primary_key=True),
    Column("fit", Float, nullable=False),
    Column("sign", SmallInteger, nullable=False),
    Column("key", Float, nullable=False),
    Column("half_life", Float, nullable=False),
    Column("stage", Text, nullable=False),
    Column("owner_id", Text),
)
lead_links = Table(  # revision 0008: ids folded into another lead (docs/identity.md)
    "lead_links", metadata,
    Column("lead_id", Text, primary_key=True),
    Column("merged_into", Text, nullable=False, index=True),
    Column("at", TS, nullable=False),
)
clock = Table(
    "clock", metadata,
    Column("id", Integer, primary_key=True),
    Column("offset_seconds", Float, nullable=False),
)
Index("timers_score", timers.c.lead_id, timers.c.program_id, unique=True,
      postgresql_where=timers.c.kind == "score")  # revision 0006: one per lead and model
Index("messages_program_step", messages.c.program_id, messages.c.step_id, messages.c.status)
Index("enrollments_program", enrollments.c.program_id, enrollments.c.status)
Index("messages_message_id", messages.c.message_id,
      postgresql_where=messages.c.message_id.isnot(None))  # revision 0003
