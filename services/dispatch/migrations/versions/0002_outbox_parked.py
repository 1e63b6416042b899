"""Outbox rows Kafka refuses for good (e.g. too large) are parked with the reason instead of
blocking every row behind them.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("parked_reason", sa.Text))


def downgrade() -> None:
    op.drop_column("outbox", "parked_reason")
