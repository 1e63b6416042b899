"""The ids folded into another lead (docs/identity.md): a scored event of such an id that reaches
the orchestrator after the merge (its partition was behind) is decided for the lead it went
into, instead of starting a new record.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lead_links",
        sa.Column("lead_id", sa.Text, primary_key=True),
        sa.Column("merged_into", sa.Text, nullable=False, index=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lead_links")
