"""The Python `kubernetes` client (PyPI) against a Flotilla agent, as an operator or a script
would use it: list, create, patch, scale, and watch from a resourceVersion. Prints one JSON
object of what it saw; the Rust test (kubectl.rs) checks it. Usage: client.py KUBECONFIG"""

import json
import sys

from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
apps = client.AppsV1Api()
seen = {}

# Every model the client decodes checks Kubernetes' required fields.
seen["nodes"] = [n.metadata.name for n in core.list_node().items]
seen["kernel"] = core.list_node().items[0].status.node_info.kernel_version

cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"mode": "slow"})
core.create_namespaced_config_map("default", cm)
listed = core.list_namespaced_config_map("default")
seen["configmaps"] = sorted(c.metadata.name for c in listed.items)

# A dict patch goes as a strategic merge patch; a list as a JSON patch.
core.patch_namespaced_config_map("settings", "default", {"data": {"mode": "fast"}})
core.patch_namespaced_config_map(
    "settings", "default", [{"op": "add", "path": "/data/extra", "value": "1"}]
)
seen["data"] = core.read_namespaced_config_map("settings", "default").data

# A watch from the list's resourceVersion sees what came after it (the two patches above
# and the create below), and only that.
rv = listed.metadata.resource_version
core.create_namespaced_config_map(
    "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="later"))
)
events = []
w = watch.Watch()
for e in w.stream(
    core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5
):
    events.append([e["type"], e["object"].metadata.name])
    if e["object"].metadata.name == "later":
        w.stop()
seen["watched"] = events

dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1DeploymentSpec(
        replicas=1,
        selector=client.V1LabelSelector(match_labels={"app": "web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "web"}),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="c", image="flotilla.local/busybox:1", image_pull_policy="Never"
                    )
                ]
            ),
        ),
    ),
)
apps.create_namespaced_deployment("default", dep)
apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 2}})
seen["scale"] = apps.read_namespaced_deployment_scale("web", "default").spec.replicas
seen["replicas"] = apps.read_namespaced_deployment("web", "default").spec.replicas

# Errors come back as the client's ApiException with kube-apiserver's status and reason.
try:
    core.create_namespaced_config_map("default", cm)
except client.ApiException as e:
    seen["conflict"] = [e.status, json.loads(e.body)["reason"]]

print(json.dumps(seen))
