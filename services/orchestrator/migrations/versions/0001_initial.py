"""The orchestrator's initial tables: leads, stage history, enrollments, timers, messages,
processed events, outbox, clock.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    _lead_tables()
    _work_tables()


def _lead_tables() -> None:
    op.create_table(
        "leads",
        sa.Column("lead_id", sa.Text, primary_key=True),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("state", JSONB, nullable=False),
        sa.Column("stage_entered_at", TS),
        sa.Column("last_activity_at", TS),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("leads_stage", "leads", ["stage"])
    op.create_table(
        "stage_history",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.Text, nullable=False),
        sa.Column("from_stage", sa.Text),
        sa.Column("to_stage", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
    )
    op.create_index("stage_history_lead", "stage_history", ["lead_id", "at"])
    op.create_table(
        "enrollments",
        sa.Column("lead_id", sa.Text, primary_key=True),
        sa.Column("program_id", sa.Text, primary_key=True),
        sa.Column("entered_at", TS, primary_key=True),
        sa.Column("program_version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("step_id", sa.Text),
        sa.Column("exit_reason", sa.Text),
        sa.Column("exited_at", TS),
    )
    op.create_index("enrollments_program", "enrollments", ["program_id", "status"])


def _work_tables() -> None:
    op.create_table(
        "timers",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("lead_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("program_id", sa.Text, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
    )
    op.create_index("timers_due", "timers", ["due_at"])
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.Text, nullable=False),
        sa.Column("program_id", sa.Text, nullable=False),
        sa.Column("step_id", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("at", TS, nullable=False),
        sa.Column("until", TS),
        sa.Column("message_id", sa.Text),
    )
    op.create_index("messages_lead", "messages", ["lead_id", "at"])
    op.create_index("messages_program_step", "messages", ["program_id", "step_id", "status"])
    op.create_table(
        "processed_events",
        sa.Column("event_key", sa.Text, primary_key=True),
        sa.Column("processed_at", TS, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.LargeBinary),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("headers", JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "clock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("offset_seconds", sa.Float, nullable=False),
    )
    op.execute("INSERT INTO clock (id, offset_seconds) VALUES (1, 0)")


def downgrade() -> None:
    for table in ("clock", "outbox", "processed_events", "messages", "timers", "enrollments",
                  "stage_history", "leads"):
        op.drop_table(table)
