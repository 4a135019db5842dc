"""API tokens: random secrets shown once, stored as sha256, scoped read < write < admin."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jubako.errors import NotFound

from .db.models import Token, User, utcnow
from .errors import BadRequest

SCOPES = ("read", "write", "admin")
TOKEN_PREFIX = "jbk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # bounds the writes a busy token causes


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(token.encode()).hexdigest()


def allows(granted: str, needed: str) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)


def _check_user_name(name: str) -> None:
    if not name or len(name) > 128:
        raise BadRequest("user name must have 1 to 128 characters")
    if "\x00" in name:  # PostgreSQL refuses NUL in text
        raise BadRequest("a user name must not contain NUL bytes")


def user(db: Session, name: str) -> User:
    """The user ``name``, made if new. Two requests making the same new user at once: the
    second's insert waits for the first's commit, fails on the unique name, and takes the
    first's (it was a duplicate key, a 500)."""
    u = db.scalar(select(User).where(User.name == name))
    if u is None:
        try:
            with db.begin_nested():
                u = User(name=name)
                db.add(u)
        except IntegrityError:
            u = db.scalar(select(User).where(User.name == name))
    assert u is not None
    return u


def create_token(
    db: Session,
    *,
    user_name: str,
    scope: str,
    name: str = "",
    expires_in: timedelta | None = None,
    secret: str | None = None,
) -> tuple[Token, str]:
    """A new token and its plaintext, which is never stored."""
    if scope not in SCOPES:
        raise BadRequest(f"scope must be one of {', '.join(SCOPES)}")
    _check_user_name(user_name)
    if "\x00" in name:
        raise BadRequest("a token name must not contain NUL bytes")
    if expires_in is not None and expires_in.total_seconds() <= 0:
        raise BadRequest("expiry must be in the future")
    plain = secret or TOKEN_PREFIX + secrets.token_urlsafe(32)
    if len(plain) < 16:
        raise BadRequest("a token must have at least 16 characters")
    tok = Token(
        user=user(db, user_name),
        name=name[:128],
        token_hash=hash_token(plain),
        prefix=plain[:12],
        scope=scope,
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    db.add(tok)
    db.flush()
    return tok, plain


def authenticate(db: Session, plain: str) -> Token | None:
    """The live token matching ``plain``, its last-used time refreshed; else None."""
    tok = db.scalar(select(Token).where(Token.token_hash == hash_token(plain)))
    now = utcnow()
    if tok is None or tok.revoked_at is not None:
        return None
    if tok.expires_at is not None and tok.expires_at <= now:
        return None
    if tok.last_used_at is None or now - tok.last_used_at > LAST_USED_RESOLUTION:
        db.execute(update(Token).where(Token.id == tok.id).values(last_used_at=now))
        db.commit()
        tok.last_used_at = now
    return tok


def revoke(db: Session, token_id: int) -> Token:
    tok = db.get(Token, token_id)
    if tok is None or tok.revoked_at is not None:
        raise NotFound(f"token {token_id} not found")
    tok.revoked_at = utcnow()
    return tok


def has_tokens(db: Session) -> bool:
    return db.scalar(select(Token.id).limit(1)) is not None


def is_expired(tok: Token, now: datetime | None = None) -> bool:
    return tok.expires_at is not None and tok.expires_at <= (now or utcnow())


# --- passwords (dashboard login) -----------------------------------------------------

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # ~16 MiB, tens of ms: slow for guessing, fine for logins
MIN_PASSWORD = 8


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.urlsafe_b64encode
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def _verify_hash(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, want = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.urlsafe_b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
        return hmac.compare_digest(got, base64.urlsafe_b64decode(want))
    except (ValueError, TypeError):
        return False


_DUMMY = hash_password(secrets.token_urlsafe(16))  # same work whether or not the user exists


def set_password(db: Session, user_name: str, password: str | None, scope: str | None) -> User:
    """Give ``user_name`` (created if new) a dashboard password and the scope it grants;
    ``password=None`` removes password login."""
    if password is not None and len(password) < MIN_PASSWORD:
        raise BadRequest(f"a password must have at least {MIN_PASSWORD} characters")
    if password is not None and scope not in SCOPES:
        raise BadRequest(f"scope must be one of {', '.join(SCOPES)}")
    _check_user_name(user_name)
    u = user(db, user_name)
    u.password_hash = hash_password(password) if password is not None else None
    u.scope = scope if password is not None else None
    db.flush()
    return u


def check_password(db: Session, user_name: str, password: str) -> User | None:
    """The user whose password this is, if password login is enabled for them; else None."""
    u = db.scalar(select(User).where(User.name == user_name)) if user_name else None
    if u is None or not u.password_hash or u.scope not in SCOPES:
        _verify_hash(password, _DUMMY)
        return None
    return u if _verify_hash(password, u.password_hash) else None
