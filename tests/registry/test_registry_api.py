"""The REST API: validation, listing, labels, deletion, deployments, tokens, audit."""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

import httpx
import pytest

from jubako.client.pull import pull
from jubako.client.push import push, push_bundle
from jubako.client.registry import ConflictError
from jubako.store import Store

from .conftest import ADMIN
from .factories import make_bento, make_model

V1 = "/api/v1"


def api(served, token: str | None = ADMIN) -> httpx.Client:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=served.url, headers=headers, timeout=30)


def new_token(served, scope: str) -> str:  # type: ignore[no-untyped-def]
    with api(served) as c:
        r = c.post(f"{V1}/tokens", json={"scope": scope, "user": f"u-{scope}"})
        assert r.status_code == 201, r.text
        return r.json()["token"]


@pytest.fixture
def src(tmp_path: Path) -> Store:
    return Store(tmp_path / "src")


def _model_yaml(name: str = "m", version: str = "v1", path: str = "w.bin") -> str:
    return (
        f"name: {name}\nversion: {version}\ncreated_at: '2024-01-01T00:00:00Z'\n"
        "framework: torch\nformat: torch.state_dict\n"
        f"files:\n- path: {path}\n  size: 3\n  sha256: {'a' * 64}\n"
    )


@pytest.mark.parametrize(
    ("manifest", "fragment"),
    [
        ("{not yaml", "not valid YAML"),
        ("- a list", "mapping"),
        (_model_yaml().replace("framework: torch\n", ""), "framework"),
        (_model_yaml() + "surprise: 1\n", "surprise"),
        (_model_yaml(name="other"), "other:v1"),
        (_model_yaml(path="../escape"), "unsafe path"),
        (_model_yaml(path="/abs"), "unsafe path"),
        (_model_yaml(path="model.yaml"), "manifest itself"),
        (_model_yaml().replace("size: 3", "size: -1"), "size"),
        (_model_yaml().replace("a" * 64, "xyz"), "sha256"),
        (_model_yaml() + "schema_version: 99\n", "schema_version"),
    ],
)
def test_malformed_manifests_are_refused(local_registry, manifest: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with api(local_registry) as c:
        r = c.put(f"{V1}/models/m/versions/v1", json={"manifest": manifest})
    assert r.status_code == 422, r.text
    assert fragment in r.json()["detail"]


def test_bad_names_and_bodies(local_registry) -> None:  # type: ignore[no-untyped-def]
    with api(local_registry) as c:
        assert c.put(f"{V1}/models/Bad_Name/versions/v1", json={"manifest": "x"}).status_code == 422
        assert (
            c.put(
                f"{V1}/models/m/versions/latest", json={"manifest": _model_yaml(version="latest")}
            ).status_code
            == 400
        )
        assert c.put(f"{V1}/models/m/versions/v1", content=b"junk").status_code == 422
        assert c.get(f"{V1}/bentos/nope/versions/latest").status_code == 404
        assert c.get(f"{V1}/bentos", params={"cursor": "garbage"}).status_code == 400
        assert c.get(f"{V1}/bentos", params={"selector": "a=b,,=x"}).status_code == 400


def test_bento_needs_its_models_first(local_registry, src: Store) -> None:  # type: ignore[no-untyped-def]
    model = make_model(src, "m", "v1")
    bento = make_bento(src, "b", "v1", [model])
    with local_registry.client() as c:
        with pytest.raises(Exception, match="push it first"):
            push_bundle(c, "bento", bento)


def test_wrong_bytes_and_digests_are_refused(local_registry, src: Store) -> None:  # type: ignore[no-untyped-def]
    model = make_model(src, "m", "v1", {"w.bin": b"good bytes"})
    text = model.manifest.dump().decode()
    digest = model.manifest.files[0].sha256
    with api(local_registry) as c:
        r = c.put(f"{V1}/models/m/versions/v1", json={"manifest": text})
        assert r.status_code == 201
        up = r.json()["upload"]
        uid = up["id"]
        part = f"{V1}/uploads/{uid}/blobs/{digest}/parts/1"
        assert c.put(part, content=b"short").status_code == 400  # wrong size
        assert c.put(part, content=b"much too long bytes").status_code == 400
        assert c.put(f"{V1}/uploads/{uid}/blobs/{digest}/parts/2", content=b"x").status_code == 400
        assert (
            c.put(f"{V1}/uploads/{uid}/blobs/{'0' * 64}/parts/1", content=b"x").status_code == 404
        )
        assert c.put(part, content=b"evil bytes").status_code == 200  # right size, wrong content
        r = c.post(f"{V1}/uploads/{uid}/blobs/{digest}/complete")
        assert r.status_code == 422 and "sha256" in r.json()["detail"]
        # Completing the version before its blob is verified: refused, not ready.
        r = c.post(f"{V1}/uploads/{uid}/complete", json={"digest": model.manifest.digest()})
        assert r.status_code == 409
        assert c.get(f"{V1}/models/m/versions/v1").json()["state"] == "uploading"
        # The right bytes, then a wrong manifest digest, then the right one.
        assert c.put(part, content=b"good bytes").status_code == 200
        assert c.post(f"{V1}/uploads/{uid}/blobs/{digest}/complete").status_code == 200
        r = c.post(f"{V1}/uploads/{uid}/complete", json={"digest": "sha256:" + "0" * 64})
        assert r.status_code == 422
        r = c.post(f"{V1}/uploads/{uid}/complete", json={"digest": model.manifest.digest()})
        assert r.status_code == 200 and r.json()["state"] == "ready"
        assert c.get(f"{V1}/uploads/{uid}").status_code == 404


def test_ready_version_is_immutable(local_registry, src: Store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_model(src, "m", "v1", {"w.bin": b"one"})
    other = Store(tmp_path / "other")
    make_model(other, "m", "v1", {"w.bin": b"two"})
    with local_registry.client() as c:
        push(c, "m:v1", store=src, kind="model")
        with pytest.raises(ConflictError, match="different content"):
            push(c, "m:v1", store=other, kind="model")
        replaced = push(c, "m:v1", store=other, kind="model", force=True)
        assert replaced[0].state == "ready"
        assert (
            c.get_version("model", "m", "v1")["digest"]
            == other.models.get("m:v1").manifest.digest()
        )


def test_concurrent_pushes_of_one_tag(local_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stores = []
    for i in range(4):
        s = Store(tmp_path / f"s{i}")
        make_model(s, "m", "v1", {"w.bin": os.urandom(6 << 20)})
        stores.append(s)

    def one(s: Store) -> str:
        with local_registry.client() as c:
            try:
                return push(c, "m:v1", store=s, kind="model")[0].digest
            except ConflictError:
                return "conflict"

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, stores))
    winners = [r for r in results if r != "conflict"]
    assert len(set(winners)) == 1, results
    with local_registry.client() as c:
        info = c.get_version("model", "m", "v1")
        assert info["state"] == "ready" and info["digest"] == winners[0]
        out = pull(c, "m:v1", kind="model", store=Store(tmp_path / "dst"))
        assert out[0].digest == winners[0]


def test_listing_filters_sorting_and_cursors(local_registry, src: Store) -> None:  # type: ignore[no-untyped-def]
    with local_registry.client() as c:
        for i in range(7):
            make_model(
                src,
                f"m{i % 3}",
                f"v{i}",
                {"f": str(i).encode()},
                labels={"team": "a" if i % 2 else "b"},
            )
            push(c, f"m{i % 3}:v{i}", store=src, kind="model")
        make_model(src, "zz", "v0", {"f": b"z"})
    with api(local_registry) as c:
        r = c.put(
            f"{V1}/models/zz/versions/v0",
            json={"manifest": src.models.get("zz:v0").manifest.dump().decode()},
        )
        assert r.status_code == 201
        seen, cursor = [], None
        while True:
            page = c.get(
                f"{V1}/models",
                params={"limit": 3, "state": "ready", **({"cursor": cursor} if cursor else {})},
            ).json()
            seen += [it["tag"] for it in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 7 == len(set(seen))
        assert (
            c.get(f"{V1}/models", params={"state": "uploading"}).json()["items"][0]["tag"]
            == "zz:v0"
        )
        names = [
            it["name"] for it in c.get(f"{V1}/models", params={"sort": "name"}).json()["items"]
        ]
        assert names == sorted(names)
        teams = c.get(f"{V1}/models", params={"selector": "team=a"}).json()["items"]
        assert {it["version"] for it in teams} == {"v1", "v3", "v5"}
        assert len(c.get(f"{V1}/models", params={"selector": "team!=a,team"}).json()["items"]) == 4
        assert len(c.get(f"{V1}/models", params={"selector": "!team"}).json()["items"]) == 1
        assert len(c.get(f"{V1}/models", params={"prefix": "m1"}).json()["items"]) == 2
        assert len(c.get(f"{V1}/models/m0/versions").json()["items"]) == 3
        latest = c.get(f"{V1}/models/m0/versions/latest").json()
        assert latest["version"] == "v6"
        # Labels can change.
        r = c.patch(f"{V1}/models/m0/versions/v6", json={"labels": {"team": None, "stage": "prod"}})
        assert r.json()["labels"] == {"stage": "prod"}
        man = c.get(f"{V1}/models/m0/versions/v6/manifest")
        assert man.headers["x-jubako-digest"] == latest["digest"]


def test_in_use_delete_is_refused_and_blobs_are_collected(local_registry, src: Store) -> None:  # type: ignore[no-untyped-def]
    model = make_model(src, "m", "v1", {"w.bin": b"weights"})
    make_bento(src, "b", "v1", [model], files={"src/a.py": b"a"})
    write = new_token(local_registry, "write")
    blobs = local_registry.settings.blob_dir / "sha256"
    with local_registry.client() as c:
        push(c, "b:v1", store=src)
        c.report_deployment("ns", "dep", "b:v1", cluster="c1", status={"ready": 1})
    with api(local_registry) as c, api(local_registry, write) as w:
        deps = c.get(f"{V1}/deployments").json()
        assert deps[0]["bento"] == "b:v1" and deps[0]["namespace"] == "ns"
        assert c.get(f"{V1}/bentos/b/versions/v1").json()["used_by"] == ["deployment ns/dep"]
        r = w.delete(f"{V1}/bentos/b/versions/v1")
        assert r.status_code == 409 and r.json()["used_by"] == ["deployment ns/dep"]
        assert w.delete(f"{V1}/bentos/b/versions/v1", params={"force": True}).status_code == 403
        r = w.delete(f"{V1}/models/m/versions/v1")
        assert r.status_code == 409 and "bento b:v1" in r.json()["detail"]
        assert w.delete(f"{V1}/deployments/ns/dep").status_code == 204
        assert w.delete(f"{V1}/bentos/b/versions/v1").status_code == 204
        assert len([p for p in blobs.rglob("*") if p.is_file()]) == 1  # only the model's
        assert w.delete(f"{V1}/models/m/versions/v1").status_code == 204
        assert [p for p in blobs.rglob("*") if p.is_file()] == []
        assert c.get(f"{V1}/bentos/b/versions/v1").status_code == 404
        actions = [e["action"] for e in c.get(f"{V1}/audit").json()["items"]]
        assert {
            "bento.delete",
            "model.delete",
            "deployment.report",
            "deployment.clear",
            "bento.ready",
        } <= set(actions)
        ev = next(e for e in c.get(f"{V1}/audit").json()["items"] if e["action"] == "bento.delete")
        assert ev["actor"] == "u-write" and ev["token_id"] and ev["client"] == "127.0.0.1"


def test_tokens(local_registry) -> None:  # type: ignore[no-untyped-def]
    with api(local_registry) as c:
        r = c.post(
            f"{V1}/tokens",
            json={"scope": "read", "user": "ci", "name": "pipeline", "expires_in_days": 1},
        )
        created = r.json()
        assert created["token"].startswith("jbk_") and created["expires_at"]
        listed = c.get(f"{V1}/tokens").json()
        assert all("token" not in t for t in listed)
        assert any(t["prefix"] == created["token"][:12] for t in listed)
        with api(local_registry, created["token"]) as reader:
            me = reader.get(f"{V1}/tokens/self").json()
            assert me["user"] == "ci" and me["scope"] == "read" and me["last_used_at"]
            assert reader.get(f"{V1}/tokens").status_code == 403
            assert c.delete(f"{V1}/tokens/{created['id']}").status_code == 204
            assert reader.get(f"{V1}/bentos").status_code == 401
        assert c.post(f"{V1}/tokens", json={"scope": "root"}).status_code == 422


def test_probes_and_metrics(local_registry) -> None:  # type: ignore[no-untyped-def]
    with api(local_registry, None) as c:
        assert c.get("/livez").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"database": "ok", "storage": "ok"}
        c.get(f"{V1}/bentos")
        text = c.get("/metrics").text
        assert (
            'jubako_registry_requests_total{method="GET",route="/api/v1/bentos",status="401"}'
            in text
        )
        assert c.get("/docs").status_code == 200
        assert "/api/v1/bentos/{name}/versions/{version}" in c.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_archive_download_imports(
    local_registry, src: Store, tmp_path: Path, compression: str
) -> None:  # type: ignore[no-untyped-def]
    import io

    from jubako.archive import import_archive

    model = make_model(src, "m", "v1", {"w.bin": 70_000, "cfg.json": b"{}"})
    bento = make_bento(src, "b", "v1", [model])
    with local_registry.client() as c:
        push(c, "b:v1", store=src)
    with api(local_registry) as c:
        r = c.get(f"{V1}/bentos/b/versions/v1/archive", params={"compression": compression})
        assert r.status_code == 200, r.text
    dst = Store(tmp_path / f"dst-{compression}")
    imported = import_archive(io.BytesIO(r.content), store=dst)
    assert imported.bundle.manifest.digest() == bento.manifest.digest()
    assert dst.models.get("m:v1").manifest.digest() == model.manifest.digest()
