"""patients, clinics: tell listening web workers which feed rows changed (PostgreSQL)

Revision ID: 0010_feed_row_signals
Revises: 0009_patients_fillfactor
Create Date: 2026-11-27 18:05:00

The feed fast path keeps, per web worker thread, the patient and clinic values a feed's entity
tag is made of, so that a calendar app's poll is answered without a round trip to the
database (``surveillance/feeds/rowtable.py``). These triggers keep that table exact: after
every statement that updates or deletes patients, the ids of the rows it touched go out on the
``watchful_feed_rows`` channel (``NOTIFY`` is sent when the transaction commits, and not at
all when it rolls back); a statement touching more than 500 rows, any change to clinics and a
``TRUNCATE`` send ``*`` (forget everything). Inserts need no signal: a new secret is not in
any table yet.

Statement-level triggers with a transition table, so that a job updating 25,000 patients
sends a few notifications, not 25,000. SQLite has no notifications: the fast path reads the
database on every poll there, and this migration does nothing.
"""

from alembic import op


revision = "0010_feed_row_signals"
down_revision = "0009_patients_fillfactor"
branch_labels = None
depends_on = None

CHANNEL = "watchful_feed_rows"
# Ids in one payload at most (PostgreSQL caps a payload at 8,000 bytes).
MOST_IDS = 500


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
        CREATE FUNCTION watchful_feed_rows_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            changed text;
        BEGIN
            SELECT CASE WHEN count(*) > {MOST_IDS} THEN '*' ELSE string_agg(id::text, ',') END
              INTO changed FROM changed_rows;
            IF changed IS NOT NULL THEN
                PERFORM pg_notify('{CHANNEL}', changed);
            END IF;
            RETURN NULL;
        END
        $$
    """)
    op.execute(f"""
        CREATE FUNCTION watchful_feed_rows_all_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '*');
            RETURN NULL;
        END
        $$
    """)
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER patients_feed_rows_{event.lower()} AFTER {event} ON patients "
            "REFERENCING OLD TABLE AS changed_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION watchful_feed_rows_changed()"
        )
    op.execute(
        "CREATE TRIGGER patients_feed_rows_truncate AFTER TRUNCATE ON patients "
        "FOR EACH STATEMENT EXECUTE FUNCTION watchful_feed_rows_all_changed()"
    )
    op.execute(
        "CREATE TRIGGER clinics_feed_rows AFTER UPDATE OR DELETE OR TRUNCATE ON clinics "
        "FOR EACH STATEMENT EXECUTE FUNCTION watchful_feed_rows_all_changed()"
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for trigger, table in (
        ("patients_feed_rows_update", "patients"),
        ("patients_feed_rows_delete", "patients"),
        ("patients_feed_rows_truncate", "patients"),
        ("clinics_feed_rows", "clinics"),
    ):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    op.execute("DROP FUNCTION watchful_feed_rows_changed()")
    op.execute("DROP FUNCTION watchful_feed_rows_all_changed()")
