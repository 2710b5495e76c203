"""The official Python Kubernetes client through a kubeconfig and one of its contexts (the one
`kprox kubeconfig` prints): lists the pods of `default` and prints their names as JSON.

Usage: list_in_context.py KUBECONFIG CONTEXT
"""

import json
import sys

from kubernetes import client, config


def main() -> None:
    kubeconfig, context = sys.argv[1], sys.argv[2]
    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig, context=context))
    pods = api.list_namespaced_pod("default")
    print(json.dumps(sorted(pod.metadata.name for pod in pods.items)), flush=True)


if __name__ == "__main__":
    main()
