"""Typed dependencies: the registry state, a database session, the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from .. import auth
from ..service import Caller
from ..state import Registry

bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer jbk_...`")


def get_registry(request: Request) -> Registry:
    return request.app.state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def get_db(reg: RegistryDep) -> Iterator[Session]:
    with reg.sessions() as db:
        yield db


SessionDep = Annotated[Session, Depends(get_db)]


def require(scope: str) -> Callable[..., Caller]:
    def dependency(
        request: Request,
        db: SessionDep,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(
                401, "missing API token", headers={"WWW-Authenticate": 'Bearer realm="jubako"'}
            )
        tok = auth.authenticate(db, creds.credentials)
        if tok is None:
            raise HTTPException(
                401,
                "invalid, expired or revoked API token",
                headers={"WWW-Authenticate": 'Bearer realm="jubako", error="invalid_token"'},
            )
        if not auth.allows(tok.scope, scope):
            raise HTTPException(403, f"this route needs a token with the {scope} scope")
        client = request.client.host if request.client else ""
        return Caller(user=tok.user.name, token_id=tok.id, scope=tok.scope, client=client)

    dependency.__name__ = f"require_{scope}"
    return dependency


ReadCaller = Annotated[Caller, Depends(require("read"))]
WriteCaller = Annotated[Caller, Depends(require("write"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]
