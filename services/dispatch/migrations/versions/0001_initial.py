"""Dispatch's initial tables: deliveries (one row per message id), suppressions, outbox.

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
STATUSES = "'pending', 'sending', 'sent', 'failed', 'suppressed', 'expired'"


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("lead_id", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("provider_id", sa.Text),
        sa.Column("payload", sa.LargeBinary),
        sa.Column("origin_topic", sa.Text, nullable=False),
        sa.Column("origin_partition", sa.Integer, nullable=False),
        sa.Column("origin_offset", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="deliveries_status"),
        sa.CheckConstraint("channel IN ('email', 'sms', 'crm_task', 'webhook')",
                           name="deliveries_channel"),
    )
    # the claim query of each channel loop: due pending rows, oldest first
    op.create_index("deliveries_due", "deliveries", ["channel", "next_attempt_at"],
                    postgresql_where=sa.text("status = 'pending'"))
    # crash recovery: rows left in 'sending'
    op.create_index("deliveries_sending", "deliveries", ["updated_at"],
                    postgresql_where=sa.text("status = 'sending'"))
    op.create_index("deliveries_lead", "deliveries", ["lead_id", "created_at"])
    op.create_table(
        "suppressions",
        sa.Column("lead_id", sa.Text, primary_key=True),
        sa.Column("channel", sa.Text, primary_key=True),  # '*' = every channel
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
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


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("suppressions")
    op.drop_table("deliveries")
