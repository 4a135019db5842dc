"""OpenAPI 3.1 from the bento manifest, and Swagger UI at ``/docs`` served locally.

The Swagger UI assets are served locally (``jubako.swagger``: no CDN is reachable where pods
run); without them ``/docs`` still lists the APIs and links the schema at ``/openapi.json``.
"""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path
from typing import Any

import orjson

from jubako import swagger
from jubako.manifest import BentoManifest, BytesSpec, JSONSpec, TensorSpec, TextSpec

STATIC = "/docs/static/"


def _tensor_schema(spec: TensorSpec) -> dict[str, Any]:
    kind = "integer" if spec.dtype.startswith(("int", "uint")) else "boolean" if spec.dtype == "bool" else "number"
    schema: dict[str, Any] = {"type": kind, "format": spec.dtype}
    for dim in reversed(spec.shape):
        schema = {"type": "array", "items": schema}
        if dim is not None:
            schema["minItems"] = schema["maxItems"] = dim
    schema["description"] = f"{spec.dtype} tensor of shape ({', '.join('n' if d is None else str(d) for d in spec.shape)})"
    return schema


def _hoist(schema: Any, defs: dict[str, Any]) -> Any:
    """Move pydantic's ``$defs`` into components and point ``$ref`` there."""
    if isinstance(schema, dict):
        for name, sub in schema.pop("$defs", {}).items():
            defs[name] = _hoist(sub, defs)
        return {
            k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str) else _hoist(v, defs))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_hoist(v, defs) for v in schema]
    return schema


def _content(spec: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if isinstance(spec, TensorSpec):
        return {"application/json": {"schema": _tensor_schema(spec)}}
    if isinstance(spec, JSONSpec):
        return {"application/json": {"schema": _hoist(dict(spec.json_schema), defs)}}
    if isinstance(spec, TextSpec):
        return {"text/plain": {"schema": {"type": "string"}}}
    assert isinstance(spec, BytesSpec)
    return {spec.content_type: {"schema": {"type": "string", "format": "binary"}}}


def openapi(manifest: BentoManifest) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for api in manifest.apis:
        desc = api.doc
        if api.batchable and api.batching:
            desc += (
                f"\n\nBatchable: up to {api.batching.max_batch_size} items per batch, latency budget"
                f" {api.batching.max_latency_ms:g} ms (header `x-jubako-deadline-ms` may shorten it)."
            )
        paths[api.route] = {
            "post": {
                "operationId": api.name,
                "summary": api.doc.splitlines()[0] if api.doc else api.name,
                "description": desc.strip(),
                "requestBody": {"required": True, "content": _content(api.input, defs)},
                "responses": {
                    "200": {"description": "OK", "content": _content(api.output, defs)},
                    "400": {"description": "Malformed body", "content": error},
                    "422": {"description": "Invalid input; the message names the field", "content": error},
                    "503": {"description": "Overloaded or no worker ready; see Retry-After", "content": error},
                },
            }
        }
    defs["Error"] = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
    return {
        "openapi": "3.1.0",
        "info": {"title": manifest.name, "version": manifest.version, "description": manifest.description},
        "paths": paths,
        "components": {"schemas": defs},
    }


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{root}/docs/static/swagger-ui.css"></head><body><div id="ui"></div>
<script src="{root}/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "{root}/openapi.json", dom_id: "#ui"}});</script></body></html>"""

_PLAIN = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head><body>
<h1>{title}</h1><p>Swagger UI is not installed here (pip install fastapi-offline); the schema is at
<a href="{root}/openapi.json">{root}/openapi.json</a>.</p><ul>{items}</ul></body></html>"""


def _assets() -> Path | None:
    found = swagger.assets()
    return found[0] if found else None


class Docs:
    def __init__(self, manifest: BentoManifest, root: str = ""):
        """``root``: the path prefix the proxy is reached under (JUBAKO_ROOT_PATH)."""
        spec = openapi(manifest)
        if root:
            spec["servers"] = [{"url": root}]
        self.schema = orjson.dumps(spec)
        root = html.escape(root)
        self.assets = _assets()
        title = html.escape(f"{manifest.name} {manifest.version}")
        if self.assets is not None:
            self.page = _PAGE.format(title=title, root=root).encode()
        else:
            items = "".join(f"<li>POST {html.escape(a.route)}: {html.escape(a.doc)}</li>" for a in manifest.apis)
            self.page = _PLAIN.format(title=title, items=items, root=root).encode()

    def get(self, path: str) -> tuple[bytes, bytes] | None:
        if path in ("/docs", "/docs/", "/"):
            return self.page, b"text/html; charset=utf-8"
        if path == "/openapi.json":
            return self.schema, b"application/json"
        if path.startswith(STATIC) and self.assets is not None:
            name = path[len(STATIC):]
            if "/" in name or name.startswith(".") or not name:
                return None
            file = self.assets / name
            if file.is_file():
                ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
                return file.read_bytes(), ctype.encode()
        return None
