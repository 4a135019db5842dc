"""The Gateway API's HTTPRoute CRD (standard channel, v1.6.1, v1 only, descriptions stripped;
from kubernetes-sigs/gateway-api config/crd/standard/gateway.networking.k8s.io_httproutes.yaml):
installed in the emulator when a test wants a cluster with the Gateway API, and used to
validate rendered HTTPRoutes strictly (unknown fields refused, as `kubectl apply` does)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema

CRD_PATH = Path(__file__).with_name("schemas") / "gateway-httproute-v1.6.1.json"


def httproute_crd() -> dict[str, Any]:
    return json.loads(CRD_PATH.read_text())


def _strict(schema: Any) -> Any:
    """Structural schema -> JSON Schema that refuses unknown fields (what a server prunes
    or, with strict field validation, refuses)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def validate_httproute(route: dict[str, Any]) -> None:
    (version,) = httproute_crd()["spec"]["versions"]
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    schema["properties"]["metadata"] = {"type": "object"}
    jsonschema.validate(route, schema, cls=jsonschema.Draft7Validator)
