"""The caller's API tokens: list them (never the secrets) and revoke them."""

from __future__ import annotations

from typing import Any

from flask import request

from surveillance.api import bp
from surveillance.api.auth import current_user, token_required
from surveillance.api.views import Forbidden
from surveillance.errors import NotFound, ValidationFailed
from surveillance.extensions import db
from surveillance.models import ApiToken, User
from surveillance.services import accounts
from surveillance.web import MAX_ID


def _utc(moment: Any) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "user_id": token.user_id,
        "name": token.name,
        "created_at": _utc(token.created_at),
        "last_used_at": _utc(token.last_used_at),
        "revoked_at": _utc(token.revoked_at),
    }


def _owner(caller: User) -> User:
    """Whose tokens to list: the caller's own, or (admins only) ``?user_id=``'s."""
    raw = request.args.get("user_id")
    if raw is None:
        return caller
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_ID:
        raise ValidationFailed({"user_id": "Must be a whole number."})
    if int(raw) == caller.id:
        return caller
    if not caller.is_admin:
        raise Forbidden("Only admins can list other users' tokens.")
    owner = db.session.get(User, int(raw))
    if owner is None:
        raise NotFound("User not found.")
    return owner


@bp.get("/tokens")
@token_required
def list_tokens() -> Any:
    return {"items": [token_json(t) for t in accounts.api_tokens_of(_owner(current_user()))]}


@bp.delete("/tokens/<int:token_id>")
@token_required
def revoke_token(token_id: int) -> Any:
    accounts.revoke_api_token(accounts.api_token_for(current_user(), token_id))
    db.session.commit()
    return "", 204
