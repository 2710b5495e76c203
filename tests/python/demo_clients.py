"""Three Python client libraries against `kprox demo`, as a newcomer would try them: each lists
the demo's pods, watches a ConfigMap it creates until its own patch arrives, and patches it
(strategic merge, JSON merge and server-side apply between them). Prints one JSON line per
library with what it saw; the Rust test asserts on it.

Usage: demo_clients.py PROXY_URL
"""

import json
import sys
import threading
import time


def official(url: str) -> dict:
    from kubernetes import client, watch

    configuration = client.Configuration()
    configuration.host = url
    api = client.CoreV1Api(client.ApiClient(configuration))
    pods = sorted(p.metadata.name for p in api.list_namespaced_pod("default").items)
    created = api.create_namespaced_config_map(
        "default", {"metadata": {"name": "from-official"}, "data": {"step": "created"}}
    )
    start = created.metadata.resource_version

    def later() -> None:
        time.sleep(0.5)
        api.patch_namespaced_config_map("from-official", "default", {"data": {"step": "patched"}})

    threading.Thread(target=later).start()
    seen = []
    stream = watch.Watch()
    for event in stream.stream(
        api.list_namespaced_config_map,
        "default",
        field_selector="metadata.name=from-official",
        resource_version=start,
        timeout_seconds=15,
    ):
        seen.append([event["type"], event["object"].data.get("step")])
        if event["object"].data.get("step") == "patched":
            stream.stop()
    final = api.read_namespaced_config_map("from-official", "default").data
    return {"library": "kubernetes", "pods": pods, "watched": seen, "final": final}


def kr8s_library(url: str) -> dict:
    import kr8s
    from kr8s.objects import ConfigMap

    api = kr8s.api(url=url)
    pods = sorted(p.name for p in api.get("pods", namespace="default"))
    version = api.version()
    cm = ConfigMap(
        {"metadata": {"name": "from-kr8s", "namespace": "default"}, "data": {"step": "created"}},
        api=api,
    )
    cm.create()

    def later() -> None:
        time.sleep(0.5)
        cm.patch({"data": {"step": "patched"}})

    threading.Thread(target=later).start()
    seen = []
    for event, obj in api.watch(
        "configmaps", namespace="default", field_selector="metadata.name=from-kr8s"
    ):
        seen.append([event, obj.raw.get("data", {}).get("step")])
        if obj.raw.get("data", {}).get("step") == "patched":
            break
    cm.refresh()
    return {
        "library": "kr8s",
        "pods": pods,
        "version": version.get("gitVersion"),
        "watched": seen,
        "final": cm.raw.get("data"),
    }


def lightkube_library(url: str) -> dict:
    from lightkube import Client, KubeConfig
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import ConfigMap, Pod

    # kprox adds the credentials: the kubeconfig names a user with none.
    config = KubeConfig.from_dict({
        "clusters": [{"name": "demo", "cluster": {"server": url}}],
        "users": [{"name": "demo", "user": {}}],
        "contexts": [{"name": "demo", "context": {"cluster": "demo", "user": "demo"}}],
        "current-context": "demo",
    })
    client = Client(config=config, field_manager="lightkube-demo")
    pods = sorted(p.metadata.name for p in client.list(Pod, namespace="default"))
    client.apply(
        ConfigMap(metadata=ObjectMeta(name="from-lightkube", namespace="default"), data={"step": "applied"})
    )

    def later() -> None:
        time.sleep(0.5)
        client.patch(ConfigMap, "from-lightkube", {"data": {"step": "patched"}}, namespace="default")

    threading.Thread(target=later).start()
    seen = []
    for event, obj in client.watch(
        ConfigMap, namespace="default", fields={"metadata.name": "from-lightkube"}
    ):
        seen.append([event, obj.data.get("step")])
        if obj.data.get("step") == "patched":
            break
    final = client.get(ConfigMap, "from-lightkube", namespace="default")
    managers = [m.manager for m in (final.metadata.managedFields or [])]
    return {"library": "lightkube", "pods": pods, "watched": seen, "final": final.data, "managers": managers}


def main() -> None:
    url = sys.argv[1]
    for run in (official, kr8s_library, lightkube_library):
        print(json.dumps(run(url)), flush=True)


if __name__ == "__main__":
    main()
