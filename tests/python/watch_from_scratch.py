"""Watch pods through kprox with the official Python client the way most scripts do: from
scratch (no resourceVersion, no timeout), so the stream starts with the initial ADDED events.
If the client is told to start over (an ApiException), relist as such a script would.
Prints one JSON line: the names seen, the error status (or null) and the relisted names.

Usage: watch_from_scratch.py PROXY_URL
"""

import json
import sys

from kubernetes import client, watch
from kubernetes.client.rest import ApiException


def main() -> None:
    configuration = client.Configuration()
    configuration.host = sys.argv[1]
    api = client.CoreV1Api(client.ApiClient(configuration))
    seen, error = [], None
    stream = watch.Watch()
    try:
        # A socket read timeout, so that a stream that silently lost its objects fails the test
        # instead of waiting for ever.
        for event in stream.stream(api.list_namespaced_pod, "default", _request_timeout=15):
            seen.append(event["object"].metadata.name)
    except ApiException as exc:
        error = exc.status
    relisted = [pod.metadata.name for pod in api.list_namespaced_pod("default").items]
    print(json.dumps({"seen": seen, "error": error, "relisted": relisted}), flush=True)


if __name__ == "__main__":
    main()
