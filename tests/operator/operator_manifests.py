"""Helpers shared by the operator's tests: the CRD, its schema, and manifest validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "bentodeployment.yaml"
EXAMPLES = sorted((ROOT / "examples" / "deployments").glob("*.yaml"))
# The oldest Kubernetes we support and the newest the validator knows.
KUBE_VERSIONS = ["1.29", kubernetes_validate.latest_version()]


def load_crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


def cr_schema() -> dict[str, Any]:
    """The openAPIV3Schema of v1alpha1 as JSON Schema (x-kubernetes-* keys are ignored)."""
    return copy.deepcopy(load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def validate_cr(cr: dict[str, Any]) -> None:
    jsonschema.validate(cr, cr_schema(), cls=jsonschema.Draft7Validator)


def validate_k8s(manifest: dict[str, Any]) -> None:
    """Strict: unknown fields fail too. Raises kubernetes_validate.ValidationError."""
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


def load_examples() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in EXAMPLES]


def cel_errors(cr: dict[str, Any]) -> list[str]:
    """Messages of every CEL rule (x-kubernetes-validations) of the CRD that `cr` breaks,
    evaluated with cel-python at each node of the object, as the API server does."""
    import celpy

    env = celpy.Environment()
    errors: list[str] = []

    def walk(schema: dict[str, Any], value: Any) -> None:
        for rule in schema.get("x-kubernetes-validations", []):
            if not env.program(env.compile(rule["rule"])).evaluate({"self": celpy.json_to_cel(value)}):
                errors.append(rule["message"])
        if isinstance(value, dict):
            for key, sub in value.items():
                child = schema.get("properties", {}).get(key)
                if child is None and isinstance(schema.get("additionalProperties"), dict):
                    child = schema["additionalProperties"]
                if child is not None:
                    walk(child, sub)
        elif isinstance(value, list) and "items" in schema:
            for item in value:
                walk(schema["items"], item)

    walk(cr_schema(), cr)
    return errors
