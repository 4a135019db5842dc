"""Typed dependencies: the registry state, a database session, the authenticated caller."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from .. import auth
from ..domain.audit import Caller
from ..state import Registry

log = logging.getLogger("jubako.registry.auth")
bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer jbk_...`")


def get_registry(request: Request) -> Registry:
    return request.app.state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def get_db(reg: RegistryDep) -> Iterator[Session]:
    with reg.sessions() as db:
        yield db


SessionDep = Annotated[Session, Depends(get_db)]


def _refuse(status: int, detail: str, **headers: str) -> HTTPException:
    return HTTPException(status, detail, headers=headers or None)


def check_token(reg: Registry, credentials: str | None, client: str, needed: str) -> Caller:
    """The caller a bearer token stands for, if it is live and has the ``needed`` scope.

    Failed checks are counted per client address; past the limit every check from that
    address is refused with 429 until the window frees up (even a valid token: otherwise a
    guess would still learn whether it was right)."""
    if not credentials:
        raise _refuse(401, "missing API token", **{"WWW-Authenticate": 'Bearer realm="jubako"'})
    key = f"addr:{client}"
    wait = reg.auth_failures.retry_after(key)
    if wait:
        raise _refuse(
            429,
            f"too many failed token checks from {client}; retry in {wait} s",
            **{"Retry-After": str(wait)},
        )
    with reg.sessions() as db:
        tok = auth.authenticate(db, credentials)
        if tok is None:
            reg.auth_failures.failed(key)
            log.warning("token check failed", extra={"client": client})
            raise _refuse(
                401,
                "invalid, expired or revoked API token",
                **{"WWW-Authenticate": 'Bearer realm="jubako", error="invalid_token"'},
            )
        caller = Caller(user=tok.user.name, token_id=tok.id, scope=tok.scope, client=client)
    if not auth.allows(caller.scope, needed):
        raise _refuse(403, f"this route needs a token with the {needed} scope")
    return caller


def client_of(request: Request) -> str:
    return request.client.host if request.client else ""


def require(scope: str) -> Callable[..., Caller]:
    def dependency(
        request: Request,
        reg: RegistryDep,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        # The API gate (api/gate.py) already checked the token of a request with a body.
        checked: Caller | None = getattr(request.state, "api_caller", None)
        if checked is not None:
            if not auth.allows(checked.scope, scope):
                raise _refuse(403, f"this route needs a token with the {scope} scope")
            return checked
        if creds is None or creds.scheme.lower() != "bearer":
            return check_token(reg, None, client_of(request), scope)
        return check_token(reg, creds.credentials, client_of(request), scope)

    dependency.__name__ = f"require_{scope}"
    return dependency


ReadCaller = Annotated[Caller, Depends(require("read"))]
WriteCaller = Annotated[Caller, Depends(require("write"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]
