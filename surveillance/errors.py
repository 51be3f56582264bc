"""Domain errors, raised by services and turned into responses by each blueprint."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class ValidationFailed(DomainError):
    """The input is well-formed but breaks a rule (HTTP 422)."""

    status_code = 422

    def __init__(self, fields: dict[str, str], message: str = "Some fields are not valid.") -> None:
        super().__init__(message, fields)


class Conflict(DomainError):
    """The input clashes with what is stored: a duplicate or an invalid state change (409)."""

    status_code = 409


class NotFound(DomainError):
    status_code = 404

    def __init__(self, message: str = "Not found.") -> None:
        super().__init__(message)
