"""An append-only audit log of every change to the clinic's records.

Changes are collected from the ORM session itself (``before_flush``) and written as entries
just before the transaction commits, in the same transaction: nothing can change without its
entry, a rolled-back action leaves none, and several flushes of one object in one action still
make exactly one entry. Secrets never enter the log: a changed password or token shows as
"changed", "rotated" or "revoked", never as a value or a hash.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, event, inspect
from sqlalchemy.orm import MANYTOONE, Mapped, Mapper, Session, mapped_column
from sqlalchemy.orm.attributes import manager_of_class

from surveillance import clock
from surveillance.extensions import db

AUDITED_TABLES = frozenset(
    {
        "clinics",
        "clinic_closures",
        "users",
        "api_tokens",
        "patients",
        "surveillance_plans",
        "plan_events",
        "stage_changes",
        "contact_attempts",
    }
)
# Bookkeeping that changes with every visible change; the change itself is what is logged.
IGNORED_FIELDS = frozenset(
    {
        "created_at",
        "updated_at",
        "sequence",
        "feed_version",
        "last_used_at",
        "id",
        # Derived from the events (services.next_due), whose own changes are logged.
        "next_due_on",
    }
)
SECRET_FIELDS = frozenset({"password_hash", "token_hash", "feed_token_hash", "feed_token_salt"})


class AuditEntry(db.Model):
    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_entity", "entity", "entity_id"),
        Index("ix_audit_entries_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime]
    # No ON DELETE action: users are deactivated, never deleted, and the log never changes.
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(10))  # create, update, delete
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[int | None]
    patient_id: Mapped[int | None] = mapped_column(index=True)
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)


# --- Who is acting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    label: str
    user_id: int | None = None


SYSTEM = Actor("system")
_actor: contextvars.ContextVar[Actor] = contextvars.ContextVar("audit_actor", default=SYSTEM)


def current_actor() -> Actor:
    from flask import g, has_request_context

    if has_request_context():
        actor = g.get("audit_actor")
        if actor is not None:
            return actor
        from flask_login import current_user

        if getattr(current_user, "is_authenticated", False):
            return Actor(f"user:{current_user.email}", current_user.id)
    return _actor.get()


def act_as_user(user: Any) -> None:
    """Mark the current request as done by ``user`` (API tokens, sign-in)."""
    from flask import g

    g.audit_actor = Actor(f"user:{user.email}", user.id)


@contextmanager
def acting_as(label: str) -> Iterator[None]:
    """Run code outside a request as a named system actor (``cli``, ``scheduler``)."""
    token = _actor.set(Actor(label))
    try:
        yield
    finally:
        _actor.reset(token)


# --- Collecting changes -----------------------------------------------------------------------


@dataclass
class _Pending:
    obj: Any
    action: str
    changes: dict[str, list[Any]] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, db.Model):
        return getattr(value, "slug", None) or getattr(value, "id", None)
    return value


def _secret_marker(before: Any, after: Any) -> tuple[str | None, str]:
    if after is None:
        return ("set" if before else None), "revoked"
    return ("set" if before else None), ("rotated" if before else "set")


def _table(obj: Any) -> str | None:
    table = getattr(obj, "__tablename__", None)
    return table if table in AUDITED_TABLES else None


def _column_values(obj: Any) -> dict[str, Any]:
    mapper = inspect(obj).mapper
    values = {}
    for column in mapper.column_attrs:
        if column.key in IGNORED_FIELDS:
            continue
        value = getattr(obj, column.key)
        if column.key in SECRET_FIELDS:
            values[column.key] = "set" if value else None
        else:
            values[column.key] = _plain(value)
    for rel in mapper.relationships:
        if rel.secondary is not None:
            values[rel.key] = sorted(_plain(o) for o in getattr(obj, rel.key))
    return values


def _updates(obj: Any) -> dict[str, list[Any]]:
    state = inspect(obj)
    changes: dict[str, list[Any]] = {}
    for attr in state.mapper.column_attrs:
        if attr.key in IGNORED_FIELDS:
            continue
        history = state.attrs[attr.key].history
        if not history.has_changes():
            continue
        before = history.deleted[0] if history.deleted else None
        after = history.added[0] if history.added else None
        if before == after:
            continue
        if attr.key in SECRET_FIELDS:
            changes[attr.key] = list(_secret_marker(before, after))
        else:
            changes[attr.key] = [_plain(before), _plain(after)]
    for rel in state.mapper.relationships:
        history = state.attrs[rel.key].history
        if rel.direction is MANYTOONE and history.has_changes():
            # e.g. ``patient.clinic = other``: the foreign key only changes during the flush,
            # after this runs, so the relationship itself is what shows the move.
            before = history.deleted[0] if history.deleted else None
            after = history.added[0] if history.added else None
            if before is not None and before is not after:
                changes[rel.key] = [_plain(before), _plain(after)]
            continue
        if rel.secondary is None:
            continue
        if history.has_changes():
            after = sorted(_plain(o) for o in getattr(obj, rel.key))
            removed = [_plain(o) for o in history.deleted]
            added = [_plain(o) for o in history.added]
            before = sorted([v for v in after if v not in added] + removed)
            changes[rel.key] = [before, after]
    return changes


@event.listens_for(Mapper, "mapper_configured")
def _load_old_values(mapper: Mapper, cls: type) -> None:
    """Make every audited column load its old value when set (SQLAlchemy's "active
    history"), so an entry's "before" is right even for attributes expired by a commit."""
    if getattr(cls, "__tablename__", None) not in AUDITED_TABLES:
        return
    manager = manager_of_class(cls)
    for prop in mapper.column_attrs:
        if prop.key not in IGNORED_FIELDS:
            manager[prop.key].impl.active_history = True
    for rel in mapper.relationships:
        if rel.direction is MANYTOONE:
            manager[rel.key].impl.active_history = True


def _pending(session: Session) -> dict[int, _Pending]:
    return session.info.setdefault("audit_pending", {})


@event.listens_for(Session, "before_flush")
def _collect(session: Session, _context: Any, _instances: Any) -> None:
    pending = _pending(session)
    for obj in session.new:
        if _table(obj):
            pending.setdefault(id(obj), _Pending(obj, "create"))
    for obj in session.dirty:
        if not _table(obj) or (id(obj) in pending and pending[id(obj)].action == "create"):
            continue
        changes = _updates(obj)
        if not changes:
            continue
        record = pending.setdefault(id(obj), _Pending(obj, "update"))
        for key, (before, after) in changes.items():
            first_before = record.changes.get(key, [before])[0]
            record.changes[key] = [first_before, after]
    for obj in session.deleted:
        if _table(obj):
            pending[id(obj)] = _Pending(obj, "delete", {"before": _column_values(obj)})  # type: ignore[dict-item]


@event.listens_for(Session, "before_commit")
def _write(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: the entries are written when the real transaction commits
    if session.new or session.dirty or session.deleted:
        session.flush()  # collect what is still unflushed
    pending = session.info.pop("audit_pending", None)
    if not pending:
        return
    actor = current_actor()
    now = clock.utcnow()
    for record in pending.values():
        entry = _entry(record, actor, now)
        if entry is not None:
            session.add(entry)


def _entry(record: _Pending, actor: Actor, now: datetime) -> AuditEntry | None:
    obj = record.obj
    if record.action == "create":
        changes: dict[str, Any] = {"after": _column_values(obj)}
    elif record.action == "update":
        changes = {k: v for k, v in record.changes.items() if v[0] != v[1]}
        if not changes:
            return None
    else:
        changes = record.changes
    patient_id = obj.id if _table(obj) == "patients" else getattr(obj, "patient_id", None)
    return AuditEntry(
        occurred_at=now,
        actor=actor.label,
        actor_user_id=actor.user_id,
        action=record.action,
        entity=_table(obj) or "",
        entity_id=getattr(obj, "id", None),
        patient_id=patient_id,
        changes=changes,
    )


# --- Bulk writes ------------------------------------------------------------------------------
# Set-based jobs write rows with Core statements, which the session events above never see.
# They record the same entries themselves with these, in their own transaction.


def created_values(model: type, row: dict[str, Any]) -> dict[str, Any]:
    """What a ``create`` entry records for a new ``model`` whose columns are ``row`` (as
    ``_column_values`` does for an ORM object: all columns but bookkeeping, secrets hidden)."""
    values = {}
    for key, secret in _recorded_columns(model):
        value = row.get(key)
        if secret:
            values[key] = "set" if value else None
        else:
            values[key] = _plain(value)
    return values


@functools.cache
def _recorded_columns(model: type) -> tuple[tuple[str, bool], ...]:
    return tuple(
        (column.key, column.key in SECRET_FIELDS)
        for column in inspect(model).column_attrs
        if column.key not in IGNORED_FIELDS
    )


def bulk_entry(
    actor: Actor,
    now: datetime,
    action: str,
    model: type,
    entity_id: int,
    patient_id: int | None,
    changes: dict[str, Any],
) -> dict[str, Any]:
    """One entry as a row for ``insert_entries``."""
    return {
        "occurred_at": now,
        "actor": actor.label,
        "actor_user_id": actor.user_id,
        "action": action,
        "entity": model.__tablename__,  # type: ignore[attr-defined]
        "entity_id": entity_id,
        "patient_id": patient_id,
        "changes": changes,
    }


def insert_entries(rows: list[dict[str, Any]]) -> None:
    """Write entries in multi-row INSERTs, in the session's current transaction."""
    if rows:
        db.session.execute(AuditEntry.__table__.insert(), rows)


@event.listens_for(Session, "after_transaction_end")
def _discard(session: Session, transaction: Any) -> None:
    """Whatever is still pending when the real transaction ends was rolled back."""
    if transaction.parent is None:
        session.info.pop("audit_pending", None)
