"""API tokens (admin), and who the caller is (any scope)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlalchemy import select

from ... import auth
from ...db.models import Token
from ...domain.audit import audit
from .. import API_PREFIX
from ..deps import AdminCaller, ReadCaller, SessionDep
from ..presenters import token_out
from ..schemas import TokenCreate, TokenCreated, TokenOut

router = APIRouter(prefix=f"{API_PREFIX}/tokens", tags=["tokens"])


@router.get("", response_model=list[TokenOut], summary="Every token (never the secrets)")
def list_tokens(db: SessionDep, _: AdminCaller) -> list[TokenOut]:
    return [token_out(t) for t in db.scalars(select(Token).order_by(Token.id))]


@router.get("/self", response_model=TokenOut, summary="The token making this request")
def whoami(db: SessionDep, caller: ReadCaller) -> TokenOut:
    tok = db.get(Token, caller.token_id)
    assert tok is not None
    return token_out(tok)


@router.post("", response_model=TokenCreated, status_code=201, summary="Create a token")
def create(body: TokenCreate, db: SessionDep, caller: AdminCaller) -> TokenCreated:
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    tok, plain = auth.create_token(
        db, user_name=body.user, scope=body.scope, name=body.name, expires_in=expires
    )
    audit(db, caller, "token.create", f"token {tok.id}", scope=tok.scope, user=body.user)
    db.commit()
    return TokenCreated(**token_out(tok).model_dump(), token=plain)


@router.delete("/{token_id}", status_code=204, summary="Revoke a token")
def revoke(
    token_id: Annotated[int, Path(ge=1, le=2**63 - 1)], db: SessionDep, caller: AdminCaller
) -> Response:
    auth.revoke(db, token_id)
    audit(db, caller, "token.revoke", f"token {token_id}")
    db.commit()
    return Response(status_code=204)
