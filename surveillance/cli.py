"""Command-line interface, under ``flask --app surveillance``."""

from __future__ import annotations

import functools
import getpass
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from surveillance import audit, backup
from surveillance.errors import DomainError
from surveillance.extensions import db, immediate_transactions
from surveillance.models import Clinic, Role, User
from surveillance.privacy import NEUTRAL_CLINIC_NAME
from surveillance.services import accounts

clinics_cli = AppGroup("clinics", help="Manage clinics.")
users_cli = AppGroup("users", help="Manage users and their API tokens.")
demo_cli = AppGroup("demo", help="Synthetic demo data.")
stages_cli = AppGroup("stages", help="Care stages.")


def _fail(exc: DomainError) -> None:
    db.session.rollback()
    details = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
    raise click.ClickException(f"{exc.message} {details}".strip())


@clinics_cli.command("create")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--timezone", default="America/Denver", show_default=True)
@click.option("--address", default="")
@click.option(
    "--calendar-name",
    default=None,
    help="The name patients see in calendars, emails and their page. Default: the name, "
    f"unless it names a condition (then '{NEUTRAL_CLINIC_NAME}').",
)
@click.option(
    "--calendar-address",
    default=None,
    help="The address patients see. Default: the address, unless it names a condition.",
)
def create_clinic(
    slug: str,
    name: str,
    timezone: str,
    address: str,
    calendar_name: str | None,
    calendar_address: str | None,
) -> None:
    """Create a clinic."""
    try:
        clinic = accounts.create_clinic(
            slug, name, timezone, address, calendar_name, calendar_address
        )
    except DomainError as exc:
        _fail(exc)
    db.session.commit()
    click.echo(
        f"Created clinic {clinic.slug} ({clinic.name}, {clinic.timezone}); "
        f"patients see it as “{clinic.calendar_name}”."
    )
    if clinic.calendar_name == NEUTRAL_CLINIC_NAME:
        click.echo(
            "Set a name patients will recognise with --calendar-name, or in the clinic settings."
        )


@clinics_cli.command("close")
@click.argument("slug")
@click.argument("day", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--reason", default="", help="Shown to coordinators, e.g. 'Staff training'.")
def close_clinic(slug: str, day: datetime, reason: str) -> None:
    """Close a clinic on DAY (YYYY-MM-DD) and move planned dates off it."""
    clinic = db.session.scalar(select(Clinic).where(Clinic.slug == slug))
    if clinic is None:
        raise click.ClickException(f"No clinic with slug {slug!r}.")
    try:
        moved = accounts.add_closure(clinic, day.date(), reason)
    except DomainError as exc:
        _fail(exc)
    db.session.commit()
    click.echo(f"{clinic.name} is closed on {day.date().isoformat()}; {moved} plan(s) re-planned.")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--clinic", "clinic_slugs", multiple=True, help="Clinic slug (repeatable).")
@click.option("--name", "full_name", default="")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Prompted for when not given.",
)
def create_user(
    email: str, role: str, clinic_slugs: tuple[str, ...], full_name: str, password: str
) -> None:
    """Create a coordinator or an admin."""
    clinics = []
    for slug in clinic_slugs:
        clinic = db.session.scalar(select(Clinic).where(Clinic.slug == slug))
        if clinic is None:
            raise click.ClickException(f"No clinic with slug {slug!r}.")
        clinics.append(clinic)
    try:
        user = accounts.create_user(email, role, password, clinics, full_name)
    except DomainError as exc:
        _fail(exc)
    db.session.commit()
    click.echo(f"Created {user.role} {user.email}.")


@users_cli.command("api-token")
@click.argument("email")
@click.option("--name", default="cli", help="A label to recognise the token by.")
def api_token(email: str, name: str) -> None:
    """Create an API token; the secret is printed once, as the last line."""
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"No user with email {email!r}.")
    secret = accounts.issue_api_token(user, name)
    db.session.commit()
    click.echo(f"API token for {user.email} (shown once; only its hash is stored):")
    click.echo(secret)


@users_cli.command("feed-token")
@click.argument("email")
def feed_token(email: str) -> None:
    """(Re)issue a coordinator's clinic calendar feed; the URL is the last line. Any
    earlier URL of this user stops working at once."""
    from surveillance.feeds.urls import clinic_feed_url
    from surveillance.services import feed_tokens

    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"No user with email {email!r}.")
    if not user.is_active:
        raise click.ClickException(f"User {user.email} is deactivated.")
    feed_tokens.rotate_user_token(user)
    db.session.commit()
    click.echo(f"Clinic calendar feed for {user.email} (keep it private; subscribe to it in a")
    click.echo("calendar app; running this again replaces it):")
    click.echo(clinic_feed_url(user))


@demo_cli.command("load")
@click.option("--force", is_flag=True, help="Load even if other clinics exist (test copies).")
def demo_load(force: bool) -> None:
    """Load the synthetic demo clinic, users and patients (idempotent)."""
    from surveillance import demo

    try:
        summary = demo.load(force)
    except demo.NotADemoDatabase as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(summary)


@stages_cli.command("sweep")
@click.option(
    "--date",
    "on",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Treat this day as today (default: each clinic's own today).",
)
def stages_sweep(on) -> None:  # type: ignore[no-untyped-def]
    """Move watched patients whose one-year biopsy window has opened to biopsy review.

    Safe to run any number of times a day; the daily scheduler runs the same function.
    """
    from surveillance.services import stages

    moved = stages.advance_biopsy_reviews(on.date() if on else None)
    db.session.commit()
    click.echo(f"Moved {len(moved)} patient(s) to biopsy review.")


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(path: Path) -> None:
    """Write an online backup of the SQLite database to PATH."""
    try:
        size = backup.backup(db.engine, path)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Backed up to {path} ({size} bytes).")


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.confirmation_option(prompt="This replaces every record with the backup's. Continue?")
def restore_command(path: Path) -> None:
    """Replace the SQLite database with the backup at PATH (stop the scheduler first)."""
    try:
        backup.restore(db.engine, path)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Restored from {path}.")


def register(app: Flask) -> None:
    from surveillance import jobs
    from surveillance.cli_patients import patients_cli
    from surveillance.reminders.cli import reminders_cli

    for group in (
        clinics_cli,
        users_cli,
        demo_cli,
        patients_cli,
        jobs.jobs_cli,
        jobs.scheduler_cli,
        reminders_cli,
        stages_cli,
    ):
        app.cli.add_command(group)
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _attributed(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        writing = immediate_transactions.set(True)
        try:
            with audit.acting_as(f"cli:{_os_user()}"):
                return callback(*args, **kwargs)
        finally:
            immediate_transactions.reset(writing)

    return run


def attribute_commands(group: click.Group) -> None:
    """Every command's changes are audited as ``cli:<OS user>`` (not as an anonymous
    "system"; a job that acts as the scheduler names itself inside), and its SQLite
    transactions take the write lock up front, as befits a background writer."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            attribute_commands(command)
        elif command.callback is not None and not getattr(command, "_attributed", False):
            command.callback = _attributed(command.callback)
            command._attributed = True  # type: ignore[attr-defined]
