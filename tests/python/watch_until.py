"""Watch pods through kprox with the official Python client until a pod named EXPECTED arrives.
Prints "ready" once the list is done and the watch starts, then one JSON line with the events.

Usage: watch_until.py PROXY_URL EXPECTED_POD_NAME
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
    print("ready", flush=True)
    watched = []
    stream = watch.Watch()
    for event in stream.stream(
        api.list_namespaced_pod, "default", resource_version=listed.metadata.resource_version, timeout_seconds=30
    ):
        watched.append([event["type"], event["object"].metadata.name])
        if event["object"].metadata.name == expected:
            stream.stop()
    print(json.dumps({"watched": watched}), flush=True)


if __name__ == "__main__":
    main()
