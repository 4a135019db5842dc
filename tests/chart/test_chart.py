"""The Helm chart, rendered by a real helm binary and checked against Kubernetes' schemas."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "jubako"
HELM = ROOT / ".tools" / "bin" / "helm"
K8S_VERSION = "1.33.0"

VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "external-db-and-s3": [
        "registry.database.existingSecret=jubako-db",
        "registry.s3.bucket=jubako-bentos",
        "registry.s3.endpoint=http://minio.storage:9000",
        "registry.s3.publicEndpoint=https://s3.example.com",
        "registry.s3.existingSecret=jubako-s3",
        "registry.replicaCount=3",
        "registry.bootstrapToken.existingSecret=jubako-bootstrap",
        "registry.publicUrl=https://registry.example.com",
    ],
    "ingress": [
        "registry.ingress.enabled=true",
        "registry.ingress.className=nginx",
        "registry.ingress.host=registry.example.com",
        "registry.ingress.tls.enabled=true",
        "registry.serviceMonitor.enabled=true",
    ],
    "namespaced-operator": [
        "operator.watchNamespaces={team-a,team-b}",
        "operator.replicaCount=1",
        "operator.registryToken.existingSecret=jubako-operator-token",
    ],
    "in-chart-postgresql": ["postgresql.enabled=true", "registry.persistence.enabled=false"],
    "operator-only": ["registry.enabled=false", "operator.registryUrl=https://registry.example.com"],
}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        "HELM_CACHE_HOME": str(ROOT / ".tools" / "helm" / "cache"),
        "HELM_CONFIG_HOME": str(ROOT / ".tools" / "helm" / "config"),
        "HELM_DATA_HOME": str(ROOT / ".tools" / "helm" / "data"),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=check, env=env)


def render(values: list[str]) -> list[dict]:
    args = ["template", "jubako", str(CHART), "--namespace", "jubako-system", "--include-crds"]
    for v in values:
        args += ["--set", v]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


@pytest.fixture(scope="module", params=list(VALUE_SETS), ids=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    return request.param, render(VALUE_SETS[request.param])


def test_helm_lint_passes_for_every_value_set() -> None:
    for name, values in VALUE_SETS.items():
        args = ["lint", str(CHART), "--strict"]
        for v in values:
            args += ["--set", v]
        proc = helm(*args, check=False)
        assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"


def test_every_manifest_is_valid_kubernetes(rendered: tuple[str, list[dict]]) -> None:
    name, docs = rendered
    for doc in docs:
        if doc["apiVersion"].startswith(("monitoring.coreos.com/", "kopf.dev/")):
            continue  # custom resources (Prometheus Operator, kopf peering): no official schema
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}")


def test_value_sets_render_what_they_ask_for() -> None:
    kinds = {name: [(d["kind"], d["metadata"]["name"]) for d in render(v)] for name, v in VALUE_SETS.items()}
    assert ("PersistentVolumeClaim", "jubako-registry") in kinds["defaults"]
    assert not any(k == "Job" for k, _ in kinds["defaults"]), "SQLite migrates at start, no hook Job"
    assert ("Job", "jubako-registry-migrate") in kinds["external-db-and-s3"]
    assert not any(k == "PersistentVolumeClaim" for k, _ in kinds["external-db-and-s3"])
    assert ("Ingress", "jubako-registry") in kinds["ingress"]
    assert ("ServiceMonitor", "jubako-registry") in kinds["ingress"]
    assert ("StatefulSet", "jubako-postgresql") in kinds["in-chart-postgresql"]
    assert ("Role", "jubako-operator") in kinds["namespaced-operator"]
    assert not any(n.startswith("jubako-registry") for _, n in kinds["operator-only"])
    for name, k in kinds.items():
        assert ("CustomResourceDefinition", "bentodeployments.serving.jubako.dev") in k, name


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_external_database_and_s3_are_wired_from_secrets() -> None:
    docs = render(VALUE_SETS["external-db-and-s3"])
    (deploy,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jubako-registry"]
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JUBAKO_REGISTRY_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "jubako-db", "key": "database-url"}
    assert env["JUBAKO_REGISTRY_S3_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "jubako-s3"
    assert env["JUBAKO_REGISTRY_S3_PUBLIC_ENDPOINT_URL"]["value"] == "https://s3.example.com"
    assert env["JUBAKO_REGISTRY_MIGRATE"]["value"] == "false"  # the hook Job migrates
    (job,) = by_kind(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["registry", "migrate"]
    assert deploy["spec"]["replicas"] == 3


def test_in_chart_postgresql_url_uses_the_generated_password() -> None:
    docs = render(VALUE_SETS["in-chart-postgresql"])
    (deploy,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jubako-registry"]
    env = [e["name"] for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]]
    # $(JUBAKO_POSTGRES_PASSWORD) expands only if defined earlier in the list
    assert env.index("JUBAKO_POSTGRES_PASSWORD") < env.index("JUBAKO_REGISTRY_DATABASE_URL")
    (job,) = by_kind(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"


def test_secure_defaults_on_every_pod(rendered: tuple[str, list[dict]]) -> None:
    name, docs = rendered
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, (name, doc["metadata"]["name"])
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]


def test_operator_rbac_is_least_privilege() -> None:
    cluster = render(VALUE_SETS["defaults"])
    (role,) = by_kind(cluster, "ClusterRole")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert "secrets" not in resources and "*" not in resources
    assert {"bentodeployments", "bentodeployments/status", "deployments", "services"} <= resources
    assert all("*" not in rule["verbs"] for rule in role["rules"])
    namespaced = render(VALUE_SETS["namespaced-operator"])
    (cluster_role,) = by_kind(namespaced, "ClusterRole")
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions", "namespaces", "clusterkopfpeerings"}
    assert sorted(r["metadata"]["namespace"] for r in by_kind(namespaced, "Role")) == ["team-a", "team-b"]
    (deploy,) = [d for d in by_kind(namespaced, "Deployment") if d["metadata"]["name"] == "jubako-operator"]
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["operator", "run", "--namespace=team-a", "--namespace=team-b"]


def test_chart_copies_equal_the_single_sources() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync_chart.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for src in (ROOT / "crds").glob("*.yaml"):
        crds = [d for d in yaml.safe_load_all(src.read_text()) if d and d["kind"] == "CustomResourceDefinition"]
        if crds:
            copied = [d for d in yaml.safe_load_all((CHART / "crds" / src.name).read_text()) if d]
            assert copied == crds, f"{src.name}: run `make chart`"


def test_chart_rbac_is_the_operators_own() -> None:
    (source,) = [d for d in yaml.safe_load_all((ROOT / "crds" / "rbac.yaml").read_text()) if d and d["kind"] == "ClusterRole"]
    (role,) = by_kind(render(VALUE_SETS["defaults"]), "ClusterRole")
    assert sorted(map(str, role["rules"])) == sorted(map(str, source["rules"]))
    namespaced = render(VALUE_SETS["namespaced-operator"])
    roles = by_kind(namespaced, "Role") + by_kind(namespaced, "ClusterRole")
    assert sorted(str(r) for role in roles[:1] + roles[-1:] for r in role["rules"]) == sorted(str(r) for r in source["rules"])


def test_peering_objects_match_the_operator_mode() -> None:
    kinds = [(d["kind"], d["metadata"].get("namespace")) for d in render(VALUE_SETS["defaults"])]
    assert ("ClusterKopfPeering", None) in kinds  # 2 replicas, cluster-wide
    two = render(["operator.watchNamespaces={team-a,team-b}", "operator.replicaCount=2"])
    assert sorted(d["metadata"]["namespace"] for d in by_kind(two, "KopfPeering")) == ["team-a", "team-b"]
    assert not by_kind(render(VALUE_SETS["namespaced-operator"]), "KopfPeering")  # one replica: standalone


@pytest.mark.parametrize(
    "value, message",
    [
        ("registry.replicaCount=two", "at '/registry/replicaCount': got string, want integer"),
        ("registry.s3.addressingStyle=sideways", "value must be one of 'auto', 'path', 'virtual'"),
        ("registry.databse.existingSecret=x", "additional properties 'databse' not allowed"),
        ("operator.watchNamespaces={Team_A}", "at '/operator/watchNamespaces/0'"),
        ("registry.service.port=70000", "at '/registry/service/port'"),
        ("registry.environment=staging", "value must be one of 'development', 'production'"),
        ("operator.registryUrl=ftp://x", "at '/operator/registryUrl'"),
    ],
)
def test_bad_values_are_rejected_by_the_schema(value: str, message: str) -> None:
    proc = helm("template", "jubako", str(CHART), "--set", value, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "values, message",
    [
        (["registry.replicaCount=2"], "needs a shared database"),
        (["registry.replicaCount=2", "registry.database.existingSecret=db"], "needs shared blob storage"),
    ],
)
def test_unsafe_combinations_fail_with_advice(values: list[str], message: str) -> None:
    args = ["template", "jubako", str(CHART)]
    for v in values:
        args += ["--set", v]
    proc = helm(*args, check=False)
    assert proc.returncode != 0 and message in proc.stderr


def test_every_value_is_documented_and_the_readme_is_current() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "chart_readme.py"), "--check", str(CHART)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def names(docs: list[dict]) -> list[tuple[str, str]]:
    return [(d["kind"], d["metadata"]["name"]) for d in docs]


def render_release(release: str, values: list[str]) -> list[dict]:
    args = ["template", release, str(CHART), "--namespace", "jubako-system"]
    for v in values:
        args += ["--set", v]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def test_a_53_character_release_name_gives_valid_names_for_everything() -> None:
    # Helm allows release names up to 53 characters; every object name must stay a valid
    # DNS label (63), the migrate Job included (its pods' job-name label holds it).
    release = "r" * 52 + "x"
    everything = ["operator.serviceMonitor.enabled=true", "proxyMetrics.serviceMonitor.enabled=true"]
    for values in (VALUE_SETS["external-db-and-s3"], VALUE_SETS["in-chart-postgresql"] + everything):
        docs = render_release(release, values)
        jobs = [name for kind, name in names(docs) if kind == "Job"]
        assert jobs == [release[:46] + "-registry-migrate"]
        for kind, name in names(docs):
            assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), (kind, name)


def test_operator_without_a_registry_fails_the_render_with_advice() -> None:
    proc = helm("template", "jubako", str(CHART), "--set", "registry.enabled=false", check=False)
    assert proc.returncode != 0
    assert "registry.enabled=false needs operator.registryUrl" in proc.stderr


def operator_deployment(docs: list[dict]) -> dict:
    (deploy,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jubako-operator"]
    return deploy


def test_operator_pods_are_ready_only_when_healthy_and_spread_over_nodes() -> None:
    pod = operator_deployment(render(VALUE_SETS["defaults"]))["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    # one replica: nothing to spread; a user's affinity replaces ours
    assert "affinity" not in operator_deployment(render(["operator.replicaCount=1"]))["spec"]["template"]["spec"]
    mine = operator_deployment(render(["operator.affinity.nodeAffinity.x=1"]))["spec"]["template"]["spec"]
    assert mine["affinity"] == {"nodeAffinity": {"x": 1}}


def test_registry_runs_as_its_own_service_account_with_annotations() -> None:
    docs = render(["registry.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/r"])
    (account,) = [d for d in by_kind(docs, "ServiceAccount") if d["metadata"]["name"] == "jubako-registry"]
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}
    assert account["automountServiceAccountToken"] is False
    (deploy,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "jubako-registry"]
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "jubako-registry"
    existing = render(["registry.serviceAccount.create=false", "registry.serviceAccount.name=team-sa"])
    assert not [d for d in by_kind(existing, "ServiceAccount") if d["metadata"]["name"] == "jubako-registry"]
    (deploy,) = [d for d in by_kind(existing, "Deployment") if d["metadata"]["name"] == "jubako-registry"]
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "team-sa"


def test_network_policies_admit_only_what_each_component_serves() -> None:
    docs = render(VALUE_SETS["in-chart-postgresql"] + ["operator.serviceMonitor.enabled=true"])
    policies = {d["metadata"]["name"]: d["spec"] for d in by_kind(docs, "NetworkPolicy")}
    assert set(policies) == {"jubako-registry", "jubako-operator", "jubako-postgresql"}
    for name, spec in policies.items():
        assert spec["policyTypes"] == ["Ingress"], name
        for rule in spec["ingress"]:
            assert rule["ports"], name  # never "everything on every port"
    (pg_rule,) = policies["jubako-postgresql"]["ingress"]
    assert pg_rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in pg_rule["from"]} == {
        "registry", "registry-migrate"}
    (op_rule,) = policies["jubako-operator"]["ingress"]
    assert op_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert not by_kind(render(["networkPolicy.enabled=false"]), "NetworkPolicy")


def test_operator_metrics_are_served_and_scraped() -> None:
    docs = render(["operator.serviceMonitor.enabled=true"])
    container = operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env["JUBAKO_OPERATOR_METRICS_PORT"] == str(ports["metrics"])
    (service,) = [d for d in by_kind(docs, "Service") if d["metadata"]["name"] == "jubako-operator-metrics"]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    monitors = {d["metadata"]["name"]: d["spec"] for d in by_kind(docs, "ServiceMonitor")}
    assert monitors["jubako-operator"]["endpoints"][0]["port"] == "metrics"
    assert monitors["jubako-operator"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert not by_kind(render([]), "ServiceMonitor")


def test_queue_depth_hpas_have_their_metric_scraped_and_served() -> None:
    from jubako.operator.render import QUEUE_DEPTH_METRIC

    docs = render(["proxyMetrics.serviceMonitor.enabled=true"])
    monitors = {d["metadata"]["name"]: d["spec"] for d in by_kind(docs, "ServiceMonitor")}
    proxies = monitors["jubako-proxies"]
    assert proxies["namespaceSelector"] == {"any": True}
    assert proxies["selector"]["matchLabels"] == {"app.kubernetes.io/managed-by": "jubako-operator",
                                                  "app.kubernetes.io/component": "proxy"}
    # The rule for prometheus-adapter (its chart's `rules.custom`): the HPA asks for the
    # metric on the proxy Service, so the series must map `service` and `namespace`.
    adapter = yaml.safe_load((CHART / "files" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert QUEUE_DEPTH_METRIC in rule["seriesQuery"]
    assert rule["name"]["as"] == QUEUE_DEPTH_METRIC
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"},
                                              "service": {"resource": "service"}}
    assert "sum(" in rule["metricsQuery"]
    # a group scaled to zero queues nothing (its proxy refuses at once): the refusals wake it
    assert 'jubako_requests_total{status="503"' in rule["metricsQuery"]
