"""patient-facing clinic name and address

Revision ID: 0006_patient_facing_clinic_name
Revises: 0005_performance_indexes
Create Date: 2026-11-27 12:30:00

Patients' calendars, emails and page showed the clinic's internal name and address, which may
name the condition ("Neuroendocrine Tumour Clinic"). Clinics get a patient-facing name and
address of their own. Existing clinics keep showing what they showed, unless it holds a
condition word: then the name becomes the neutral "Outpatient clinic" and the address is left
empty. Bookings made without a typed place had the internal address (or name) copied into
their location; where that copy was unsafe it becomes the new patient-facing place.

The word list is frozen here on purpose: a migration must do the same thing whenever it runs,
whatever ``surveillance/privacy.py`` says by then.
"""
import re

from alembic import op
import sqlalchemy as sa


revision = '0006_patient_facing_clinic_name'
down_revision = '0005_performance_indexes'
branch_labels = None
depends_on = None

NEUTRAL_NAME = 'Outpatient clinic'
CONDITION = re.compile(
    r"(?<!\w)(cancers?|cancerous|tumou?rs?|nets?|neuroendocrine|oncology|oncologists?"
    r"|oncological|carcinoids?|carcinomas?|malignant|malignancy|metastatic|metastas[ie]s"
    r"|chemotherapy|ki-?67)(?!\w)",
    re.IGNORECASE,
)

clinics = sa.table(
    'clinics',
    sa.column('id', sa.Integer),
    sa.column('name', sa.String),
    sa.column('address', sa.Text),
    sa.column('calendar_name', sa.String),
    sa.column('calendar_address', sa.Text),
)
patients = sa.table('patients', sa.column('id', sa.Integer), sa.column('clinic_id', sa.Integer))
plan_events = sa.table(
    'plan_events', sa.column('patient_id', sa.Integer), sa.column('location', sa.Text)
)


def _safe(text):
    return not CONDITION.search(text or '')


def upgrade():
    # Plain ADD COLUMNs (no batch copy of clinics, which patients and closures reference).
    op.add_column('clinics', sa.Column(
        'calendar_name', sa.String(length=200), server_default=NEUTRAL_NAME, nullable=False
    ))
    op.add_column('clinics', sa.Column(
        'calendar_address', sa.Text(), server_default='', nullable=False
    ))

    bind = op.get_bind()
    for clinic_id, name, address in bind.execute(
        sa.select(clinics.c.id, clinics.c.name, clinics.c.address)
    ).all():
        name, address = (name or '').strip(), (address or '').strip()
        shown_name = name if name and _safe(name) else NEUTRAL_NAME
        shown_address = address if _safe(address) else ''
        bind.execute(
            clinics.update()
            .where(clinics.c.id == clinic_id)
            .values(calendar_name=shown_name, calendar_address=shown_address)
        )
        # Locations copied from an unsafe internal address or name at booking time.
        unsafe_copies = [text for text in (address, name) if text and not _safe(text)]
        if unsafe_copies:
            bind.execute(
                plan_events.update()
                .where(plan_events.c.location.in_(unsafe_copies))
                .where(
                    plan_events.c.patient_id.in_(
                        sa.select(patients.c.id).where(patients.c.clinic_id == clinic_id)
                    )
                )
                .values(location=shown_address or shown_name)
            )


def downgrade():
    # The rewritten booking locations stay as they are: they are the safer text either way.
    op.drop_column('clinics', 'calendar_address')
    op.drop_column('clinics', 'calendar_name')
