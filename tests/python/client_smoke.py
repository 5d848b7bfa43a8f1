"""Drive a moor API server with the official Kubernetes Python client.

Usage: client_smoke.py URL
Lists namespaces, creates a ConfigMap, lists it by label, watches for it, deletes it.
Exits non-zero with a message on any mismatch.
"""
import sys
import threading

from kubernetes import client, watch


def main(url: str) -> None:
    config = client.Configuration()
    config.host = url
    api = client.CoreV1Api(client.ApiClient(config))

    names = [ns.metadata.name for ns in api.list_namespace().items]
    assert "default" in names and "kube-system" in names, names

    seen = threading.Event()

    def watch_configmaps() -> None:
        w = watch.Watch()
        for event in w.stream(api.list_namespaced_config_map, "default",
                              label_selector="from=python", timeout_seconds=10):
            if event["type"] == "ADDED" and event["object"].metadata.name == "py-cm":
                seen.set()
                w.stop()

    watcher = threading.Thread(target=watch_configmaps)
    watcher.start()

    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="py-cm", labels={"from": "python"}),
        data={"greeting": "hello"},
    )
    created = api.create_namespaced_config_map("default", body)
    assert created.metadata.resource_version, created

    listed = api.list_namespaced_config_map("default", label_selector="from=python")
    assert [c.metadata.name for c in listed.items] == ["py-cm"], listed

    watcher.join(timeout=15)
    assert seen.is_set(), "the watch never delivered the ADDED event"

    api.delete_namespaced_config_map("py-cm", "default")
    try:
        api.read_namespaced_config_map("py-cm", "default")
        raise AssertionError("py-cm still exists after delete")
    except client.exceptions.ApiException as e:
        assert e.status == 404, e
    print("python client: ok")


if __name__ == "__main__":
    main(sys.argv[1])
