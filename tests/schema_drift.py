"""The one check every migration test ends with: do the models and the migrated database agree?"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from surveillance.extensions import db
from surveillance.models import is_database_specific


def _include(name: str | None, type_: str, _parents: object) -> bool:
    # The same filter as migrations/env.py: the search objects that exist on one database.
    return not is_database_specific(name, type_)


def schema_drift(conn: sa.Connection) -> list[object]:
    """Alembic's autogenerate diff between the models and the database (empty when in step)."""
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_name": _include}
    )
    return list(compare_metadata(context, db.metadata))
