"""Bentos and models: ``/api/v1/bentos/...`` and ``/api/v1/models/...`` (one router each)."""

from typing import Annotated

import yaml
from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import StreamingResponse

from jubako.tags import NAME_PATTERN, VERSION_PATTERN

from ...domain import blobs, queries, versions
from ...errors import Forbidden
from .. import API_PREFIX
from ..deps import ReadCaller, RegistryDep, SessionDep, WriteCaller
from ..presenters import download_out, json_response, upload_out, version_out
from ..schemas import (
    DownloadOut,
    LabelsPatch,
    PushOut,
    State,
    VersionDetail,
    VersionOut,
    VersionPage,
    VersionPush,
)

NAME_RE = f"^{NAME_PATTERN}$"
VERSION_RE = f"^(?:{VERSION_PATTERN})$"
NameP = Annotated[str, Path(pattern=NAME_RE, max_length=63)]
VersionP = Annotated[str, Path(pattern=VERSION_RE, max_length=63)]
Prefix = Annotated[str, Query(max_length=63, description="Name prefix")]
Selector = Annotated[str, Query(max_length=1024, description="Label selector: a=b,c!=d,e,!f")]
Sort = Annotated[
    str, Query(pattern="^-?(created_at|name)$", description="created_at, name; - reverses")
]
Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=512)]


def make_router(kind: str) -> APIRouter:
    plural = f"{kind}s"
    router = APIRouter(prefix=f"{API_PREFIX}/{plural}", tags=[plural])

    def list_query(
        db: SessionDep,
        name: str | None,
        prefix: str,
        selector: str,
        state: State | None,
        sort: str,
        limit: int,
        cursor: str | None,
    ) -> VersionPage:
        page = queries.list_versions(
            db,
            kind,
            name=name,
            prefix=prefix,
            selector=selector,
            state=state,
            sort=sort,
            limit=limit,
            cursor=cursor,
        )
        return VersionPage(
            items=[version_out(v) for v in page.rows], next_cursor=page.next_cursor
        )

    @router.get("", response_model=VersionPage, summary=f"List {kind} versions of every name")
    def list_all(
        db: SessionDep,
        _: ReadCaller,
        prefix: Prefix = "",
        selector: Selector = "",
        state: State | None = None,
        sort: Sort = "-created_at",
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> VersionPage:
        return list_query(db, None, prefix, selector, state, sort, limit, cursor)

    @router.get("/{name}/versions", response_model=VersionPage, summary=f"List a {kind}'s versions")
    def list_versions(
        name: NameP,
        db: SessionDep,
        _: ReadCaller,
        selector: Selector = "",
        state: State | None = None,
        sort: Sort = "-created_at",
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> VersionPage:
        return list_query(db, name, "", selector, state, sort, limit, cursor)

    @router.get(
        "/{name}/versions/{version}",
        response_model=VersionDetail,
        summary=f"A {kind} version with its manifest ('latest': the newest ready one)",
    )
    def get_version(name: NameP, version: VersionP, db: SessionDep, _: ReadCaller) -> VersionDetail:
        v = queries.get_version(db, kind, name, version)
        return VersionDetail(
            **version_out(v).model_dump(),
            manifest=yaml.safe_load(v.manifest),
            used_by=queries.used_by(db, v),
        )

    @router.get(
        "/{name}/versions/{version}/manifest",
        response_class=Response,
        responses={200: {"content": {"application/yaml": {}}}},
        summary="The manifest bytes (their sha256 is the version's digest)",
    )
    def get_manifest(name: NameP, version: VersionP, db: SessionDep, _: ReadCaller) -> Response:
        v = queries.get_version(db, kind, name, version)
        return Response(
            v.manifest.encode(),
            media_type="application/yaml",
            headers={"X-Jubako-Digest": v.digest, "X-Jubako-Version": v.version},
        )

    @router.get(
        "/{name}/versions/{version}/download",
        response_model=DownloadOut,
        summary="Where to fetch each file (presigned S3 URLs or registry blob URLs)",
    )
    def download(
        name: NameP,
        version: VersionP,
        reg: RegistryDep,
        db: SessionDep,
        _: ReadCaller,
        presigned: bool = True,
    ) -> DownloadOut:
        v = queries.get_version(db, kind, name, version, ready=True)
        return download_out(reg, v, queries.blobs_of(db, v), queries.version_files(db, v), presigned)

    @router.put(
        "/{name}/versions/{version}",
        response_model=PushOut,
        status_code=200,
        responses={201: {"model": PushOut}, 409: {}, 422: {}},
        summary=f"Start pushing a {kind} version: answers the blobs to upload",
    )
    def push(
        name: NameP,
        version: VersionP,
        body: VersionPush,
        reg: RegistryDep,
        db: SessionDep,
        caller: WriteCaller,
    ) -> Response:
        if len(body.manifest) > reg.settings.max_manifest_bytes:
            from jubako.errors import InvalidBundle

            raise InvalidBundle("manifest too large")
        res = versions.create_version(
            db,
            reg.storage,
            caller,
            kind,
            name,
            version,
            body.manifest,
            labels=body.labels,
            force=body.force,
            part_size=reg.settings.part_size,
            upload_timeout_s=reg.settings.upload_timeout_s,
            max_files=reg.settings.max_files,
            max_blob_bytes=reg.settings.max_blob_bytes,
        )
        db.commit()
        up = upload_out(reg, db, res.upload, res.missing) if res.upload else None
        v = version_out(res.version).model_dump(mode="json")
        return json_response(
            {"version": v, "created": res.created, "upload": up}, 201 if res.created else 200
        )

    @router.patch("/{name}/versions/{version}", response_model=VersionOut, summary="Change labels")
    def patch(
        name: NameP, version: VersionP, body: LabelsPatch, db: SessionDep, caller: WriteCaller
    ) -> VersionOut:
        v = queries.get_version(db, kind, name, version)
        versions.update_labels(db, caller, v, body.labels)
        db.commit()
        return version_out(v)

    @router.delete(
        "/{name}/versions/{version}",
        status_code=204,
        responses={409: {"description": "In use (force needs the admin scope)"}},
        summary="Delete a version; its unreferenced blobs are collected",
    )
    def delete(
        name: NameP,
        version: VersionP,
        reg: RegistryDep,
        db: SessionDep,
        caller: WriteCaller,
        force: bool = False,
    ) -> Response:
        v = queries.get_version(db, kind, name, version)
        if force and caller.scope != "admin":
            raise Forbidden("deleting with force needs the admin scope")
        gone = versions.delete_version(db, reg.storage, caller, v, force=force)
        db.commit()
        blobs.delete_objects(reg.storage, gone.blob_keys)
        return Response(status_code=204)

    @router.get(
        "/{name}/versions/{version}/archive",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-tar": {}}}},
        summary=(
            "The bento and its models as one tar stream (self-contained layout)"
            if kind == "bento"
            else "The model as one tar stream (model.yaml first)"
        ),
    )
    def archive(
        name: NameP,
        version: VersionP,
        reg: RegistryDep,
        db: SessionDep,
        _: ReadCaller,
        compression: Annotated[str, Query(pattern="^(none|gzip|zstd)$")] = "none",
    ) -> StreamingResponse:
        from ..archives import archive_response

        v = queries.get_version(db, kind, name, version, ready=True)
        return archive_response(reg, db, v, compression)

    return router
