"""URL conventions shared by every blueprint."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter, ValidationError

# Database ids are 32-bit on both engines; anything longer cannot exist.
MAX_ID = 2**31 - 1


class BoundedIntConverter(IntegerConverter):
    """``<int:…>`` for record ids: ASCII digits only and within the id range, so a URL such
    as ``/patients/²`` or ``/patients/99999999999999999999`` is a plain 404, never a 500."""

    regex = r"[0-9]{1,10}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValidationError()
        return number


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = BoundedIntConverter
