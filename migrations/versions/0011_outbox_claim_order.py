"""outbox: claims read the queue in the order they take it

Revision ID: 0011_outbox_claim_order
Revises: 0010_feed_row_signals
Create Date: 2026-11-27 20:30:00

A delivery run claims the due rows 50 at a time in (next_attempt_at, id) order. The index
on (status, next_attempt_at) left ties unordered, and the reminders queued for one morning
share their next_attempt_at, so every claim read and sorted the whole group: with 10,000
messages due, 200 claims of several milliseconds each. With id in the index a claim reads
the 50 rows it takes.
"""

from alembic import op


revision = "0011_outbox_claim_order"
down_revision = "0010_feed_row_signals"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_messages_status_next_attempt_at")
        batch_op.create_index(
            "ix_outbox_messages_status_next_attempt_at_id",
            ["status", "next_attempt_at", "id"],
            unique=False,
        )


def downgrade():
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_messages_status_next_attempt_at_id")
        batch_op.create_index(
            "ix_outbox_messages_status_next_attempt_at",
            ["status", "next_attempt_at"],
            unique=False,
        )
