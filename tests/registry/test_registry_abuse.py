"""Abuse of the registry by clients without a token, or with a token and bad intent: bodies
larger than the caps, and bodies sent before any token was checked (issue 13, item 4).

Bodies are sent on raw sockets, a piece at a time, so a test sees whether the server answers
*before* it has read the whole body (the old server read 200 MiB, then asked for the token).
"""

from __future__ import annotations

import functools
import re
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from jubako.registry.ratelimit import FailureLimiter

from jubako import safeyaml
from jubako.errors import InvalidBundle
from jubako.manifest import ModelManifest, parse_manifest, utcnow

from .conftest import ADMIN, Served, make_settings, serve
from .test_registry_api import new_token

ANSWER_S = 20  # bound on every wait for an answer (the machine is shared and slow)


def _request_head(
    served: Served, method: str, path: str, headers: dict[str, str]
) -> tuple[socket.socket, bytes]:
    u = urlsplit(served.url)
    sock = socket.create_connection((u.hostname, u.port), timeout=ANSWER_S)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {u.hostname}:{u.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return sock, ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the start of the body of the answer (bounded wait)."""
    data = b""
    sock.settimeout(ANSWER_S)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def send_partial(
    served: Served,
    method: str,
    path: str,
    *,
    declared: int | None,
    send: int,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Declare a body of ``declared`` bytes (None: chunked), send only ``send`` bytes of it,
    and read the answer: a server that waits for the whole body never answers."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if declared is None:
        hdrs["Transfer-Encoding"] = "chunked"
    else:
        hdrs["Content-Length"] = str(declared)
    sock, head = _request_head(served, method, path, hdrs)
    with sock:
        sock.sendall(head)
        piece = b"x" * 65536
        left = send
        try:
            while left > 0:
                n = min(left, len(piece))
                data = piece[:n]
                sock.sendall(f"{n:x}\r\n".encode() + data + b"\r\n" if declared is None else data)
                left -= n
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what we read next says why
        return _answer(sock)


PUSH = "/api/v1/bentos/x/versions/v1"
MiB = 1 << 20


@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-s3"])
def test_anonymous_body_is_refused_before_it_is_read(registry: Served) -> None:
    # 200 MiB declared, 1 MiB sent: the answer must come without the rest.
    status, headers, _ = send_partial(registry, "PUT", PUSH, declared=200 * MiB, send=MiB)
    assert status in (401, 413)
    status, headers, body = send_partial(registry, "PUT", PUSH, declared=None, send=MiB)
    assert status == 401, body
    assert "Bearer" in headers.get("www-authenticate", "")
    # ...and the connection is closed, or the server would read the rest to reuse it.
    assert headers.get("connection") == "close"
    # A bad token is refused the same way, and so is a read token on a write route.
    bad = {"Authorization": "Bearer jbk_not-a-real-token-0000000000"}
    status, _, _ = send_partial(registry, "PUT", PUSH, declared=None, send=MiB, headers=bad)
    assert status == 401
    ro = {"Authorization": f"Bearer {new_token(registry, 'read')}"}
    status, _, body = send_partial(registry, "POST", "/api/v1/archives", declared=None, send=MiB,
                                   headers=ro)
    assert status == 403, body


@pytest.fixture
def capped(tmp_path: Path):  # type: ignore[no-untyped-def]
    served = serve(make_settings(tmp_path, "sqlite", "local", max_body_bytes=256 * 1024,
                                 max_manifest_bytes=128 * 1024, max_upload_bytes=2 * MiB))
    yield served
    served.stop()


AUTH = {"Authorization": f"Bearer {ADMIN}"}


def test_a_body_cap_below_the_manifest_limit_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MAX_BODY_BYTES must be larger than MAX_MANIFEST"):
        make_settings(tmp_path, "sqlite", "local", max_body_bytes=1 << 20)


def test_declared_body_over_the_cap_is_413_at_once(capped: Served) -> None:
    status, _, body = send_partial(capped, "PUT", PUSH, declared=300 * 1024, send=1024,
                                   headers=AUTH)
    assert status == 413, body
    assert b"256 KiB" in body or b"262144" in body
    status, _, body = send_partial(capped, "POST", "/api/v1/archives", declared=3 * MiB,
                                   send=1024, headers={**AUTH, "Content-Type": "application/x-tar"})
    assert status == 413, body
    # JSON routes next to the part uploads get the JSON cap, not the upload one.
    status, _, body = send_partial(capped, "POST", f"/api/v1/uploads/{'0' * 32}/complete",
                                   declared=MiB, send=1024, headers=AUTH)
    assert status == 413 and b"MAX_BODY_BYTES" in body, body


def test_streamed_body_is_counted_and_stopped_at_the_cap(capped: Served) -> None:
    # Chunked: no length to check up front; the server stops reading past the cap.
    status, headers, body = send_partial(capped, "PUT", PUSH, declared=None, send=320 * 1024,
                                         headers=AUTH)
    assert status == 413, body
    assert headers.get("connection") == "close"
    status, _, body = send_partial(capped, "POST", "/api/v1/archives", declared=None,
                                   send=2 * MiB + 65536,
                                   headers={**AUTH, "Content-Type": "application/x-tar"})
    assert status == 413, body
    # Under the caps, the same routes answer as before (here: a manifest that is not YAML).
    with httpx.Client(base_url=capped.url, headers=AUTH, timeout=ANSWER_S) as c:
        r = c.put(PUSH, json={"manifest": "[" * 10})
        assert r.status_code == 422, r.text


def dashboard_login(c: httpx.Client, token: str = ADMIN) -> str:
    """Log a client in to the dashboard with a token; the session's CSRF token."""
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)[1]  # type: ignore[index]
    r = c.post("/ui/login", data={"csrf": csrf, "method": "token", "token": token})
    assert r.status_code == 303, r.text
    return re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/push").text)[1]  # type: ignore[index]


def test_dashboard_upload_is_capped(capped: Served) -> None:
    with httpx.Client(base_url=capped.url, timeout=ANSWER_S) as c:
        csrf = dashboard_login(c)
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    hdrs = {"Cookie": cookie, "X-CSRF-Token": csrf, "Content-Type": "application/x-tar"}
    status, _, body = send_partial(capped, "POST", "/ui/push", declared=3 * MiB, send=1024,
                                   headers=hdrs)
    assert status == 413, body
    status, _, body = send_partial(capped, "POST", "/ui/push", declared=None,
                                   send=2 * MiB + 65536, headers=hdrs)
    assert status == 413, body
    assert b"MAX_UPLOAD_BYTES" in body


# --- YAML: aliases and depth (item 6) ---------------------------------------------------

def _model_yaml(extra: str) -> str:
    m = ModelManifest(name="m", version="v1", created_at=utcnow(), framework="torch",
                      format="torch.state_dict")
    return m.dump().decode() + extra


def _alias_bomb(levels: int = 7) -> str:
    lines = ["metadata:", '  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*l{i - 1}"] * 8)
        lines.append(f"  l{i}: &l{i} [{refs}]")
    return "\n".join(lines) + "\n"


def _nested(depth: int) -> str:
    return "metadata:\n  deep: " + "[" * depth + "]" * depth + "\n"


def test_manifest_parser_refuses_aliases_and_deep_nesting() -> None:
    bomb = _model_yaml(_alias_bomb())
    assert len(bomb) < 2048
    with pytest.raises(InvalidBundle, match="alias"):
        parse_manifest(bomb.encode(), "model.yaml", ModelManifest)
    with pytest.raises(InvalidBundle, match=f"more than {safeyaml.MAX_DEPTH} levels"):
        parse_manifest(_model_yaml(_nested(900)).encode(), "model.yaml", ModelManifest)
    # Within the limit, metadata nests as before.
    m = parse_manifest(_model_yaml(_nested(safeyaml.MAX_DEPTH - 3)).encode(), "model.yaml",
                       ModelManifest)
    assert m.metadata["deep"] == functools.reduce(lambda acc, _: [acc],
                                                  range(safeyaml.MAX_DEPTH - 4), [])


@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-s3"])
def test_pushed_alias_bombs_and_deep_manifests_are_4xx(registry: Served) -> None:
    url = "/api/v1/models/m/versions/v1"
    with httpx.Client(base_url=registry.url, headers=AUTH, timeout=ANSWER_S) as c:
        r = c.put(url, json={"manifest": _model_yaml(_alias_bomb())})
        assert r.status_code == 422 and "alias" in r.json()["detail"], r.text
        r = c.put(url, json={"manifest": _model_yaml(_nested(900))})
        assert r.status_code == 422 and "levels deep" in r.json()["detail"], r.text
        r = c.put(url, json={"manifest": _model_yaml(_nested(20))})
        assert r.status_code == 201, r.text


# --- brute force (item 12) --------------------------------------------------------------

def test_failure_limiter_counts_failures_per_key_in_a_sliding_window() -> None:
    now = [1000.0]
    lim = FailureLimiter(3, 60, max_keys=4, clock=lambda: now[0])
    for _ in range(3):
        assert lim.retry_after("addr:a") == 0
        lim.failed("addr:a", "user:bob")
    assert lim.retry_after("addr:a") == 60
    assert lim.retry_after("user:bob") == 60
    assert lim.retry_after("addr:b") == 0  # other keys are not affected
    assert lim.retry_after("addr:b", "user:bob") == 60  # any locked key locks the attempt
    now[0] += 59.5
    assert lim.retry_after("addr:a") == 1
    now[0] += 1
    assert lim.retry_after("addr:a") == 0  # the oldest failures left the window
    for key in "cdefg":  # a spray of addresses keeps at most max_keys in memory
        lim.failed(f"addr:{key}")
    assert len(lim._failures) <= 4
    assert FailureLimiter(0, 60).retry_after("x") == 0  # 0 disables the limit


@pytest.fixture(params=["sqlite-local", "postgres-s3"])
def strict(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A registry that allows 5 failures in 10 minutes, on both backends."""
    db, storage = request.param.split("-")
    db_url = request.getfixturevalue("pg_url") if db == "postgres" else "sqlite"
    moto = request.getfixturevalue("moto_endpoint") if storage == "s3" else None
    served = serve(make_settings(tmp_path, db_url, storage, moto, auth_max_failures=5,
                                 auth_failure_window_s=600))
    yield served
    served.stop()


def test_failed_token_checks_are_limited_but_valid_tokens_are_not(strict: Served) -> None:
    with httpx.Client(base_url=strict.url, timeout=ANSWER_S) as c:
        # Many requests with a valid token, and without any token, never count.
        for _ in range(30):
            assert c.get("/api/v1/bentos", headers=AUTH).status_code == 200
            assert c.get("/api/v1/bentos").status_code == 401
        bad = {"Authorization": "Bearer jbk_not-a-real-token-0000000000"}
        codes = [c.get("/api/v1/bentos", headers=bad).status_code for _ in range(5)]
        assert codes == [401] * 5
        r = c.get("/api/v1/bentos", headers=bad)
        assert r.status_code == 429, r.text
        assert 0 < int(r.headers["retry-after"]) <= 600
        # Locked out, a right guess must not be told apart from a wrong one.
        assert c.get("/api/v1/bentos", headers=AUTH).status_code == 429
        # Bodies too: refused before they are read.
        assert c.put(PUSH, headers=AUTH, json={"manifest": "x"}).status_code == 429


def test_failed_dashboard_logins_are_limited_and_audited(strict: Served) -> None:
    with httpx.Client(base_url=strict.url, timeout=ANSWER_S) as c:
        r = c.post("/api/v1/tokens", headers=AUTH, json={"scope": "read"})
        assert r.status_code == 201
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)[1]  # type: ignore[index]
        form = {"csrf": csrf, "method": "password", "user": "alice", "password": "wrong-password"}
        codes = [c.post("/ui/login", data=form).status_code for _ in range(5)]
        assert codes == [401] * 5
        r = c.post("/ui/login", data=form)
        assert r.status_code == 429 and "Too many failed logins" in r.text
        assert int(r.headers["retry-after"]) > 0
        events = c.get("/api/v1/audit", params={"action": "dashboard.login.failed"},
                       headers=AUTH)
    # The admin token is locked out too (same address): read the audit log from the database.
    assert events.status_code == 429
    from jubako.registry.db.models import AuditEvent
    from sqlalchemy import select

    with strict.app.state.registry.sessions() as db:  # type: ignore[attr-defined]
        rows = list(db.scalars(select(AuditEvent).where(
            AuditEvent.action == "dashboard.login.failed")))
    assert len(rows) == 5
    assert {(e.actor, e.target, e.detail["method"]) for e in rows} == {
        ("alice", "user alice", "password")}
    assert all(e.client == "127.0.0.1" for e in rows)


@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-local"])
def test_nul_in_a_login_name_is_a_failed_login(registry: Served) -> None:
    with httpx.Client(base_url=registry.url, timeout=ANSWER_S) as c:
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)[1]  # type: ignore[index]
        form = {"csrf": csrf, "method": "password", "user": "al\x00ice", "password": "x" * 8}
        r = c.post("/ui/login", data=form)
        assert r.status_code == 401, r.text


@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-local"])
def test_deeply_nested_deployment_status_is_refused_not_stored(registry: Served) -> None:
    # Stored, a 900-level status made every later listing of deployments a 500.
    deep = '{"a":' * 900 + "1" + "}" * 900
    with httpx.Client(base_url=registry.url, headers=AUTH, timeout=ANSWER_S) as c:
        r = c.put("/api/v1/deployments/ns/d", content=f'{{"bento": "x:v1", "status": {deep}}}',
                  headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "levels deep" in r.text, r.text[:300]
        r = c.get("/api/v1/deployments")
        assert r.status_code == 200 and r.json() == []
        ok = {"conditions": [{"type": "Ready", "status": "True", "detail": {"a": {"b": [1]}}}]}
        r = c.put("/api/v1/deployments/ns/d", json={"bento": "x:v1", "status": ok})
        assert r.status_code == 200 and r.json()["status"] == ok


def test_dashboard_forms_are_capped_smaller_than_uploads(capped: Served) -> None:
    # Anonymous form posts (the login page) are read before any session exists: kept small.
    status, _, body = send_partial(capped, "POST", "/ui/login", declared=200 * 1024, send=1024,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413, body
    status, _, body = send_partial(capped, "POST", "/ui/login", declared=None, send=128 * 1024,
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413, body


def test_a_refusal_reaches_a_client_still_sending_its_body(capped: Served) -> None:
    """The gate answers 413/401 from the headers while the body is still coming, and the
    connection closes: the client, still sending, must be able to read the answer (the
    runtime's own server lost such answers to the reset a close with unread bytes sends;
    runtime/http.py's lingering close). uvicorn reads what arrives until it closes, so
    here only bytes arriving between its last read and its close could be unread: this
    passes on every run on this machine (the test above failed once in CI that way)."""
    for headers, size, status in ((AUTH, 16 * MiB, 413), ({}, 200 * 1024, 401)):
        for _ in range(5):
            sock, head = _request_head(capped, "PUT", PUSH, {"Content-Type": "application/json",
                                                             "Content-Length": str(size), **headers})
            with sock:
                try:
                    sock.sendall(head + b"x" * size)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server answered and stopped reading: what we read next says why
                time.sleep(0.2)  # the answer is out, and the rest of our bytes reached the server
                assert _answer(sock)[0] == status
