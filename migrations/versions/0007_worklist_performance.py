"""worklist performance: stored next-due date, list indexes, substring search index

Revision ID: 0007_worklist_performance
Revises: 0006_patient_facing_clinic_name
Create Date: 2026-11-27 12:30:00

* ``patients.next_due_on``: the earliest open event of the active plan, kept by
  ``surveillance.services.next_due`` and filled here; the Patients list sorts by it through
  (next_due_on, names) indexes instead of aggregating every open event per page.
* ``ix_patients_family_given``: the name order across every clinic.
* ``ix_plan_events_kind_status_due_on``: the biopsy-due and to-book lists in due order.
* Substring search by name or MRN, one index per database (not in the models' metadata, see
  ``surveillance.models.is_database_specific``):
  - PostgreSQL: the pg_trgm extension and a GIN trigram index on the lower-cased search text
    (the expression must stay identical to ``patient_search.postgres_search_text``).
  - SQLite: an FTS5 table with the trigram tokenizer, ``patients_search`` (contentless: it
    holds only the index), filled here and kept in step by triggers on ``patients``. A later
    batch migration that rebuilds ``patients`` drops these triggers and must create them
    again (``create_sqlite_search_triggers``).
The downgrade leaves the pg_trgm extension installed (other databases objects may use it).
"""
import sqlalchemy as sa
from alembic import op


revision = '0007_worklist_performance'
down_revision = '0006_patient_facing_clinic_name'
branch_labels = None
depends_on = None

OPEN_STATUSES = "('planned', 'booked')"

# ``coalesce(status, '')`` (status is never NULL) keeps SQLite from walking the (status,
# due_on) index for MIN(due_on) across every patient's events: by patient_id they are few.
BACKFILL_NEXT_DUE = f"""
UPDATE patients SET next_due_on = (
    SELECT min(e.due_on)
    FROM plan_events e JOIN surveillance_plans p ON p.id = e.plan_id
    WHERE e.patient_id = patients.id AND coalesce(e.status, '') IN {OPEN_STATUSES}
        AND p.status = 'active'
)
"""

POSTGRES_SEARCH_TEXT = (
    "lower(given_name || ' ' || family_name || E'\\n' || family_name || ', ' || given_name"
    " || E'\\n' || mrn)"
)

SQLITE_FIELDS = (
    "{row}.given_name || ' ' || {row}.family_name",
    "{row}.family_name || ', ' || {row}.given_name",
    "{row}.mrn",
)


def _sqlite_values(row):
    return ", ".join(field.format(row=row) for field in SQLITE_FIELDS)


SQLITE_TRIGGERS = {
    "patients_search_insert": f"""
        CREATE TRIGGER patients_search_insert AFTER INSERT ON patients BEGIN
            INSERT INTO patients_search (rowid, full_name, sort_name, mrn)
            VALUES (new.id, {_sqlite_values('new')});
        END""",
    "patients_search_delete": f"""
        CREATE TRIGGER patients_search_delete AFTER DELETE ON patients BEGIN
            INSERT INTO patients_search (patients_search, rowid, full_name, sort_name, mrn)
            VALUES ('delete', old.id, {_sqlite_values('old')});
        END""",
    "patients_search_update": f"""
        CREATE TRIGGER patients_search_update
        AFTER UPDATE OF given_name, family_name, mrn ON patients BEGIN
            INSERT INTO patients_search (patients_search, rowid, full_name, sort_name, mrn)
            VALUES ('delete', old.id, {_sqlite_values('old')});
            INSERT INTO patients_search (rowid, full_name, sort_name, mrn)
            VALUES (new.id, {_sqlite_values('new')});
        END""",
}


def create_sqlite_search_triggers():
    for statement in SQLITE_TRIGGERS.values():
        op.execute(statement)


def upgrade():
    # Plain ADD/DROP COLUMN, never a batch copy of ``patients`` (see 0004_care_stages).
    op.add_column('patients', sa.Column('next_due_on', sa.Date(), nullable=True))
    op.execute(BACKFILL_NEXT_DUE)
    op.create_index(
        'ix_patients_family_given', 'patients', ['family_name', 'given_name', 'id']
    )
    op.create_index(
        'ix_patients_next_due', 'patients', ['next_due_on', 'family_name', 'given_name', 'id']
    )
    op.create_index(
        'ix_patients_clinic_next_due',
        'patients',
        ['clinic_id', 'next_due_on', 'family_name', 'given_name', 'id'],
    )
    op.create_index(
        'ix_plan_events_kind_status_due_on', 'plan_events', ['kind', 'status', 'due_on']
    )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_patients_search_trgm ON patients"
            f" USING gin (({POSTGRES_SEARCH_TEXT}) gin_trgm_ops)"
        )
    else:
        op.execute(
            "CREATE VIRTUAL TABLE patients_search USING fts5("
            "full_name, sort_name, mrn, content='', tokenize='trigram')"
        )
        op.execute(
            "INSERT INTO patients_search (rowid, full_name, sort_name, mrn)"
            f" SELECT patients.id, {_sqlite_values('patients')} FROM patients"
        )
        create_sqlite_search_triggers()


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP INDEX IF EXISTS ix_patients_search_trgm")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS patients_search")
    op.drop_index('ix_plan_events_kind_status_due_on', table_name='plan_events')
    op.drop_index('ix_patients_clinic_next_due', table_name='patients')
    op.drop_index('ix_patients_next_due', table_name='patients')
    op.drop_index('ix_patients_family_given', table_name='patients')
    op.drop_column('patients', 'next_due_on')
