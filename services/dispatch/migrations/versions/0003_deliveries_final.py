"""An index for pruning: final deliveries by `updated_at`, so each batch of the retention loop
(services/dispatch/adapters/retention.py) reads only the old rows it deletes.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("deliveries_final", "deliveries", ["updated_at"], postgresql_where=sa.text(
        "status IN ('sent', 'failed', 'suppressed', 'expired')"))


def downgrade() -> None:
    op.drop_index("deliveries_final", table_name="deliveries")
