"""`lead_scores`: a lead's rank per scoring model (`domain/ranking.py`), kept with the lead
document, for the ranking of leads by their score now (`GET /v1/leads`). Three indexes serve the
listing, unfiltered, by stage and by owner: each orders one model's fit group by rank.

Leads saved before this revision appear in the ranking from their next event on (their kept
scores did not carry the half-life the rank needs).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lead_scores",
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("lead_id", sa.Text, primary_key=True),
        sa.Column("fit", sa.Float, nullable=False),
        sa.Column("sign", sa.SmallInteger, nullable=False),
        sa.Column("key", sa.Float, nullable=False),
        sa.Column("half_life", sa.Float, nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("owner_id", sa.Text),
    )
    op.execute("CREATE INDEX lead_scores_rank ON lead_scores "
               "(model, fit, sign DESC, key DESC, lead_id DESC)")
    op.execute("CREATE INDEX lead_scores_stage_rank ON lead_scores "
               "(model, stage, fit, sign DESC, key DESC, lead_id DESC)")
    op.execute("CREATE INDEX lead_scores_owner_rank ON lead_scores "
               "(model, owner_id, fit, sign DESC, key DESC, lead_id DESC)")


def downgrade() -> None:
    op.drop_table("lead_scores")
