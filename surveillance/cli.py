"""Command-line interface, under ``flask --app surveillance``."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from surveillance.errors import DomainError
from surveillance.extensions import db
from surveillance.models import Clinic, Role, User
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
def create_clinic(slug: str, name: str, timezone: str, address: str) -> None:
    """Create a clinic."""
    try:
        clinic = accounts.create_clinic(slug, name, timezone, address)
    except DomainError as exc:
        _fail(exc)
    db.session.commit()
    click.echo(f"Created clinic {clinic.slug} ({clinic.name}, {clinic.timezone}).")


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


@demo_cli.command("load")
def demo_load() -> None:
    """Load the synthetic demo clinic, users and patients (idempotent)."""
    from surveillance import demo

    summary = demo.load()
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


def register(app: Flask) -> None:
    from surveillance.cli_patients import patients_cli

    for group in (clinics_cli, users_cli, demo_cli, patients_cli, stages_cli):
        app.cli.add_command(group)
