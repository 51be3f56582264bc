"""performance: an index for the worklists' open booking windows

Revision ID: 0005_performance_indexes
Revises: 0004_care_stages
Create Date: 2026-11-27 10:45:00

The overdue, to-book and biopsy-due worklists all ask for planned events whose window has
opened (``window_start <= today``). Planned events are mostly in the future, so the existing
(status, due_on) index reads most of them; (status, window_start) reads only the open ones.
"""
from alembic import op


revision = '0005_performance_indexes'
down_revision = '0004_care_stages'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        'ix_plan_events_status_window_start', 'plan_events', ['status', 'window_start']
    )


def downgrade():
    op.drop_index('ix_plan_events_status_window_start', table_name='plan_events')
