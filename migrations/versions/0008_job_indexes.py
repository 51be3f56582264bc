"""jobs: an index for the plans whose horizon falls short

Revision ID: 0008_job_indexes
Revises: 0007_worklist_performance
Create Date: 2026-11-27 12:40:00

The daily ``extend-horizons`` job reads the active plans whose ``horizon_until`` (the nominal
date of their last visit) falls before today's horizon: on a usual day a small slice of all
plans, read by a range scan of horizon_until instead of every plan and its visits. Not
(status, horizon_until): SQLite then takes that index for every "status = 'active'" join (the
reminder sweep's), reading all active plans per batch.
"""
from alembic import op


revision = '0008_job_indexes'
down_revision = '0007_worklist_performance'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        'ix_surveillance_plans_horizon_until',
        'surveillance_plans',
        ['horizon_until'],
    )


def downgrade():
    op.drop_index('ix_surveillance_plans_horizon_until', table_name='surveillance_plans')
