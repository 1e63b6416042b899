"""An index for pruning: processed-event marks by `processed_at`, so each batch of the retention
loop (services/orchestrator/adapters/retention.py) reads only the old marks it deletes.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("processed_events_at", "processed_events", ["processed_at"])


def downgrade() -> None:
    op.drop_index("processed_events_at", table_name="processed_events")
