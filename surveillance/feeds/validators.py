"""Entity tags for patient feeds, known before (and without) rendering.

A patient feed's bytes are a function of: the patient's events and page link (every change
to them raises ``feed_version``), the patient and clinic rows (their ``updated_at``), the
clinic's time zone and local date (time rules drop events day by day), the configuration the
renderer reads (``PUBLIC_BASE_URL``, ``CALENDAR_UID_DOMAIN``, ``SECRET_KEY`` for the page
link), the renderer's code and its ``icalendar`` version, and the zone's rules (VTIMEZONE). The
tag is a hash of exactly these inputs, so:

* every worker and process computes the same tag for the same data;
* a ``304`` needs only the one lookup that finds the patient, never a rendering;
* the tag changes whenever an input, and so possibly the bytes, changes: it stays a strong
  validator. (It also changes once a day with the local date, when the bytes may not have:
  a client then downloads the feed again once that day, which is the price of never rendering
  to answer a ``304``.)
"""

from __future__ import annotations

import hashlib
import os
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import icalendar

# Raise whenever a change to content.py, wording.py or ical.py changes a feed's bytes for the
# same data: clients then get the new bytes instead of a 304 for the old ones.
RENDERER_VERSION = "patient-feed/1"


@lru_cache(maxsize=32)
def _epoch(base_url: str, uid_domain: str, secret_key: str) -> str:
    material = "\n".join(
        (RENDERER_VERSION, icalendar.__version__, base_url, uid_domain, secret_key)
    )
    return hashlib.sha256(material.encode()).hexdigest()


def rendering_epoch(config: Mapping[str, Any]) -> str:
    """A digest of everything outside the database that changes a patient feed's bytes. Read
    from the configuration on every call (it may change at run time in tests); the digest is
    memoised."""
    return _epoch(
        str(config["PUBLIC_BASE_URL"]),
        str(config["CALENDAR_UID_DOMAIN"]),
        str(config["SECRET_KEY"]),
    )


@lru_cache(maxsize=256)
def zone_rules(name: str) -> str:
    """A digest of the zone's compiled rules as ``zoneinfo`` finds them (the system's zone
    files, else the ``tzdata`` package): a tzdata update changes VTIMEZONE."""
    zoneinfo.ZoneInfo(name)  # refuses a key that is not a zone name before any file is read
    for root in zoneinfo.TZPATH:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                return hashlib.sha256(handle.read()).hexdigest()
    try:
        data = resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).read_bytes()
    except (ModuleNotFoundError, OSError):
        return "unknown"
    return hashlib.sha256(data).hexdigest()


def stamp(moment: datetime) -> str:
    """A timestamp as the tag reads it: UTC, ISO 8601, always with microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def patient_feed_etag(
    epoch: str,
    patient_id: int,
    feed_version: int,
    patient_updated_at: datetime,
    clinic_id: int,
    clinic_updated_at: datetime,
    timezone: str,
    today: date,
) -> str:
    """The feed's entity tag (unquoted, 32 hex digits), also its key in the feed cache."""
    return patient_feed_etag_of_stamps(
        epoch,
        patient_id,
        feed_version,
        stamp(patient_updated_at),
        clinic_id,
        stamp(clinic_updated_at),
        timezone,
        today,
    )


def patient_feed_etag_of_stamps(
    epoch: str,
    patient_id: int,
    feed_version: int,
    patient_stamp: str,
    clinic_id: int,
    clinic_stamp: str,
    timezone: str,
    today: date,
) -> str:
    """``patient_feed_etag`` with the two timestamps already as ``stamp`` writes them (the
    feed fast path derives them from the database's own text, without datetimes)."""
    material = "|".join(
        (
            "patient",
            epoch,
            str(patient_id),
            str(feed_version),
            patient_stamp,
            str(clinic_id),
            clinic_stamp,
            timezone,
            zone_rules(timezone),
            today.isoformat(),
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]
