"""The official Python Kubernetes client through kprox: list pods, then watch until a pod
created by the test arrives. Prints one JSON line with what it saw; the Rust test asserts on it.

Usage: list_and_watch.py PROXY_URL EXPECTED_POD_NAME
"""

import json
import sys

from kubernetes import client, watch


def main() -> None:
    proxy_url, expected = sys.argv[1], sys.argv[2]
    configuration = client.Configuration()
    configuration.host = proxy_url
    api = client.CoreV1Api(client.ApiClient(configuration))

    listed = api.list_namespaced_pod("default")
    names = sorted(pod.metadata.name for pod in listed.items)
    print(json.dumps({"ready": True, "resourceVersion": listed.metadata.resource_version}), flush=True)

    watched = []
    stream = watch.Watch()
    for event in stream.stream(
        api.list_namespaced_pod,
        "default",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=20,
    ):
        watched.append([event["type"], event["object"].metadata.name])
        if event["object"].metadata.name == expected:
            stream.stop()
    print(json.dumps({"listed": names, "watched": watched}), flush=True)


if __name__ == "__main__":
    main()
