"""The patient's calendar feed address: rotate it (the old URL stops at once) or revoke it."""

from __future__ import annotations

from typing import Any

from surveillance.api import bp, schemas
from surveillance.api.auth import current_user, token_required
from surveillance.api.serializers import feed_links_json
from surveillance.api.views import parse_body
from surveillance.extensions import db
from surveillance.services import access, feed_tokens


@bp.post("/patients/<int:patient_id>/feed-token")
@token_required
def rotate_feed_token(patient_id: int) -> Any:
    patient = access.get_patient(current_user(), patient_id)
    parse_body(schemas.EmptyIn)
    feed_tokens.rotate_patient_token(patient)
    db.session.commit()
    return feed_links_json(patient)


@bp.delete("/patients/<int:patient_id>/feed-token")
@token_required
def revoke_feed_token(patient_id: int) -> Any:
    patient = access.get_patient(current_user(), patient_id)
    feed_tokens.revoke_patient_token(patient)
    db.session.commit()
    return "", 204
