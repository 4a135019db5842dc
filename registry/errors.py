"""Errors of the registry service layer and the HTTP status each maps to."""

from __future__ import annotations

from typing import Any

from jubako.errors import AlreadyExists, InvalidBundle, InvalidTag, JubakoError, NotFound


class Conflict(JubakoError):
    """The request clashes with the current state (in use, different content, ...)."""

    def __init__(self, message: str, **extra: Any):
        super().__init__(message)
        self.extra = extra


class BadRequest(JubakoError):
    pass


class Forbidden(JubakoError):
    pass


class Gone(JubakoError):
    pass


def status_of(exc: JubakoError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, AlreadyExists | Conflict):
        return 409
    if isinstance(exc, InvalidBundle | InvalidTag):
        return 422
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, Gone):
        return 410
    return 400
