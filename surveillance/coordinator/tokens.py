"""My API tokens: list (name, created, last used), create (the secret is shown once), revoke."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, url_for

from surveillance.coordinator import bp
from surveillance.coordinator.forms import ActionForm, ApiTokenForm
from surveillance.coordinator.support import me
from surveillance.errors import NotFound
from surveillance.extensions import db
from surveillance.services import accounts


def _page(form: ApiTokenForm, secret: str | None = None, status: int = 200) -> Any:
    user = me()
    response = render_template(
        "coordinator/tokens.html",
        form=form,
        revoke_form=ActionForm(),
        tokens=accounts.api_tokens_of(user),
        secret=secret,
    )
    # The page may carry a new secret: no cache may keep it.
    return response, status, {"Cache-Control": "no-store"}


@bp.get("/tokens")
def api_tokens() -> Any:
    return _page(ApiTokenForm(formdata=None))


@bp.post("/tokens")
def create_api_token() -> Any:
    form = ApiTokenForm()
    if not form.validate():
        return _page(form, status=422)
    secret = accounts.issue_api_token(me(), (form.name.data or "").strip())
    db.session.commit()
    # Rendered, not redirected: the secret is never put in the session cookie or a URL.
    return _page(ApiTokenForm(formdata=None), secret=secret, status=201)


@bp.post("/tokens/<int:token_id>/revoke")
def revoke_api_token(token_id: int) -> Any:
    user = me()
    token = accounts.api_token_for(user, token_id)
    if token.user_id != user.id:  # this screen is about one's own tokens, admins included
        raise NotFound("API token not found.")
    if ActionForm().validate():
        accounts.revoke_api_token(token)
        db.session.commit()
        flash(f"Token “{token.name}” revoked: it no longer works.", "success")
    return redirect(url_for("coordinator.api_tokens"))
