"""Dashboard sessions: a signed cookie (HMAC-SHA256 with the registry's secret key),
HttpOnly and SameSite=Lax, holding who logged in and the CSRF token of the session.

The cookie names a token id (API-token login) or a user id with a fingerprint of the
user's password hash (password login); both are checked against the database on every
request, so revoking the token or changing the password ends the session. Every form
carries the session's CSRF token, compared in constant time; logging in replaces the
session (new CSRF token), so a session fixed before login is worthless after it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session as DB

from .. import auth
from ..db.models import Token, User
from ..domain.audit import Caller

COOKIE = "jubako_session"
MAX_AGE_S = 12 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signing_key(secret: str) -> bytes:
    return hashlib.sha256(b"jubako-dashboard-session\0" + secret.encode()).digest()


def sign(key: bytes, data: dict[str, Any]) -> str:
    body = _b64(json.dumps(data, separators=(",", ":")).encode())
    mac = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def unsign(key: bytes, value: str) -> dict[str, Any] | None:
    body, sep, mac = value.partition(".")
    if not sep:
        return None
    want = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(want, mac):
        return None
    try:
        data = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def password_fingerprint(u: User) -> str:
    return hashlib.sha256((u.password_hash or "").encode()).hexdigest()[:16]


@dataclass
class SessionData:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token_id: int | None = None
    user_id: int | None = None
    pw: str = ""
    iat: int = field(default_factory=lambda: int(time.time()))
    flash: list[list[str]] = field(default_factory=list)  # [level, message]

    def dump(self) -> dict[str, Any]:
        return {
            "c": self.csrf,
            "t": self.token_id,
            "u": self.user_id,
            "p": self.pw,
            "i": self.iat,
            "f": self.flash[-5:],
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> SessionData | None:
        try:
            s = cls(
                csrf=str(data["c"]),
                token_id=data.get("t"),
                user_id=data.get("u"),
                pw=str(data.get("p", "")),
                iat=int(data["i"]),
                flash=[[str(a), str(b)] for a, b in data.get("f", [])],
            )
        except (KeyError, TypeError, ValueError):
            return None
        if len(s.csrf) < 16 or time.time() - s.iat > MAX_AGE_S:
            return None
        return s

    def check_csrf(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf.encode(), str(given).encode())


@dataclass(frozen=True)
class Viewer:
    """Who is looking at the dashboard."""

    user: str
    scope: str
    method: str  # "token" or "password"
    token_id: int | None = None
    token_prefix: str = ""

    def can(self, scope: str) -> bool:
        return auth.allows(self.scope, scope)

    def caller(self, client: str) -> Caller:
        return Caller(user=self.user, token_id=self.token_id, scope=self.scope, client=client)


def viewer_of(db: DB, s: SessionData) -> Viewer | None:
    """The logged-in viewer, if the session's token or password still holds."""
    if s.token_id is not None:
        tok = db.get(Token, s.token_id)
        if tok is None or tok.revoked_at is not None or auth.is_expired(tok):
            return None
        return Viewer(tok.user.name, tok.scope, "token", tok.id, tok.prefix)
    if s.user_id is not None:
        u = db.get(User, s.user_id)
        if u is None or not u.password_hash or u.scope not in auth.SCOPES:
            return None
        if not hmac.compare_digest(password_fingerprint(u), s.pw):
            return None
        return Viewer(u.name, u.scope, "password")
    return None
