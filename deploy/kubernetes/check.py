"""What the manifests must say beyond schema validity (run by deploy/kubernetes/test).

The schema (kubernetes-validate --strict) accepts a sidecar that is a plain container, probes on
the wrong port, or a seed set that can never start; these checks do not.
"""

import sys
import tomllib
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DRAIN_TIMEOUT_S = 30  # [drain] timeout default, and what the configs below set
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def load_all():
    docs = {}
    for path in sorted(HERE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                key = (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
                docs[key] = doc
    return docs


def probe(container, kind):
    return (container.get(kind) or {}).get("httpGet") or {}


def port_number(container, port):
    """A probe port given by name resolves to the container's port of that name."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def node_config(docs, namespace, volumes, container):
    """The node.toml a murmur container is started with, from its ConfigMap volume."""
    args = container.get("args", [])
    path = args[args.index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in volumes if v["name"] == mount["name"])
    cm = docs[("ConfigMap", namespace, volume["configMap"]["name"])]
    return tomllib.loads(cm["data"][Path(path).name])


def check_node_container(docs, namespace, spec, template, container, who):
    config = node_config(docs, namespace, spec["volumes"], container)
    admin_port = int(config["admin"].rsplit(":", 1)[1])
    check(config["admin"].startswith("0.0.0.0:"), f"{who}: admin must listen beyond loopback for probes and scraping")
    for kind, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]:
        p = probe(container, kind)
        check(p.get("path") == path, f"{who}: {kind} must GET {path}, has {p}")
        check(port_number(container, p.get("port")) == admin_port, f"{who}: {kind} must use the admin port {admin_port}")
    ann = template["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true", f"{who}: prometheus.io/scrape annotation")
    check(ann.get("prometheus.io/port") == str(admin_port), f"{who}: prometheus.io/port must be the admin port")
    check(ann.get("prometheus.io/path") == "/metrics", f"{who}: prometheus.io/path")
    req = container.get("resources", {}).get("requests", {})
    check("cpu" in req and "memory" in req, f"{who}: cpu and memory requests")
    sc = container.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, f"{who}: read-only root filesystem")
    check(sc.get("allowPrivilegeEscalation") is False, f"{who}: no privilege escalation")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{who}: drops every capability")
    check(spec.get("securityContext", {}).get("runAsNonRoot") is True, f"{who}: runAsNonRoot")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    check(grace > DRAIN_TIMEOUT_S + 5, f"{who}: terminationGracePeriodSeconds {grace} must exceed the drain timeout")
    drain = config.get("drain", {}).get("timeout", "30s")
    check(drain == f"{DRAIN_TIMEOUT_S}s", f"{who}: drain timeout {drain} is not the one the grace period was sized for")
    check(config.get("data_dir") in [m["mountPath"] for m in container["volumeMounts"]], f"{who}: data_dir must be a volume")
    # Certificates come from a Secret volume, and the config (or MURMUR_* env) points into it.
    tls_mounts = [m["mountPath"] for m in container["volumeMounts"]
                  for v in spec["volumes"] if v["name"] == m["name"] and "secret" in v]
    check(len(tls_mounts) == 1, f"{who}: certificates from exactly one Secret volume")
    env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
    for field, var in [("ca", "MURMUR_CA"), ("cert", "MURMUR_CERT"), ("key", "MURMUR_KEY")]:
        where = env.get(var) or config.get("tls", {}).get(field, "")
        check(any(where.startswith(m + "/") for m in tls_mounts), f"{who}: tls {field} ({where!r}) must come from the Secret")
    return config


def main():
    docs = load_all()
    # (a) The sidecar pattern.
    dep = docs[("Deployment", "example", "example-app")]
    spec = dep["spec"]["template"]["spec"]
    sidecars = [c for c in spec.get("initContainers", []) if "murmur" in c["image"]]
    check(len(sidecars) == 1, "example-app: the node is an init container")
    check(not any("murmur" in c["image"] for c in spec["containers"]), "example-app: the node is not a regular container")
    check(all("restartPolicy" not in c for c in spec["containers"]), "example-app: restartPolicy only on the sidecar")
    sidecar = sidecars[0] if sidecars else {}
    check(sidecar.get("restartPolicy") == "Always", "example-app: the node is a restartable init container (restartPolicy: Always)")
    # The app starts only after the sidecar's startup probe passes: that probe must be readiness.
    check(probe(sidecar, "startupProbe").get("path") == "/readyz", "example-app: startupProbe on /readyz (the app waits for it)")
    config = check_node_container(docs, "example", spec, dep["spec"]["template"], sidecar, "example-app sidecar")
    seed_addr = config["seeds"][0]
    # (b) Seeds: a StatefulSet behind a headless Service whose DNS name is that seed address.
    svc = docs[("Service", "murmur", "murmur-seed")]
    sts = docs[("StatefulSet", "murmur", "murmur-seed")]
    check(svc["spec"].get("clusterIP") == "None", "murmur-seed: the Service is headless")
    check(svc["spec"].get("publishNotReadyAddresses") is True, "murmur-seed: not-ready seeds are in DNS (else none can join)")
    check(sts["spec"]["serviceName"] == "murmur-seed", "murmur-seed: StatefulSet governed by the headless Service")
    check(sts["spec"].get("podManagementPolicy") == "Parallel", "murmur-seed: seeds start in parallel (else the first waits forever)")
    check(sts["spec"]["replicas"] >= 2, "murmur-seed: at least two seeds (a seed is ready only with a peer)")
    check(seed_addr == "murmur-seed.murmur.svc.cluster.local:7420", f"example-app: seed address {seed_addr}")
    mesh = [p for p in svc["spec"]["ports"] if p["name"] == "mesh"]
    check(mesh and mesh[0]["protocol"] == "UDP" and mesh[0]["port"] == 7420, "murmur-seed: UDP 7420 in the Service")
    sts_spec = sts["spec"]["template"]["spec"]
    seed = sts_spec["containers"][0]
    seed_config = check_node_container(docs, "murmur", sts_spec, sts["spec"]["template"], seed, "murmur-seed")
    check(seed_addr in seed_config["seeds"], "murmur-seed: seeds find each other through the same name")

    for f in failures:
        print(f"kubernetes/check: {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"kubernetes/check: ok ({len(docs)} documents)")


if __name__ == "__main__":
    main()
