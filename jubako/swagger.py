"""Where the Swagger UI assets live, for the registry's and the runtime's ``/docs``.

Served locally: registries and GPU nodes often have no internet, so no CDN. Both schemas
are OpenAPI 3.1, which Swagger UI renders from version 5 on, shipped by ``fastapi-offline``;
``swagger-ui-bundle`` (Swagger UI 4) is a fallback that loads but cannot render 3.1.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def assets() -> tuple[Path, str] | None:
    """(folder holding swagger-ui-bundle.js and swagger-ui.css, favicon file name), or None."""
    offline = _package_dir("fastapi_offline")
    if offline is not None and (offline / "static" / "swagger-ui-bundle.js").is_file():
        return offline / "static", "favicon.png"
    bundle = _package_dir("swagger_ui_bundle")
    if bundle is not None:
        import swagger_ui_bundle

        path = Path(swagger_ui_bundle.swagger_ui_path)
        if (path / "swagger-ui-bundle.js").is_file():
            return path, "favicon-32x32.png"
    return None
