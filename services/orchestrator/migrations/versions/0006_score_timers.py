"""One `score` timer per lead and scoring model (the time decay alone takes the score across a
threshold): a new time replaces the old one in place (an upsert on this index), so a lead whose
crossing moves with every event keeps one row, not one per event.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE UNIQUE INDEX timers_score ON timers (lead_id, program_id) "
               "WHERE kind = 'score'")


def downgrade() -> None:
    op.execute("DROP INDEX timers_score")
