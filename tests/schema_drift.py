"""The one check every migration test ends with: do the models and the migrated database agree?"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from surveillance.extensions import db
from surveillance.models import include_in_autogenerate


def schema_drift(conn: sa.Connection) -> list[object]:
    """Alembic's autogenerate diff between the models and the database (empty when in step)."""
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_name": include_in_autogenerate}
    )
    return list(compare_metadata(context, db.metadata))
