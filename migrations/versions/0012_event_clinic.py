"""plan events: the patient's clinic, for a coordinator's worklists

Revision ID: 0012_event_clinic
Revises: 0011_outbox_claim_order
Create Date: 2026-11-28 01:15:00

A coordinator's worklists and counts keep only their clinics' events. With the clinic only on
the patient, each list walked every clinic's events in due order and looked up each one's
patient to throw most of them away: with ten clinics, about ten events read for every one
kept, and more with every clinic a network adds. ``plan_events.clinic_id`` (a copy of the
patient's) and two indexes by clinic let a list read its own rows only.

The events' foreign key to patients becomes (patient_id, clinic_id) -> patients (id,
clinic_id), through a new unique index on patients: the copy can only be the patient's clinic
and follows a patient moved to another clinic (ON UPDATE CASCADE), and each new event still
checks one key (a separate key to clinics would have added a check per row: 0.35 s of the
horizon job's 1.4 s of event inserts, on PostgreSQL). The index on patients is not a
constraint so that SQLite adds it without rebuilding the table (which would drop its search
triggers, see 0007).
"""

import sqlalchemy as sa
from alembic import op


revision = "0012_event_clinic"
down_revision = "0011_outbox_claim_order"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("plan_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clinic_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE plan_events SET clinic_id ="
        " (SELECT clinic_id FROM patients WHERE patients.id = plan_events.patient_id)"
    )
    op.create_index("ix_patients_id_clinic_id", "patients", ["id", "clinic_id"], unique=True)
    with op.batch_alter_table("plan_events", schema=None) as batch_op:
        batch_op.alter_column("clinic_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint("fk_plan_events_patient_id_patients", type_="foreignkey")
        batch_op.create_foreign_key(
            "fk_plan_events_patient_id_patients",
            "patients",
            ["patient_id", "clinic_id"],
            ["id", "clinic_id"],
            onupdate="CASCADE",
        )
        batch_op.create_index(
            "ix_plan_events_clinic_status_due_on", ["clinic_id", "status", "due_on"]
        )
        batch_op.create_index(
            "ix_plan_events_clinic_kind_status_due_on",
            ["clinic_id", "kind", "status", "due_on"],
        )


def downgrade():
    with op.batch_alter_table("plan_events", schema=None) as batch_op:
        batch_op.drop_index("ix_plan_events_clinic_kind_status_due_on")
        batch_op.drop_index("ix_plan_events_clinic_status_due_on")
        batch_op.drop_constraint("fk_plan_events_patient_id_patients", type_="foreignkey")
        batch_op.create_foreign_key(
            "fk_plan_events_patient_id_patients", "patients", ["patient_id"], ["id"]
        )
        batch_op.drop_column("clinic_id")
    op.drop_index("ix_patients_id_clinic_id", table_name="patients")
