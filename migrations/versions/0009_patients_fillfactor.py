"""patients: room on each page for updated rows (PostgreSQL)

Revision ID: 0009_patients_fillfactor
Revises: 0008_job_indexes
Create Date: 2026-11-27 15:45:00

A patient row is updated far more often than it is created: every change to a visit raises
its ``feed_version`` (the calendar feed's validator), and the daily horizon job does so for a
quarter of all patients at once. PostgreSQL writes each update as a new row version; when it
fits on the same page and no indexed column changed, that is a heap-only update that leaves
the table's eight indexes (the trigram search index among them) alone. With full pages
(the default fillfactor of 100) every such update also wrote a new entry into every index.
At 80 % the bench's horizon job saw 89 % of these updates heap-only, against 0.07 % before
(``bench/README.md``), for about 5 % more table space.

Only pages written from now on keep the room; ``VACUUM FULL patients`` in a maintenance window
(it locks the table) rewrites the existing ones. SQLite has no such setting: nothing to do.
"""
from alembic import op


revision = '0009_patients_fillfactor'
down_revision = '0008_job_indexes'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE patients SET (fillfactor = 80)')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE patients RESET (fillfactor)')
