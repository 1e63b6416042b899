"""The mark of a scored event whose decision failed (dead-lettered) says so in a column of its
own, `failed`, instead of a key prefix ("failed\\x1e" + the event's key). Marks written before
are converted: a prefixed mark becomes the event's own mark with `failed` true, unless the event
was decided after a replay (its plain mark exists): then the plain mark alone stays.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None



def upgrade() -> None:
    # the old prefix, E'failed\x1e', is 7 characters
    op.add_column("processed_events", sa.Column("failed", sa.Boolean, nullable=False,
                                                server_default=sa.false()))
    op.execute(r"DELETE FROM processed_events f WHERE starts_with(f.event_key, E'failed\x1e') "
               "AND EXISTS (SELECT 1 FROM processed_events p "
               "WHERE p.event_key = substr(f.event_key, 8))")
    op.execute("UPDATE processed_events SET event_key = substr(event_key, 8), failed = true "
               r"WHERE starts_with(event_key, E'failed\x1e')")


def downgrade() -> None:
    op.execute(r"UPDATE processed_events SET event_key = E'failed\x1e' || event_key WHERE failed")
    op.drop_column("processed_events", "failed")
