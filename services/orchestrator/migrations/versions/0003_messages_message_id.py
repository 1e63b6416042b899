"""An index on messages.message_id: delivery and engagement events from email providers carry
only the message id, and the engagement metrics look up its program and step by it.

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
    op.create_index("messages_message_id", "messages", ["message_id"],
                    postgresql_where=sa.text("message_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("messages_message_id", table_name="messages")
