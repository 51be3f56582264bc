"""``flask --app surveillance reminders …``: a clinic's reminder settings."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import select

from surveillance.errors import ValidationFailed
from surveillance.extensions import db
from surveillance.models import Clinic
from surveillance.reminders import settings
from surveillance.reminders.rules import format_days

reminders_cli = AppGroup("reminders", help="Reminder settings per clinic.")


def _clinic(slug: str) -> Clinic:
    clinic = db.session.scalar(select(Clinic).where(Clinic.slug == slug))
    if clinic is None:
        raise click.ClickException(f"No clinic with slug {slug!r}.")
    return clinic


@reminders_cli.command("settings")
@click.argument("slug")
@click.option("--enabled/--disabled", default=None, help="All reminder emails on or off.")
@click.option("--book-window-lead-days", type=int, help="Days before the booking window opens.")
@click.option("--booked-reminder-days", help='Days before a booked visit, e.g. "7,1".')
@click.option("--biopsy-heads-up-days", type=int, help="Days before the biopsy is due.")
@click.option("--send-hour", type=int, help="Local hour for date-based reminders (0-23).")
@click.option("--digest/--no-digest", "digest_enabled", default=None)
@click.option("--digest-hour", type=int, help="Local hour of the coordinators' digest.")
def settings_command(slug: str, **options: Any) -> None:
    """Show a clinic's reminder settings, changing the ones given."""
    clinic = _clinic(slug)
    changes = {name: value for name, value in options.items() if value is not None}
    try:
        policy = settings.update(clinic, **changes) if changes else settings.policy_for(clinic.id)
    except ValidationFailed as exc:
        db.session.rollback()
        details = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
        raise click.ClickException(details) from exc
    db.session.commit()
    for name in settings.FIELDS:
        value = getattr(policy, name)
        click.echo(f"{name}: {format_days(value) if name == 'booked_reminder_days' else value}")
