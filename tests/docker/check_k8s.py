"""What the Kubernetes schemas cannot say about deploy/k8s: that the manifests fit together and
keep the promises deploy/README.md makes. Run by tests/docker/validate-deploy after the schema
validation; prints one line per datacenter and exits 1 with every problem found.

Per StatefulSet: its datacenter's ConfigMap sets RINGDB_DC to the StatefulSet's dc label and
names seeds that are pods of StatefulSets in these files behind the governing headless Service
(which publishes not-ready addresses, so seeds resolve before they serve); the pod takes its
listen and CQL addresses from status.podIP; it has a readiness probe on CQL, a preStop that runs
`ringdb drain`, CPU and memory requests, the data volume at /var/lib/ringdb and the internode
certificates where the common ConfigMap points; a PodDisruptionBudget selects exactly its pods.
"""

import sys
from pathlib import Path

import yaml


def main(files):
    docs = []
    for f in files:
        docs += [d for d in yaml.safe_load_all(Path(f).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    problems = []
    configmaps = by_kind.get("ConfigMap", {})
    services = by_kind.get("Service", {})
    pdbs = by_kind.get("PodDisruptionBudget", {})
    sets = by_kind.get("StatefulSet", {})
    if not sets:
        problems.append("no StatefulSet")
    common = configmaps.get("ringdb-common", {}).get("data", {})
    for name, sts in sets.items():
        spec = sts["spec"]
        labels = spec["selector"]["matchLabels"]
        dc = labels.get("ringdb.io/dc")
        pod = spec["template"]["spec"]
        (c,) = [c for c in pod["containers"] if c["name"] == "ringdb"]
        say = lambda msg: problems.append(f"{name}: {msg}")  # noqa: E731

        headless = services.get(spec["serviceName"])
        if not headless or headless["spec"].get("clusterIP") != "None":
            say(f"serviceName {spec['serviceName']} is not a headless Service here")
        elif not headless["spec"].get("publishNotReadyAddresses"):
            say("the headless Service does not publish not-ready pods (seeds would not resolve)")

        env_cms = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
        env = {}
        for cm in env_cms:
            if cm not in configmaps:
                say(f"envFrom ConfigMap {cm} is not defined")
            env.update(configmaps.get(cm, {}).get("data", {}))
        if env.get("RINGDB_DC") != dc:
            say(f"RINGDB_DC {env.get('RINGDB_DC')!r} differs from the dc label {dc!r}")
        for key in ("RINGDB_RACK", "RINGDB_SEEDS", "RINGDB_CLUSTER_NAME"):
            if not env.get(key):
                say(f"{key} is not set")
        for seed in env.get("RINGDB_SEEDS", "").split(","):
            host = seed.strip().split(":")[0]
            pod_name, _, svc = host.partition(".")
            set_name, _, ordinal = pod_name.rpartition("-")
            seed_set = sets.get(set_name)
            if not (seed_set and svc == spec["serviceName"] and ordinal.isdigit()
                    and int(ordinal) < seed_set["spec"]["replicas"]):
                say(f"seed {seed!r} is not a pod of a StatefulSet behind {spec['serviceName']}")

        direct = {e["name"]: e for e in c.get("env", [])}
        pod_ip = direct.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {})
        if pod_ip.get("fieldPath") != "status.podIP":
            say("POD_IP does not come from status.podIP")
        for key in ("RINGDB_LISTEN_ADDRESS", "RINGDB_NATIVE_TRANSPORT_ADDRESS"):
            if direct.get(key, {}).get("value") != "$(POD_IP)":
                say(f"{key} is not $(POD_IP)")

        probe = c.get("readinessProbe", {}).get("exec", {}).get("command", [])
        if probe != ["docker-entrypoint", "healthcheck"]:
            say(f"readiness probe {probe} is not the CQL health check")
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        if pre_stop[:2] != ["ringdb", "drain"]:
            say(f"preStop {pre_stop} does not run `ringdb drain`")
        requests = c.get("resources", {}).get("requests", {})
        if not (requests.get("cpu") and requests.get("memory")):
            say("no cpu and memory requests")
        ports = {(p["containerPort"], p.get("protocol", "TCP")) for p in c.get("ports", [])}
        for want in ((9042, "TCP"), (7000, "UDP")):
            if want not in ports:
                say(f"port {want[0]}/{want[1]} is not declared")

        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        data = [n for n, p in mounts.items() if p == "/var/lib/ringdb"]
        if not data or data[0] not in claims:
            say("/var/lib/ringdb is not a volumeClaimTemplate")
        certs_dir = str(Path(common.get("RINGDB_INTERNODE_CA", "/nowhere/ca.crt")).parent)
        if certs_dir not in mounts.values():
            say(f"nothing is mounted at {certs_dir}, where ringdb-common puts the certificates")

        covering = [p for p, d in pdbs.items() if d["spec"]["selector"].get("matchLabels") == labels]
        if len(covering) != 1:
            say(f"{len(covering)} PodDisruptionBudgets select exactly its pods (want 1)")

        print(f"  {name}: dc {dc}, {spec['replicas']} replicas, seeds {env.get('RINGDB_SEEDS')}, "
              f"PDB {covering[0] if covering else '-'}")
    for p in problems:
        print(f"  PROBLEM {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
