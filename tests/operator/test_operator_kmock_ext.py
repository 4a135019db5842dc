"""The emulator extension does what kopf and kubectl need, and nothing the operator relies on."""

from __future__ import annotations

import pytest
from harness import Cluster
from jubako.operator.kube import KubeError
from operator_manifests import load_crd

DEPLOY = ("apps/v1", "Deployment", "default")


@pytest.fixture
def bare(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()


def _deployment(name="d", replicas=1):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"}, "spec": {"replicas": replicas}}


def test_objects_get_uid_resource_version_generation_and_creation_time(bare):
    created = bare.kube.create(_deployment())
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    first = int(meta["resourceVersion"])
    patched = bare.kube.patch(*DEPLOY, "d", {"metadata": {"labels": {"a": "b"}}})
    assert int(patched["metadata"]["resourceVersion"]) > first
    assert patched["metadata"]["generation"] == 1  # metadata changes keep the generation
    patched = bare.kube.patch(*DEPLOY, "d", {"spec": {"replicas": 2}})
    assert patched["metadata"]["generation"] == 2
    assert bare.kube.get(*DEPLOY, "d")["metadata"] == patched["metadata"]


def test_recreated_objects_get_a_new_uid(bare):
    uid = bare.kube.create(_deployment())["metadata"]["uid"]
    bare.kube.delete(*DEPLOY, "d")
    assert bare.kube.create(_deployment())["metadata"]["uid"] != uid


def test_lists_carry_a_resource_version(bare):
    bare.kube.create(_deployment())
    listed = bare.kube._call("GET", "/apis/apps/v1/namespaces/default/deployments")
    assert int(listed["metadata"]["resourceVersion"]) == bare.emulator.revision
    assert (listed["apiVersion"], listed["kind"]) == ("apps/v1", "DeploymentList")


def test_posted_crds_are_served(bare):
    with pytest.raises(KubeError) as exc:
        bare.kube.list("serving.jubako.dev/v1alpha1", "BentoDeployment", "default", {})
    assert exc.value.status == 404
    bare.install_crd(load_crd())
    assert bare.kube.list("serving.jubako.dev/v1alpha1", "BentoDeployment", "default", {}) == []
    discovery = bare.kube._call("GET", "/apis/serving.jubako.dev/v1alpha1")
    (resource,) = [r for r in discovery["resources"] if r["name"] == "bentodeployments"]
    assert resource["kind"] == "BentoDeployment" and resource["namespaced"] is True
    assert resource["shortNames"] == ["bd"]


def test_failed_json_patch_test_is_a_422(bare):
    bare.kube.create(_deployment())
    patch = [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
             {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]
    with pytest.raises(KubeError) as exc:
        bare.kube._call("PATCH", "/apis/apps/v1/namespaces/default/deployments/d", patch,
                        content_type="application/json-patch+json")
    assert exc.value.status == 422
    assert "finalizers" not in bare.kube.get(*DEPLOY, "d")["metadata"]


def test_namespaces_are_a_resource_not_a_namespace(bare):
    listed = bare.kube._call("GET", "/api/v1/namespaces")
    assert sorted(n["metadata"]["name"] for n in listed["items"]) == ["default", "kube-system"]
    assert bare.kube._call("GET", "/api/v1/namespaces/default")["metadata"]["name"] == "default"


def test_watch_skips_what_the_client_listed(bare):
    import json
    import urllib.request

    bare.kube.create(_deployment("old"))
    since = bare.emulator.revision
    bare.kube.create(_deployment("new"))
    url = f"{bare.url}/apis/apps/v1/namespaces/default/deployments?watch=true&resourceVersion={since}"
    with urllib.request.urlopen(url, timeout=10) as stream:
        first = json.loads(stream.readline() or stream.readline())
    assert first["object"]["metadata"]["name"] == "new"
