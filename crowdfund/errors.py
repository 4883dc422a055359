"""Domain errors: what a user can cause, with a message to show and a stable code.

Services raise these; views turn them into a flash message or, in the JSON API, into
`{"error": {"code": …, "message": …}}` with `status`.
"""

from __future__ import annotations


class DomainError(Exception):
    code = "error"
    status = 422

    def __init__(self, message: str, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        #: The form field the message belongs to, when there is one.
        self.field = field


class ValidationError(DomainError):
    code = "validation_error"
    status = 422


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class Conflict(DomainError):
    """The request is valid but the current state refuses it (sold out, closed, …)."""

    code = "conflict"
    status = 409
