"""Offline checks of the Helm chart (deploy/helm/hubwatch), run by tests/chart.rs.

For every value set in tests/helm/*.yaml:
  - `helm lint --strict` through the Helm SDK (helm-python-sdk), for each Kubernetes version;
  - the chart rendered as `helm template` would, and every manifest validated with
    `kubernetes-validate --strict` against each Kubernetes version still supported;
  - the rendered hubwatch.toml and query packs checked by `hubwatch check`;
  - the rendered PrometheusRule checked by `promtool check rules`; the dashboards' ConfigMaps
    must hold the dashboards unchanged;
  - what every deployment must have: non-root, read-only root, no capabilities,
    RuntimeDefault seccomp, the probes on /healthz and /readyz, no secret in a ConfigMap,
    workload identity's annotation and label when asked.
Then value sets that must be refused at install time, each with the reason it must give.

usage: check_chart.py HUBWATCH_BINARY PROMTOOL
"""

import copy
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import helm_python
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "hubwatch"
VALUE_SETS = sorted((REPO / "tests" / "helm").glob("*.yaml"))
# From the chart's kubeVersion floor (AKS long-term support reaches back that far) to the
# newest release.
KUBE_VERSIONS = [f"1.{minor}.0" for minor in range(30, 38)]
# Strings that only a secret would contain.
SECRET_MARKS = ["SharedAccessKey=", "AccountKey=", "SharedAccessSignature", "sig="]

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"FAIL {what}", flush=True)


def render(values):
    chart = helm_python.Chart.load(str(CHART))
    return chart.render(values, name="hw", namespace="monitoring", is_install=True)


def documents(rendered):
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((path, doc))
    return docs


def kind(docs, name):
    return [d for _, d in docs if d["kind"] == name]


def check_value_set(path, hubwatch, promtool):
    label = path.stem
    values = yaml.safe_load(path.read_text())
    print(f"== {label}", flush=True)

    for version in KUBE_VERSIONS:
        lint = helm_python.lint(str(CHART), values, strict=True, kube_version=f"v{version}")
        check(not lint["errors"], f"{label}: helm lint --strict (Kubernetes {version}): {lint['errors']}")

    docs = documents(render(values))
    check(docs, f"{label}: nothing rendered")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)

        # Core kinds against the Kubernetes schemas; the operators' kinds (ServiceMonitor,
        # PrometheusRule, ScaledObject, …) have no schema there and are checked below.
        core = [d for _, d in docs if "." not in d["apiVersion"].split("/")[0] or d["apiVersion"].split("/")[0].endswith(".k8s.io")]
        manifests = tmp / "manifests.yaml"
        manifests.write_text(yaml.safe_dump_all(core))
        for version in KUBE_VERSIONS:
            run = subprocess.run(
                [str(REPO / ".venv" / "bin" / "kubernetes-validate"), "--strict", "--quiet", "-k", version, str(manifests)],
                capture_output=True, text=True)
            check(run.returncode == 0, f"{label}: kubernetes-validate --strict -k {version}: {run.stdout}{run.stderr}")

        # The configuration the pods get, checked by the binary the image holds.
        config_maps = kind(docs, "ConfigMap")
        config = next((c for c in config_maps if "hubwatch.toml" in c.get("data", {})), None)
        check(config is not None, f"{label}: no ConfigMap with hubwatch.toml")
        if config:
            etc = tmp / "etc"
            etc.mkdir()
            for key, text in config["data"].items():
                (etc / key).write_text(text)
            env = dict(os.environ)
            env.update({
                "POD_NAME": "hw-hubwatch-0",
                "EVENTHUB_CONNECTION_STRING": "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=a2V5;EntityPath=insights",
                "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
                "SPLUNK_HEC_TOKEN": "00000000-0000-0000-0000-000000000000",
                "ES_API_KEY": "a2V5",
                # A bcrypt hash, as `htpasswd -nBC 10 prometheus` makes them.
                "PROMETHEUS_SCRAPE_HASH": "$2b$10$7x3SPYHRszgXINSBUtY3z.6cPhFrPBSrPnsXosKUMgiVhCKgRYSsq",
            })
            run = subprocess.run([hubwatch, "check", "--config", str(etc / "hubwatch.toml")],
                                 capture_output=True, text=True, env=env)
            check(run.returncode == 0, f"{label}: hubwatch check: {run.stdout}{run.stderr}")
            print(f"   hubwatch check: {run.stdout.strip().splitlines()[0] if run.stdout.strip() else run.stderr.strip()}")
            for c in config_maps:
                for key, text in c.get("data", {}).items():
                    for mark in SECRET_MARKS:
                        check(mark not in text, f"{label}: ConfigMap {c['metadata']['name']}/{key} holds {mark!r}")

        for rule in kind(docs, "PrometheusRule"):
            rules = tmp / "rules.yml"
            rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
            run = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
            check(run.returncode == 0, f"{label}: promtool check rules on the PrometheusRule: {run.stdout}{run.stderr}")
            alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
            check(alerts, f"{label}: the PrometheusRule has no alert")
            base = values.get("prometheusRule", {}).get("runbookBaseUrl")
            for a in alerts:
                url = a.get("annotations", {}).get("runbook_url", "")
                check(base is None or url.startswith(base + "#"), f"{label}: {a['alert']} runbook_url {url!r} does not use {base}")
            print(f"   PrometheusRule: {len(alerts)} alerts, {sum(len(g['rules']) for g in rule['spec']['groups'])} rules: promtool OK")

    for board in (REPO / "deploy" / "grafana").glob("*.json"):
        if not values.get("grafanaDashboards", {}).get("enabled"):
            break
        held = [c for c in kind(docs, "ConfigMap") if board.name in c.get("data", {})]
        check(len(held) == 1, f"{label}: dashboard {board.name} in {len(held)} ConfigMaps")
        for c in held:
            check(json.loads(c["data"][board.name]) == json.loads(board.read_text()), f"{label}: dashboard {board.name} changed")
            check(c["metadata"]["labels"].get("grafana_dashboard") == "1", f"{label}: dashboard {board.name} lacks the sidecar's label")

    workloads = kind(docs, "Deployment") + kind(docs, "StatefulSet")
    check(len(workloads) == 1, f"{label}: {len(workloads)} workloads")
    for w in workloads:
        want = "StatefulSet" if values.get("persistence", {}).get("enabled") else "Deployment"
        check(w["kind"] == want, f"{label}: a {w['kind']}, expected a {want}")
        pod = w["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532, f"{label}: pod not non-root 65532: {psc}")
        check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{label}: no RuntimeDefault seccomp")
        (c,) = pod["containers"]
        sc = c["securityContext"]
        check(sc.get("readOnlyRootFilesystem") is True, f"{label}: root filesystem writable")
        check(sc.get("allowPrivilegeEscalation") is False, f"{label}: privilege escalation allowed")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{label}: capabilities kept")
        check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{label}: liveness not on /healthz")
        check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{label}: readiness not on /readyz")
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        check(mounts.get("/etc/hubwatch", {}).get("readOnly") is True, f"{label}: configuration not mounted read-only")
        check("/var/lib/hubwatch" in mounts and "/tmp" in mounts, f"{label}: state or /tmp not writable: {sorted(mounts)}")
        check(pod["terminationGracePeriodSeconds"] >= 30, f"{label}: grace period too short for the drain")
        wi = values.get("serviceAccount", {}).get("workloadIdentity", {})
        labels = w["spec"]["template"]["metadata"]["labels"]
        if wi.get("enabled"):
            check(labels.get("azure.workload.identity/use") == "true", f"{label}: pods lack azure.workload.identity/use")
            (sa,) = kind(docs, "ServiceAccount")
            check(sa["metadata"]["annotations"].get("azure.workload.identity/client-id") == wi["clientId"],
                  f"{label}: service account lacks the client id annotation")
            check(pod["serviceAccountName"] == sa["metadata"]["name"], f"{label}: pods use another service account")
        else:
            check("azure.workload.identity/use" not in labels, f"{label}: workload identity label without workload identity")
        if values.get("keda", {}).get("enabled"):
            check("replicas" not in w["spec"], f"{label}: replicas set although KEDA scales")
            (so,) = kind(docs, "ScaledObject")
            check(so["spec"]["scaleTargetRef"]["kind"] == w["kind"] and so["spec"]["scaleTargetRef"]["name"] == w["metadata"]["name"],
                  f"{label}: the ScaledObject targets something else")
            (trigger,) = so["spec"]["triggers"]
            check(trigger["type"] == "azure-eventhub" and trigger["metadata"]["checkpointStrategy"] == "blobMetadata",
                  f"{label}: KEDA does not read the SDK-layout checkpoints: {trigger}")
            meta = trigger["metadata"]
            check(meta["blobContainer"] == "hubwatch", f"{label}: KEDA's container {meta['blobContainer']!r}")
            if "authenticationRef" in trigger:
                # Entra ID: the scaler needs the namespace, the hub and the account by name.
                check({"eventHubNamespace", "eventHubName", "storageAccountName"} <= meta.keys(),
                      f"{label}: KEDA with Entra ID lacks names: {meta}")
                (auth,) = kind(docs, "TriggerAuthentication")
                check(auth["spec"]["podIdentity"] == {"provider": "azure-workload", "identityId": wi.get("clientId")},
                      f"{label}: TriggerAuthentication {auth['spec']}")
            else:
                check("connectionFromEnv" in meta and "storageConnectionFromEnv" in meta, f"{label}: KEDA without credentials: {meta}")
            # hubwatch names checkpoint blobs with the hub lowercased, as the SDKs do.
            hub = meta.get("eventHubName")
            check(hub is None or hub == hub.lower(), f"{label}: KEDA looks for the checkpoints of {hub!r}")
    web = values.get("web", {})
    tls = web.get("tls", {}).get("secretName")
    for w in workloads:
        (c,) = w["spec"]["template"]["spec"]["containers"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            scheme = c[probe]["httpGet"].get("scheme", "HTTP")
            check(scheme == ("HTTPS" if tls else "HTTP"), f"{label}: {probe} over {scheme}")
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        check(("/etc/hubwatch-tls" in mounts) == bool(tls), f"{label}: the TLS Secret's mount: {sorted(mounts)}")
        if tls:
            (vol,) = [v for v in w["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
            check(vol["secret"]["secretName"] == tls, f"{label}: TLS volume {vol}")
    if config:
        toml = config["data"]["hubwatch.toml"]
        check(("[export.tls]" in toml) == bool(tls), f"{label}: [export.tls] in the config: {bool(tls)}")
        check(("query_api = false" in toml) == (web.get("queryApi") is False), f"{label}: query_api")
        for user, var in web.get("basicAuthUsers", {}).items():
            check(f'{user} = "${{{var}}}"' in toml, f"{label}: basic_auth_users.{user} from ${{{var}}}")
    for monitor in kind(docs, "ServiceMonitor") + kind(docs, "PodMonitor"):
        endpoint = (monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"])[0]
        check(endpoint.get("scheme", "http") == ("https" if tls else "http"), f"{label}: {monitor['kind']} scheme")
        if web.get("basicAuthUsers"):
            check("basicAuth" in endpoint, f"{label}: {monitor['kind']} without basicAuth")
    for monitor in kind(docs, "ServiceMonitor"):
        # Exactly one Service: the StatefulSet's headless one has the same pods, and
        # selecting it too would scrape every replica twice.
        selected = [s for s in kind(docs, "Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
        check(len(selected) == 1, f"{label}: the ServiceMonitor selects {len(selected)} Services")
        for svc in selected:
            check(monitor["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"], f"{label}: the ServiceMonitor's port")


def selects(selector, labels):
    """A Kubernetes label selector (matchLabels and the matchExpressions used here)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        present = e["key"] in labels
        if e["operator"] == "DoesNotExist" and present or e["operator"] == "Exists" and not present:
            return False
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if e["operator"] == "NotIn" and labels.get(e["key"]) in e["values"]:
            return False
    return True


def must_refuse(name, change, reason):
    base = yaml.safe_load((REPO / "tests" / "helm" / "forwarding.yaml").read_text())
    values = copy.deepcopy(base)
    change(values)
    try:
        render(values)
    except helm_python.HelmError as e:
        check(reason in str(e), f"refused {name}, but not for {reason!r}: {e}")
        if reason in str(e):
            print(f"   refused {name}: {str(e).strip().splitlines()[-1].strip()}")
        return
    failures.append(f"{name}: rendered, but must be refused ({reason})")
    print(f"FAIL {name} rendered")


def main():
    hubwatch, promtool = sys.argv[1], sys.argv[2]
    helm_python.disable_logging()
    check(len(VALUE_SETS) >= 4, f"value sets: {VALUE_SETS}")
    for path in VALUE_SETS:
        check_value_set(path, hubwatch, promtool)

    print("== values refused at install", flush=True)
    must_refuse("replicaCount: \"two\"", lambda v: v.update(replicaCount="two"), "replicaCount")
    must_refuse("source.type: http", lambda v: v["source"].update(type="http"), "/source/type")
    must_refuse("a sink of an unknown type", lambda v: v["sinks"][0].update(type="splunk"), "/sinks/0/type")
    must_refuse("a route to an unknown sink", lambda v: v["routes"][0].update(sinks=["nowhere"]), 'sink "nowhere"')
    must_refuse("a route with neither kql nor query", lambda v: v["routes"][0].pop("kql"), "/routes/0")
    must_refuse("network sinks without persistence", lambda v: v["persistence"].update(enabled=False), "enable persistence")
    must_refuse("workload identity without a client id",
                lambda v: v.update(serviceAccount={"workloadIdentity": {"enabled": True}}), "clientId")
    must_refuse("connection strings without a Secret", lambda v: v["secrets"].update(existingSecret=""), "existingSecret")
    must_refuse("Entra ID for AMQP without a hub",
                lambda v: v["source"].update(fullyQualifiedNamespace="ns.servicebus.windows.net"), "eventHub")
    must_refuse("an unknown value", lambda v: v.update(replicas=3), "replicas")
    must_refuse("KEDA with network sinks", lambda v: v.update(keda={"enabled": True}), "strand")
    must_refuse("a file sink outside the volume",
                lambda v: v["sinks"].append({"type": "file", "name": "out", "path": "out.ndjson"}), "only /var/lib/hubwatch/")
    must_refuse("recording rules with global results",
                lambda v: v["checkpoint"]["blob"].update(globalResults=True), "once per replica")
    must_refuse("a SAS in the container URL",
                lambda v: v["checkpoint"]["blob"].update(containerUrl="https://a.blob.core.windows.net/c?sv=1&sig=x"), "/checkpoint/blob/containerUrl")
    must_refuse("a route name that is not an identifier", lambda v: v["routes"][0].update(name="failed-jobs"), "/routes/0/name")
    must_refuse("a misspelt limit", lambda v: v.update(limits={"max_serie": 5}), "max_serie")
    must_refuse("a sequence number start for Kafka",
                lambda v: v.update(source={"type": "kafka", "start": "sequence_number:5", "kafka": {"topics": ["t"]}}), "/source/start")
    must_refuse("client certificates required (the probes have none)",
                lambda v: v["web"]["tls"].update(clientAuthType="RequireAndVerifyClientCert"), "kubelet's probes")
    must_refuse("basic auth without the monitor's credentials",
                lambda v: v["podMonitor"].pop("basicAuth"), "podMonitor.basicAuth")
    must_refuse("basic auth users without a Secret",
                lambda v: v["secrets"].update(existingSecret=""), "variables holding bcrypt hashes")
    must_refuse("a basic auth user given a hash instead of a variable",
                lambda v: v["web"]["basicAuthUsers"].update(prometheus="$2b$10$abc"), "/web/basicAuthUsers")
    must_refuse("KEDA scaling to zero", lambda v: v.update(keda={"minReplicas": 0}), "/keda/minReplicas")
    must_refuse("KEDA with Kafka",
                lambda v: v.update(keda={"enabled": True}, source={"type": "kafka", "kafka": {"topics": ["t"]}}, sinks=[], routes=[]),
                "kafka scaler")

    if failures:
        print(f"\n{len(failures)} check(s) failed", flush=True)
        sys.exit(1)
    print(f"\nchart OK: {len(VALUE_SETS)} value sets, Kubernetes {', '.join(KUBE_VERSIONS)}")


if __name__ == "__main__":
    main()
