"""care stages: the patient's current stage and its history

Revision ID: 0004_care_stages
Revises: 0003_reminders
Create Date: 2026-11-27 09:25:38.546127

Existing patients get a stage from what is already known about them, and one history entry
saying so: an active plan means watchful waiting; a plan ended by a progression outcome means
treatment planning; any other ended plan means surveillance ended.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_care_stages'
down_revision = '0003_reminders'
branch_labels = None
depends_on = None

STAGES = (
    "'assessment', 'watchful_waiting', 'biopsy_review', 'treatment_planning', "
    "'systemic_treatment', 'local_treatment', 'clinical_trial', 'surveillance_ended'"
)


def upgrade():
    op.create_table('stage_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('from_stage', sa.String(length=30), nullable=True),
    sa.Column('to_stage', sa.String(length=30), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('changed_by_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.CheckConstraint(f"from_stage IS NULL OR from_stage IN ({STAGES})", name=op.f('ck_stage_changes_from_stage')),
    sa.CheckConstraint(f"to_stage IN ({STAGES})", name=op.f('ck_stage_changes_to_stage')),
    sa.CheckConstraint('from_stage IS NULL OR from_stage <> to_stage', name=op.f('ck_stage_changes_real_change')),
    sa.ForeignKeyConstraint(['changed_by_id'], ['users.id'], name=op.f('fk_stage_changes_changed_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_stage_changes_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stage_changes'))
    )
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stage_changes_changed_by_id'), ['changed_by_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stage_changes_patient_id'), ['patient_id'], unique=False)

    # A plain ADD COLUMN with its CHECK (SQLite allows both), not a batch copy of the table:
    # copying would DROP the patients table, which every plan and event row references.
    op.add_column('patients', sa.Column(
        'stage', sa.String(length=30),
        sa.CheckConstraint(f"stage IN ({STAGES})", name=op.f('ck_patients_stage')),
        server_default='watchful_waiting', nullable=False,
    ))

    # Existing patients: a stage from their plans, and a first history entry (by the system).
    op.execute(
        "UPDATE patients SET stage = CASE"
        " WHEN EXISTS (SELECT 1 FROM surveillance_plans sp"
        "   WHERE sp.patient_id = patients.id AND sp.status = 'active') THEN 'watchful_waiting'"
        " WHEN EXISTS (SELECT 1 FROM plan_events pe"
        "   WHERE pe.patient_id = patients.id AND pe.outcome = 'progression') THEN 'treatment_planning'"
        " ELSE 'surveillance_ended' END"
    )
    op.execute(
        "INSERT INTO stage_changes (patient_id, from_stage, to_stage, changed_at, changed_by_id, reason)"
        " SELECT id, NULL, stage, CURRENT_TIMESTAMP, NULL,"
        " 'Stage set from the surveillance plan when care stages were introduced.'"
        " FROM patients"
    )


def downgrade():
    # DROP COLUMN in place (SQLite 3.35+ drops a column together with its own CHECK).
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint(op.f('ck_patients_stage'), 'patients', type_='check')
    op.drop_column('patients', 'stage')

    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stage_changes_patient_id'))
        batch_op.drop_index(batch_op.f('ix_stage_changes_changed_by_id'))

    op.drop_table('stage_changes')
