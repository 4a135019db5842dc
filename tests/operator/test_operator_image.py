"""spec.image: a bento's own image (`jubako containerize`) runs without pulling or installing.

The image holds the bento at /bento and its requirements in the runtime's environment, so its
pods have no init containers and no emptyDir over /bento (which would hide the baked bento).
The container end-to-end (tests/e2e/test_containers.py) runs these pods from a real image.
"""

from __future__ import annotations

import pytest
from jubako.operator.config import OperatorSettings
from jubako.operator.render import Owner, render
from jubako.operator.spec import SpecError, parse_spec
from operator_manifests import validate_k8s

from jubako.tags import Tag

SETTINGS = OperatorSettings(runtime_image="registry.local/jubako-runtime:1", priority=1)
OWNER = Owner(name="demo", namespace="ml", uid="uid-1")


def _pods(spec: dict) -> dict[str, dict]:
    children = render(OWNER, parse_spec(OWNER.name, spec), Tag("slugger", "v3"), SETTINGS)
    for child in children:
        validate_k8s(child)
    return {c["spec"]["template"]["spec"]["containers"][0]["name"]: c["spec"]["template"]["spec"]
            for c in children if c["kind"] == "Deployment"}


def test_a_bento_image_runs_as_is() -> None:
    pods = _pods({"bento": "slugger:v3", "image": "registry.local/slugger:v3", "workers": [{"name": "cpu"}]})
    for role, pod in pods.items():
        (main,) = pod["containers"]
        assert main["image"] == "registry.local/slugger:v3", role
        assert not pod.get("initContainers"), f"{role}: nothing to pull or install"
        assert "/bento" not in [m["mountPath"] for m in main["volumeMounts"]], f"{role}: would hide the baked bento"
        assert "bento" not in [v["name"] for v in pod["volumes"]]
        assert "--bento" in main["args"] and main["args"][main["args"].index("--bento") + 1] == "/bento"
    assert "command" not in pods["worker"]["containers"][0], "the image's own environment has the requirements"


def test_the_shared_image_still_pulls_and_installs() -> None:
    pods = _pods({"bento": "slugger:v3", "runtimeImage": "custom/runtime:2", "workers": [{"name": "cpu"}]})
    assert [c["name"] for c in pods["worker"]["initContainers"]] == ["pull-bento", "install-requirements"]
    assert pods["worker"]["containers"][0]["image"] == "custom/runtime:2"
    assert "/bento" in [m["mountPath"] for m in pods["proxy"]["containers"][0]["volumeMounts"]]


def test_an_empty_image_is_refused() -> None:
    with pytest.raises(SpecError, match="image"):
        parse_spec("demo", {"bento": "slugger:v3", "image": ""})
