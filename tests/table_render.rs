//! Server-side Table rendering (`kubectl get`'s `as=Table` responses): the columns and cell
//! values kube-apiserver's printers produce, checked against what kubectl shows on a real
//! cluster for realistic objects, plus robustness against arbitrary JSON.

use moor::apiserver::table;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};

fn now() -> Timestamp {
    "2024-06-01T12:00:00Z".parse().unwrap()
}

/// The RFC 3339 timestamp `seconds` before `now()`.
fn ago(seconds: i64) -> String {
    now()
        .checked_sub(SignedDuration::from_secs(seconds))
        .unwrap()
        .to_string()
}

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The single row's cells for `obj`.
fn cells(group: &str, kind: &str, obj: Value) -> Value {
    let table = table::table(group, kind, &[obj], json!({}), "None", now());
    table["rows"][0]["cells"].clone()
}

/// `cells[range]` as a JSON array.
fn slice(cells: &Value, range: std::ops::Range<usize>) -> Value {
    Value::Array(cells.as_array().unwrap()[range].to_vec())
}

/// `(name, priority)` of each column.
fn column_names(group: &str, kind: &str) -> Vec<(String, i64)> {
    let table = table::table(group, kind, &[], json!({}), "Metadata", now());
    table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["priority"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn cols(names: &[(&str, i64)]) -> Vec<(String, i64)> {
    names.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect()
}

// ---------------------------------------------------------------------------------------
// Table shape
// ---------------------------------------------------------------------------------------

#[test]
fn table_has_upstream_shape() {
    let pod = running_coredns_pod();
    let table = table::table(
        "",
        "Pod",
        std::slice::from_ref(&pod),
        json!({"resourceVersion": "4242", "continue": "abc"}),
        "Metadata",
        now(),
    );
    let keys: Vec<&String> = table.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "kind",
            "apiVersion",
            "metadata",
            "columnDefinitions",
            "rows"
        ]
    );
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        table["metadata"],
        json!({"resourceVersion": "4242", "continue": "abc"})
    );

    let first = &table["columnDefinitions"][0];
    let column_keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(
        column_keys,
        ["name", "type", "format", "description", "priority"]
    );
    assert_eq!(first["name"], "Name");
    assert_eq!(first["type"], "string");
    assert_eq!(first["format"], "name");
    assert!(
        first["description"]
            .as_str()
            .unwrap()
            .starts_with("Name must be unique within a namespace.")
    );
    assert_eq!(table["columnDefinitions"][1]["format"], "");

    let row = &table["rows"][0];
    let row_keys: Vec<&String> = row.as_object().unwrap().keys().collect();
    assert_eq!(row_keys, ["cells", "object"]);
    assert_eq!(
        row["object"],
        json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": pod["metadata"],
        })
    );
}

#[test]
fn empty_list_has_columns_and_no_rows() {
    let table = table::table(
        "apps",
        "Deployment",
        &[],
        json!({"resourceVersion": "7"}),
        "Metadata",
        now(),
    );
    assert_eq!(table["rows"], json!([]));
    assert_eq!(table["columnDefinitions"].as_array().unwrap().len(), 8);
    assert_eq!(table["metadata"], json!({"resourceVersion": "7"}));
}

#[test]
fn non_object_list_meta_becomes_empty_object() {
    let table = table::table("", "Pod", &[], Value::Null, "Metadata", now());
    assert_eq!(table["metadata"], json!({}));
}

#[test]
fn include_object_modes() {
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "default", "resourceVersion": "9"},
        "data": {"a": "1"},
    });
    let object = |mode: &str| {
        table::table(
            "",
            "ConfigMap",
            std::slice::from_ref(&cm),
            json!({}),
            mode,
            now(),
        )["rows"][0]["object"]
            .clone()
    };
    assert_eq!(object("Object"), cm);
    assert_eq!(object("None"), Value::Null);
    let partial = json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": "cfg", "namespace": "default", "resourceVersion": "9"},
    });
    assert_eq!(object("Metadata"), partial);
    assert_eq!(object(""), partial);

    // "None" still emits the key, as upstream's empty RawExtension serializes to null.
    let table = table::table("", "ConfigMap", &[cm], json!({}), "None", now());
    assert!(table["rows"][0].as_object().unwrap().contains_key("object"));
}

#[test]
fn partial_metadata_of_object_without_metadata_is_empty() {
    let table = table::table("", "Secret", &[json!({})], json!({}), "Metadata", now());
    assert_eq!(table["rows"][0]["object"]["metadata"], json!({}));
}

#[test]
fn rows_follow_object_order() {
    let objects: Vec<Value> = ["b", "a", "c"]
        .iter()
        .map(|n| json!({"metadata": {"name": n, "creationTimestamp": ago(5)}}))
        .collect();
    let table = table::table("", "ConfigMap", &objects, json!({}), "None", now());
    let names: Vec<&str> = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cells"][0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b", "a", "c"]);
}

// ---------------------------------------------------------------------------------------
// Pod
// ---------------------------------------------------------------------------------------

fn running_coredns_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "coredns-7db6d8ff4d-7kb9x",
            "namespace": "kube-system",
            "creationTimestamp": ago(4 * DAY + 21 * HOUR + 7 * MINUTE),
            "labels": {"k8s-app": "kube-dns", "pod-template-hash": "7db6d8ff4d"},
        },
        "spec": {
            "containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.11.1"}],
            "nodeName": "docker-desktop",
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "podIP": "10.1.0.20",
            "podIPs": [{"ip": "10.1.0.20"}],
            "containerStatuses": [{
                "name": "coredns",
                "ready": true,
                "started": true,
                "restartCount": 2,
                "state": {"running": {"startedAt": ago(131 * MINUTE)}},
                "lastState": {"terminated": {
                    "exitCode": 255,
                    "reason": "Unknown",
                    "startedAt": ago(2 * DAY),
                    "finishedAt": ago(131 * MINUTE + 20),
                }},
            }],
        },
    })
}

#[test]
fn pod_columns() {
    assert_eq!(
        column_names("", "Pod"),
        cols(&[
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1),
        ])
    );
}

#[test]
fn pod_running_with_restarts() {
    // kubectl: coredns-7db6d8ff4d-7kb9x   1/1   Running   2 (131m ago)   4d21h
    assert_eq!(
        cells("", "Pod", running_coredns_pod()),
        json!([
            "coredns-7db6d8ff4d-7kb9x",
            "1/1",
            "Running",
            "2 (131m ago)",
            "4d21h",
            "10.1.0.20",
            "docker-desktop",
            "<none>",
            "<none>"
        ])
    );
}

#[test]
fn pod_without_status_is_pending() {
    // A pod just created, not yet scheduled.
    let pod = json!({
        "metadata": {"name": "nginx", "creationTimestamp": ago(3)},
        "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
    });
    assert_eq!(
        cells("", "Pod", pod),
        json!([
            "nginx", "0/1", "Pending", "0", "3s", "<none>", "<none>", "<none>", "<none>"
        ])
    );
}

#[test]
fn pod_container_creating() {
    let pod = json!({
        "metadata": {"name": "web-5d8f7c9b4-abcde", "creationTimestamp": ago(12)},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}], "nodeName": "kind-worker"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [{
                "name": "web",
                "ready": false,
                "started": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {},
            }],
        },
    });
    assert_eq!(
        cells("", "Pod", pod),
        json!([
            "web-5d8f7c9b4-abcde",
            "0/1",
            "ContainerCreating",
            "0",
            "12s",
            "<none>",
            "kind-worker",
            "<none>",
            "<none>"
        ])
    );
}

#[test]
fn pod_crash_loop_back_off() {
    // kubectl: crasher   0/1   CrashLoopBackOff   5 (2m30s ago)   7m40s
    let pod = json!({
        "metadata": {"name": "crasher", "creationTimestamp": ago(7 * MINUTE + 40)},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.244.0.9",
            "containerStatuses": [{
                "name": "app",
                "ready": false,
                "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}},
                "lastState": {"terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "finishedAt": ago(2 * MINUTE + 30),
                }},
            }],
        },
    });
    let cells = cells("", "Pod", pod);
    assert_eq!(
        cells,
        json!([
            "crasher",
            "0/1",
            "CrashLoopBackOff",
            "5 (2m30s ago)",
            "7m40s",
            "10.244.0.9",
            "<none>",
            "<none>",
            "<none>"
        ])
    );
}

#[test]
fn pod_error_and_oom_killed() {
    let pod = |reason: &str| {
        json!({
            "metadata": {"name": "p", "creationTimestamp": ago(HOUR)},
            "spec": {"containers": [{"name": "app"}], "restartPolicy": "Never"},
            "status": {
                "phase": "Failed",
                "containerStatuses": [{
                    "name": "app",
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 137, "reason": reason}},
                }],
            },
        })
    };
    assert_eq!(cells("", "Pod", pod("OOMKilled"))[2], "OOMKilled");
    assert_eq!(cells("", "Pod", pod("Error"))[2], "Error");
    // No reason: the exit code, or the signal when there is one.
    assert_eq!(cells("", "Pod", pod(""))[2], "ExitCode:137");
    let mut signalled = pod("");
    signalled["status"]["containerStatuses"][0]["state"]["terminated"]["signal"] = json!(9);
    assert_eq!(cells("", "Pod", signalled)[2], "Signal:9");
}

#[test]
fn pod_completed_has_row_condition() {
    // kubectl: pi-xk2lp   0/1   Completed   0   3m12s
    let pod = json!({
        "metadata": {"name": "pi-xk2lp", "creationTimestamp": ago(3 * MINUTE + 12)},
        "spec": {"containers": [{"name": "pi", "image": "perl:5.34.0"}], "restartPolicy": "Never"},
        "status": {
            "phase": "Succeeded",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "PodCompleted"},
            ],
            "containerStatuses": [{
                "name": "pi",
                "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }],
        },
    });
    let table = table::table("", "Pod", &[pod], json!({}), "None", now());
    let row = &table["rows"][0];
    assert_eq!(
        row["cells"],
        json!([
            "pi-xk2lp",
            "0/1",
            "Completed",
            "0",
            "3m12s",
            "<none>",
            "<none>",
            "<none>",
            "<none>"
        ])
    );
    assert_eq!(
        row["conditions"],
        json!([{
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully."
        }])
    );
    let row_keys: Vec<&String> = row.as_object().unwrap().keys().collect();
    assert_eq!(row_keys, ["cells", "conditions", "object"]);
}

#[test]
fn pod_evicted() {
    let pod = json!({
        "metadata": {"name": "evicted", "creationTimestamp": ago(2 * DAY)},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."},
    });
    let table = table::table("", "Pod", &[pod], json!({}), "None", now());
    assert_eq!(table["rows"][0]["cells"][2], "Evicted");
    assert_eq!(table["rows"][0]["cells"][4], "2d");
    assert_eq!(table["rows"][0]["conditions"][0]["reason"], "Failed");
    assert_eq!(
        table["rows"][0]["conditions"][0]["message"],
        "The pod failed."
    );
}

#[test]
fn pod_running_init_container() {
    // kubectl: myapp-pod   0/1   Init:0/2   0   6s
    let pod = json!({
        "metadata": {"name": "myapp-pod", "creationTimestamp": ago(6)},
        "spec": {
            "initContainers": [{"name": "init-myservice"}, {"name": "init-mydb"}],
            "containers": [{"name": "myapp-container"}],
        },
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"}],
            "initContainerStatuses": [
                {"name": "init-myservice", "ready": false, "restartCount": 0,
                 "state": {"running": {"startedAt": ago(4)}}},
                {"name": "init-mydb", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "PodInitializing"}}},
            ],
            "containerStatuses": [
                {"name": "myapp-container", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "PodInitializing"}}},
            ],
        },
    });
    assert_eq!(
        cells("", "Pod", pod.clone()),
        json!([
            "myapp-pod",
            "0/1",
            "Init:0/2",
            "0",
            "6s",
            "<none>",
            "<none>",
            "<none>",
            "<none>"
        ])
    );

    // The first init container done: Init:1/2.
    let mut second = pod;
    second["status"]["initContainerStatuses"][0]["state"] =
        json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
    second["status"]["initContainerStatuses"][1]["state"] =
        json!({"running": {"startedAt": ago(1)}});
    assert_eq!(cells("", "Pod", second)[2], "Init:1/2");
}

#[test]
fn pod_failing_init_container() {
    let pod = |state: Value, restarts: i64| {
        json!({
            "metadata": {"name": "p", "creationTimestamp": ago(10 * MINUTE)},
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app"}]},
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [{
                    "name": "init",
                    "restartCount": restarts,
                    "state": state,
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(40)}},
                }],
                "containerStatuses": [{"name": "app", "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}],
            },
        })
    };
    // kubectl: p   0/1   Init:CrashLoopBackOff   3 (40s ago)   10m
    assert_eq!(
        cells(
            "",
            "Pod",
            pod(json!({"waiting": {"reason": "CrashLoopBackOff"}}), 3)
        ),
        json!([
            "p",
            "0/1",
            "Init:CrashLoopBackOff",
            "3 (40s ago)",
            "10m",
            "<none>",
            "<none>",
            "<none>",
            "<none>"
        ])
    );
    assert_eq!(
        cells(
            "",
            "Pod",
            pod(json!({"terminated": {"exitCode": 1, "reason": "Error"}}), 4)
        )[2],
        "Init:Error"
    );
    assert_eq!(
        cells("", "Pod", pod(json!({"terminated": {"exitCode": 2}}), 4))[2],
        "Init:ExitCode:2"
    );
    assert_eq!(
        cells(
            "",
            "Pod",
            pod(json!({"terminated": {"exitCode": 143, "signal": 15}}), 4)
        )[2],
        "Init:Signal:15"
    );
}

#[test]
fn pod_with_running_sidecar() {
    // A restartable init container (sidecar) counts as a container.
    let pod = json!({
        "metadata": {"name": "with-sidecar", "creationTimestamp": ago(HOUR + 5 * MINUTE)},
        "spec": {
            "initContainers": [{"name": "logshipper", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{
                "name": "logshipper", "ready": true, "started": true, "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(20 * MINUTE)}},
            }],
            "containerStatuses": [{
                "name": "app", "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {}},
            }],
        },
    });
    assert_eq!(
        cells("", "Pod", pod),
        json!([
            "with-sidecar",
            "2/2",
            "Running",
            "1 (20m ago)",
            "65m",
            "<none>",
            "<none>",
            "<none>",
            "<none>"
        ])
    );
}

#[test]
fn pod_completed_container_with_another_running() {
    let pod = |ready: &str| {
        json!({
            "metadata": {"name": "two", "creationTimestamp": ago(DAY)},
            "spec": {"containers": [{"name": "done"}, {"name": "server"}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": ready}],
                "containerStatuses": [
                    {"name": "done", "ready": false, "restartCount": 0,
                     "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "server", "ready": true, "restartCount": 0, "state": {"running": {}}},
                ],
            },
        })
    };
    assert_eq!(
        slice(&cells("", "Pod", pod("True")), 1..3),
        json!(["1/2", "Running"])
    );
    assert_eq!(
        slice(&cells("", "Pod", pod("False")), 1..3),
        json!(["1/2", "NotReady"])
    );
}

#[test]
fn pod_terminating_and_node_lost() {
    let mut pod = running_coredns_pod();
    pod["metadata"]["deletionTimestamp"] = json!(ago(-30));
    assert_eq!(cells("", "Pod", pod.clone())[2], "Terminating");

    pod["status"]["reason"] = json!("NodeLost");
    assert_eq!(cells("", "Pod", pod.clone())[2], "Unknown");

    // A pod that already finished is not shown as Terminating.
    let mut done = pod;
    done["status"] = json!({"phase": "Succeeded"});
    assert_eq!(cells("", "Pod", done)[2], "Succeeded");
}

#[test]
fn pod_scheduling_gated() {
    let pod = json!({
        "metadata": {"name": "gated", "creationTimestamp": ago(30)},
        "spec": {"containers": [{"name": "app"}], "schedulingGates": [{"name": "example.com/foo"}]},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
        },
    });
    assert_eq!(cells("", "Pod", pod)[2], "SchedulingGated");
}

#[test]
fn pod_wide_columns() {
    let pod = json!({
        "metadata": {"name": "gates", "creationTimestamp": ago(90)},
        "spec": {
            "containers": [{"name": "app"}],
            "nodeName": "node-1",
            "readinessGates": [{"conditionType": "www.example.com/feature-1"}, {"conditionType": "example.com/two"}],
        },
        "status": {
            "phase": "Running",
            "nominatedNodeName": "node-2",
            "podIPs": [{"ip": "fd00::5"}, {"ip": "10.0.0.5"}],
            "conditions": [
                {"type": "www.example.com/feature-1", "status": "True"},
                {"type": "example.com/two", "status": "False"},
            ],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}],
        },
    });
    assert_eq!(
        cells("", "Pod", pod),
        json!([
            "gates", "1/1", "Running", "0", "90s", "fd00::5", "node-1", "node-2", "1/2"
        ])
    );
}

#[test]
fn pod_restarts_without_last_termination_time() {
    let pod = json!({
        "metadata": {"name": "p", "creationTimestamp": ago(HOUR)},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 3, "state": {"running": {}}},
                {"name": "b", "ready": true, "restartCount": 4, "state": {"running": {}}},
            ],
        },
    });
    assert_eq!(
        slice(&cells("", "Pod", pod), 1..4),
        json!(["2/2", "Running", "7"])
    );
}

// ---------------------------------------------------------------------------------------
// Deployment, ReplicaSet
// ---------------------------------------------------------------------------------------

#[test]
fn deployment_columns_and_cells() {
    assert_eq!(
        column_names("apps", "Deployment"),
        cols(&[
            ("Name", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1),
        ])
    );
    // kubectl -o wide: coredns   2/2   2   2   4d21h   coredns   registry.k8s.io/coredns/coredns:v1.11.1   k8s-app=kube-dns
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system",
                     "creationTimestamp": ago(4 * DAY + 21 * HOUR + 30 * MINUTE)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "template": {
                "metadata": {"labels": {"k8s-app": "kube-dns"}},
                "spec": {"containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.11.1"}]},
            },
        },
        "status": {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2},
    });
    assert_eq!(
        cells("apps", "Deployment", deployment),
        json!([
            "coredns",
            "2/2",
            2,
            2,
            "4d21h",
            "coredns",
            "registry.k8s.io/coredns/coredns:v1.11.1",
            "k8s-app=kube-dns"
        ])
    );
}

#[test]
fn deployment_rolling_out_with_expression_selector() {
    let deployment = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(45)},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"tier": "frontend", "app": "web"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "canary"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                    {"key": "beta", "operator": "Exists"},
                    {"key": "zone", "operator": "NotIn", "values": ["b"]},
                ],
            },
            "template": {"spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.27"},
                {"name": "sidecar", "image": "busybox:1.36"},
            ]}},
        },
        "status": {"replicas": 3, "updatedReplicas": 1},
    });
    assert_eq!(
        cells("apps", "Deployment", deployment),
        json!([
            "web",
            "0/3",
            1,
            0,
            "45s",
            "nginx,sidecar",
            "nginx:1.27,busybox:1.36",
            "app=web,beta,env in (canary,prod),!legacy,tier=frontend,zone notin (b)"
        ])
    );
}

#[test]
fn deployment_defaults_and_invalid_selector() {
    // No replicas: the API default of 1. No selector: "".
    let deployment = json!({"metadata": {"name": "d"}, "spec": {}});
    assert_eq!(
        cells("apps", "Deployment", deployment),
        json!(["d", "0/1", 0, 0, "<unknown>", "", "", ""])
    );
    let bad = json!({
        "metadata": {"name": "d"},
        "spec": {"replicas": 0, "selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}},
    });
    assert_eq!(
        slice(&cells("apps", "Deployment", bad), 1..8),
        json!(["0/0", 0, 0, "<unknown>", "", "", "<invalid>"])
    );
}

#[test]
fn replica_set_cells() {
    assert_eq!(
        column_names("apps", "ReplicaSet"),
        cols(&[
            ("Name", 0),
            ("Desired", 0),
            ("Current", 0),
            ("Ready", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1),
        ])
    );
    // kubectl -o wide: coredns-7db6d8ff4d   2   2   2   4d21h   coredns   registry.k8s.io/coredns/coredns:v1.11.1   k8s-app=kube-dns,pod-template-hash=7db6d8ff4d
    let rs = json!({
        "metadata": {"name": "coredns-7db6d8ff4d", "creationTimestamp": ago(4 * DAY + 21 * HOUR)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"pod-template-hash": "7db6d8ff4d", "k8s-app": "kube-dns"}},
            "template": {"spec": {"containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.11.1"}]}},
        },
        "status": {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 2},
    });
    assert_eq!(
        cells("apps", "ReplicaSet", rs),
        json!([
            "coredns-7db6d8ff4d",
            2,
            2,
            2,
            "4d21h",
            "coredns",
            "registry.k8s.io/coredns/coredns:v1.11.1",
            "k8s-app=kube-dns,pod-template-hash=7db6d8ff4d"
        ])
    );
    // An old ReplicaSet scaled to zero, with no selector to print.
    let old = json!({"metadata": {"name": "web-old", "creationTimestamp": ago(3 * DAY)},
                     "spec": {"replicas": 0}, "status": {"replicas": 0}});
    assert_eq!(
        cells("apps", "ReplicaSet", old),
        json!(["web-old", 0, 0, 0, "3d", "", "", "<none>"])
    );
    let bad = json!({"metadata": {"name": "x"},
                     "spec": {"selector": {"matchLabels": {"bad key!": "v"}}}});
    assert_eq!(cells("apps", "ReplicaSet", bad)[7], "<error>");
}

// ---------------------------------------------------------------------------------------
// Service, Endpoints, EndpointSlice
// ---------------------------------------------------------------------------------------

#[test]
fn service_cluster_ip() {
    assert_eq!(
        column_names("", "Service"),
        cols(&[
            ("Name", 0),
            ("Type", 0),
            ("Cluster-IP", 0),
            ("External-IP", 0),
            ("Port(s)", 0),
            ("Age", 0),
            ("Selector", 1),
        ])
    );
    // kubectl -o wide: kube-dns   ClusterIP   10.96.0.10   <none>   53/UDP,53/TCP,9153/TCP   4d21h   k8s-app=kube-dns
    let svc = json!({
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "creationTimestamp": ago(4 * DAY + 21 * HOUR)},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "selector": {"k8s-app": "kube-dns"},
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    });
    assert_eq!(
        cells("", "Service", svc),
        json!([
            "kube-dns",
            "ClusterIP",
            "10.96.0.10",
            "<none>",
            "53/UDP,53/TCP,9153/TCP",
            "4d21h",
            "k8s-app=kube-dns"
        ])
    );
}

#[test]
fn service_node_port_and_headless() {
    // kubectl: web   NodePort   10.96.12.34   <none>   80:30080/TCP,443:30443/TCP   5m
    let node_port = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(5 * MINUTE)},
        "spec": {
            "type": "NodePort",
            "clusterIPs": ["10.96.12.34"],
            "selector": {"app": "web", "tier": "fe"},
            "ports": [
                {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                {"port": 443, "nodePort": 30443},
            ],
        },
    });
    assert_eq!(
        cells("", "Service", node_port),
        json!([
            "web",
            "NodePort",
            "10.96.12.34",
            "<none>",
            "80:30080/TCP,443:30443/TCP",
            "5m",
            "app=web,tier=fe"
        ])
    );
    // kubectl: db   ClusterIP   None   <none>   5432/TCP   2d
    let headless = json!({
        "metadata": {"name": "db", "creationTimestamp": ago(2 * DAY + 3 * HOUR)},
        "spec": {"clusterIP": "None", "ports": [{"port": 5432}]},
    });
    assert_eq!(
        cells("", "Service", headless),
        json!([
            "db",
            "ClusterIP",
            "None",
            "<none>",
            "5432/TCP",
            "2d3h",
            "<none>"
        ])
    );
    let external_ips = json!({
        "metadata": {"name": "ext"},
        "spec": {"type": "ClusterIP", "clusterIPs": ["10.0.0.1"], "externalIPs": ["1.2.3.4", "5.6.7.8"]},
    });
    assert_eq!(
        slice(&cells("", "Service", external_ips), 3..5),
        json!(["1.2.3.4,5.6.7.8", "<none>"])
    );
}

#[test]
fn service_load_balancer_and_external_name() {
    let lb = |ingress: Value, external: Value| {
        json!({
            "metadata": {"name": "lb", "creationTimestamp": ago(HOUR)},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.50"], "externalIPs": external,
                     "ports": [{"port": 80, "nodePort": 31234, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": ingress}},
        })
    };
    // kubectl: lb   LoadBalancer   10.96.0.50   <pending>   80:31234/TCP   60m
    assert_eq!(
        cells("", "Service", lb(json!([]), json!([]))),
        json!([
            "lb",
            "LoadBalancer",
            "10.96.0.50",
            "<pending>",
            "80:31234/TCP",
            "60m",
            "<none>"
        ])
    );
    assert_eq!(
        cells(
            "",
            "Service",
            lb(
                json!([{"ip": "203.0.113.9"}, {"hostname": "a.example.com"}]),
                json!([])
            )
        )[3],
        "203.0.113.9,a.example.com"
    );
    // No clipping: the server always renders wide.
    assert_eq!(
        cells(
            "",
            "Service",
            lb(
                json!([{"hostname": "a1234567890.elb.us-east-1.amazonaws.com"}]),
                json!([])
            )
        )[3],
        "a1234567890.elb.us-east-1.amazonaws.com"
    );
    assert_eq!(
        cells(
            "",
            "Service",
            lb(json!([{"ip": "203.0.113.9"}]), json!(["198.51.100.1"]))
        )[3],
        "203.0.113.9,198.51.100.1"
    );
    // kubectl: my-db   ExternalName   <none>   db.example.com   <none>   10s
    let external_name = json!({
        "metadata": {"name": "my-db", "creationTimestamp": ago(10)},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"},
    });
    assert_eq!(
        cells("", "Service", external_name),
        json!([
            "my-db",
            "ExternalName",
            "<none>",
            "db.example.com",
            "<none>",
            "10s",
            "<none>"
        ])
    );
}

#[test]
fn endpoints_truncated_like_upstream() {
    assert_eq!(
        column_names("", "Endpoints"),
        cols(&[("Name", 0), ("Endpoints", 0), ("Age", 0)])
    );
    // kubectl: kube-dns   10.1.0.20:53,10.1.0.21:53,10.1.0.20:53 + 3 more...   4d21h
    let ep = json!({
        "metadata": {"name": "kube-dns", "creationTimestamp": ago(4 * DAY + 21 * HOUR)},
        "subsets": [{
            "addresses": [{"ip": "10.1.0.20"}, {"ip": "10.1.0.21"}],
            "ports": [
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "metrics", "port": 9153, "protocol": "TCP"},
            ],
        }],
    });
    assert_eq!(
        cells("", "Endpoints", ep),
        json!([
            "kube-dns",
            "10.1.0.20:53,10.1.0.21:53,10.1.0.20:53 + 3 more...",
            "4d21h"
        ])
    );
}

#[test]
fn endpoints_small_empty_headless_ipv6() {
    // kubectl: kubernetes   192.168.49.2:8443   10d
    let kubernetes = json!({
        "metadata": {"name": "kubernetes", "creationTimestamp": ago(10 * DAY)},
        "subsets": [{"addresses": [{"ip": "192.168.49.2"}], "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}]}],
    });
    assert_eq!(
        cells("", "Endpoints", kubernetes),
        json!(["kubernetes", "192.168.49.2:8443", "10d"])
    );
    // No ready pods: kubectl shows <none>.
    let none = json!({"metadata": {"name": "web", "creationTimestamp": ago(DAY)}});
    assert_eq!(cells("", "Endpoints", none)[1], "<none>");
    // Headless without ports: bare addresses.
    let headless = json!({"metadata": {"name": "h"},
        "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}]}]});
    assert_eq!(
        cells("", "Endpoints", headless)[1],
        "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."
    );
    let ipv6 = json!({"metadata": {"name": "v6"},
        "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
    assert_eq!(cells("", "Endpoints", ipv6)[1], "[fd00::1]:80");
    // Only not-ready addresses: an empty cell, as upstream.
    let not_ready = json!({"metadata": {"name": "nr"},
        "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": [{"port": 80}]}]});
    assert_eq!(cells("", "Endpoints", not_ready)[1], "");
}

#[test]
fn endpoint_slice_cells() {
    assert_eq!(
        column_names("discovery.k8s.io", "EndpointSlice"),
        cols(&[
            ("Name", 0),
            ("AddressType", 0),
            ("Ports", 0),
            ("Endpoints", 0),
            ("Age", 0),
        ])
    );
    // kubectl: kube-dns-7x2k9   IPv4   53,9153,53   10.244.0.2,10.244.0.3   4d21h
    let kube_dns = json!({
        "metadata": {"name": "kube-dns-7x2k9", "creationTimestamp": ago(4 * DAY + 21 * HOUR)},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.0.2"], "conditions": {"ready": true}},
            {"addresses": ["10.244.0.3"], "conditions": {"ready": true}},
        ],
        "ports": [
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            {"name": "metrics", "port": 9153, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ],
    });
    assert_eq!(
        cells("discovery.k8s.io", "EndpointSlice", kube_dns),
        json!([
            "kube-dns-7x2k9",
            "IPv4",
            "53,9153,53",
            "10.244.0.2,10.244.0.3",
            "4d21h"
        ])
    );
    // No endpoints yet: kubectl shows <unset>.
    let empty = json!({"metadata": {"name": "web-abcde", "creationTimestamp": ago(20)},
                       "addressType": "IPv4", "endpoints": [], "ports": null});
    assert_eq!(
        cells("discovery.k8s.io", "EndpointSlice", empty),
        json!(["web-abcde", "IPv4", "<unset>", "<unset>", "20s"])
    );
    let many = json!({"metadata": {"name": "m"}, "addressType": "IPv6",
        "endpoints": [{"addresses": ["fd00::1", "fd00::2"]}, {"addresses": ["fd00::3"]}, {"addresses": ["fd00::4", "fd00::5"]}],
        "ports": [{"port": 1}, {"name": "named"}, {}, {"port": 4}, {"port": 5}]});
    assert_eq!(
        slice(&cells("discovery.k8s.io", "EndpointSlice", many), 1..4),
        json!([
            "IPv6",
            "1,named,* + 2 more...",
            "fd00::1,fd00::2,fd00::3 + 2 more..."
        ])
    );
}

// ---------------------------------------------------------------------------------------
// ConfigMap, Secret, ServiceAccount, Namespace
// ---------------------------------------------------------------------------------------

#[test]
fn config_map_secret_service_account() {
    assert_eq!(
        column_names("", "ConfigMap"),
        cols(&[("Name", 0), ("Data", 0), ("Age", 0)])
    );
    // kubectl: kube-root-ca.crt   1   10d
    let cm = json!({"metadata": {"name": "kube-root-ca.crt", "creationTimestamp": ago(10 * DAY)},
                    "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}});
    assert_eq!(
        cells("", "ConfigMap", cm),
        json!(["kube-root-ca.crt", 1, "10d"])
    );
    let binary = json!({"metadata": {"name": "b", "creationTimestamp": ago(HOUR)},
                        "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AAE="}});
    assert_eq!(cells("", "ConfigMap", binary), json!(["b", 3, "60m"]));

    assert_eq!(
        column_names("", "Secret"),
        cols(&[("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)])
    );
    // kubectl: db-creds   Opaque   2   3h
    let secret = json!({"metadata": {"name": "db-creds", "creationTimestamp": ago(3 * HOUR)},
                        "type": "Opaque", "data": {"username": "YWRtaW4=", "password": "czNjcjN0"}});
    assert_eq!(
        cells("", "Secret", secret),
        json!(["db-creds", "Opaque", 2, "3h"])
    );
    let tls = json!({"metadata": {"name": "tls", "creationTimestamp": ago(400 * DAY)},
                     "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(
        cells("", "Secret", tls),
        json!(["tls", "kubernetes.io/tls", 2, "400d"])
    );
    let untyped = json!({"metadata": {"name": "u", "creationTimestamp": ago(5)}});
    assert_eq!(
        cells("", "Secret", untyped),
        json!(["u", "Opaque", 0, "5s"])
    );

    assert_eq!(
        column_names("", "ServiceAccount"),
        cols(&[("Name", 0), ("Secrets", 0), ("Age", 0)])
    );
    // kubectl: default   0   10d
    let sa = json!({"metadata": {"name": "default", "creationTimestamp": ago(10 * DAY)}});
    assert_eq!(
        cells("", "ServiceAccount", sa),
        json!(["default", 0, "10d"])
    );
    let with_secrets = json!({"metadata": {"name": "builder", "creationTimestamp": ago(2 * MINUTE)},
                              "secrets": [{"name": "builder-token"}]});
    assert_eq!(
        cells("", "ServiceAccount", with_secrets),
        json!(["builder", 1, "2m"])
    );
}

#[test]
fn namespace_cells() {
    assert_eq!(
        column_names("", "Namespace"),
        cols(&[("Name", 0), ("Status", 0), ("Age", 0)])
    );
    // kubectl: default   Active   10d
    let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(10 * DAY)},
                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
    assert_eq!(
        cells("", "Namespace", ns),
        json!(["default", "Active", "10d"])
    );
    let terminating = json!({"metadata": {"name": "old", "creationTimestamp": ago(DAY),
                                          "deletionTimestamp": ago(10)},
                             "status": {"phase": "Terminating"}});
    assert_eq!(
        cells("", "Namespace", terminating),
        json!(["old", "Terminating", "24h"])
    );
}

// ---------------------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------------------

fn minikube_node() -> Value {
    json!({
        "metadata": {
            "name": "minikube",
            "creationTimestamp": ago(10 * DAY + 2 * HOUR),
            "labels": {
                "kubernetes.io/hostname": "minikube",
                "node-role.kubernetes.io/control-plane": "",
                "node.kubernetes.io/exclude-from-external-load-balancers": "",
            },
        },
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "192.168.49.2"},
                {"type": "Hostname", "address": "minikube"},
            ],
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "DiskPressure", "status": "False"},
                {"type": "PIDPressure", "status": "False"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady"},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.30.0",
                "osImage": "Ubuntu 22.04.4 LTS",
                "kernelVersion": "6.5.0-1020-azure",
                "containerRuntimeVersion": "docker://26.0.1",
            },
        },
    })
}

#[test]
fn node_ready_control_plane() {
    assert_eq!(
        column_names("", "Node"),
        cols(&[
            ("Name", 0),
            ("Status", 0),
            ("Roles", 0),
            ("Age", 0),
            ("Version", 0),
            ("Internal-IP", 1),
            ("External-IP", 1),
            ("OS-Image", 1),
            ("Kernel-Version", 1),
            ("Container-Runtime", 1),
        ])
    );
    // kubectl -o wide: minikube   Ready   control-plane   10d   v1.30.0   192.168.49.2   <none>   Ubuntu 22.04.4 LTS   6.5.0-1020-azure   docker://26.0.1
    assert_eq!(
        cells("", "Node", minikube_node()),
        json!([
            "minikube",
            "Ready",
            "control-plane",
            "10d",
            "v1.30.0",
            "192.168.49.2",
            "<none>",
            "Ubuntu 22.04.4 LTS",
            "6.5.0-1020-azure",
            "docker://26.0.1"
        ])
    );
}

#[test]
fn node_status_variants_and_roles() {
    let mut cordoned = minikube_node();
    cordoned["spec"]["unschedulable"] = json!(true);
    cordoned["status"]["conditions"][3]["status"] = json!("Unknown");
    cordoned["metadata"]["labels"] = json!({
        "node-role.kubernetes.io/worker": "",
        "node-role.kubernetes.io/control-plane": "",
        "kubernetes.io/role": "master",
        "node-role.kubernetes.io/": "",
    });
    cordoned["status"]["addresses"] = json!([
        {"type": "ExternalIP", "address": "203.0.113.7"},
        {"type": "InternalIP", "address": "10.0.0.7"},
    ]);
    assert_eq!(
        slice(&cells("", "Node", cordoned), 0..7),
        json!([
            "minikube",
            "NotReady,SchedulingDisabled",
            "control-plane,master,worker",
            "10d",
            "v1.30.0",
            "10.0.0.7",
            "203.0.113.7"
        ])
    );

    // A node that registered but never reported status.
    let bare = json!({"metadata": {"name": "new-node", "creationTimestamp": ago(3)}});
    assert_eq!(
        cells("", "Node", bare),
        json!([
            "new-node",
            "Unknown",
            "<none>",
            "3s",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Event, Lease
// ---------------------------------------------------------------------------------------

#[test]
fn event_cells() {
    assert_eq!(
        column_names("", "Event"),
        cols(&[
            ("Last Seen", 0),
            ("Type", 0),
            ("Reason", 0),
            ("Object", 0),
            ("Subobject", 1),
            ("Source", 1),
            ("Message", 0),
            ("First Seen", 1),
            ("Count", 1),
            ("Name", 1),
        ])
    );
    // kubectl: 2m   Normal   Pulled   pod/nginx-7854ff8877-9xq2k   Container image "nginx:1.27" already present on machine
    let event = json!({
        "metadata": {"name": "nginx-7854ff8877-9xq2k.17d8a3f6c1e2b4a5", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "nginx-7854ff8877-9xq2k", "namespace": "default",
                           "fieldPath": "spec.containers{nginx}"},
        "reason": "Pulled",
        "message": "Container image \"nginx:1.27\" already present on machine\n",
        "source": {"component": "kubelet", "host": "minikube"},
        "firstTimestamp": ago(15 * MINUTE),
        "lastTimestamp": ago(2 * MINUTE),
        "count": 4,
        "type": "Normal",
    });
    assert_eq!(
        cells("", "Event", event),
        json!([
            "2m",
            "Normal",
            "Pulled",
            "pod/nginx-7854ff8877-9xq2k",
            "spec.containers{nginx}",
            "kubelet, minikube",
            "Container image \"nginx:1.27\" already present on machine",
            "15m",
            4,
            "nginx-7854ff8877-9xq2k.17d8a3f6c1e2b4a5"
        ])
    );
}

#[test]
fn event_from_new_api_and_series() {
    // Written through events.k8s.io: eventTime and reporting fields, no count or timestamps.
    let event = json!({
        "metadata": {"name": "web.1"},
        "involvedObject": {"kind": "Deployment", "name": "web"},
        "reason": "ScalingReplicaSet",
        "message": "Scaled up replica set web-5d8f7c9b4 to 3",
        "eventTime": "2024-06-01T11:59:15.123456Z",
        "reportingComponent": "deployment-controller",
        "reportingInstance": "",
        "type": "Normal",
    });
    assert_eq!(
        cells("", "Event", event.clone()),
        json!([
            "44s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller",
            "Scaled up replica set web-5d8f7c9b4 to 3",
            "44s",
            1,
            "web.1"
        ])
    );
    let mut series = event;
    series["series"] = json!({"count": 12, "lastObservedTime": "2024-06-01T11:58:00.000000Z"});
    let series_cells = cells("", "Event", series);
    assert_eq!(series_cells[0], "2m");
    assert_eq!(series_cells[8], 12);

    // Cluster-scoped involved object without a name; no timestamps at all.
    let bare = json!({"involvedObject": {"kind": "Node"}, "type": "Warning"});
    assert_eq!(
        cells("", "Event", bare),
        json!([
            "<unknown>",
            "Warning",
            "",
            "node",
            "",
            "",
            "",
            "<unknown>",
            1,
            ""
        ])
    );
}

#[test]
fn lease_cells() {
    assert_eq!(
        column_names("coordination.k8s.io", "Lease"),
        cols(&[("Name", 0), ("Holder", 0), ("Age", 0)])
    );
    // kubectl -n kube-system: kube-controller-manager   minikube_6c1b1c0e-...   10d
    let lease = json!({
        "metadata": {"name": "kube-controller-manager", "creationTimestamp": ago(10 * DAY)},
        "spec": {"holderIdentity": "minikube_6c1b1c0e-2f4e-4b8c-9a51-3c1f0e3d2a10",
                 "leaseDurationSeconds": 15, "renewTime": "2024-06-01T11:59:58.000000Z"},
    });
    assert_eq!(
        cells("coordination.k8s.io", "Lease", lease),
        json!([
            "kube-controller-manager",
            "minikube_6c1b1c0e-2f4e-4b8c-9a51-3c1f0e3d2a10",
            "10d"
        ])
    );
    let free = json!({"metadata": {"name": "free", "creationTimestamp": ago(MINUTE)}, "spec": {}});
    assert_eq!(
        cells("coordination.k8s.io", "Lease", free),
        json!(["free", "", "60s"])
    );
}

// ---------------------------------------------------------------------------------------
// Unknown kinds, age
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_kind_gets_name_and_age() {
    let columns =
        table::table("example.com", "Widget", &[], json!({}), "None", now())["columnDefinitions"]
            .clone();
    assert_eq!(columns[0]["name"], "Name");
    assert_eq!(columns[0]["format"], "name");
    assert_eq!(columns[1]["name"], "Age");
    assert_eq!(columns[1]["type"], "date");
    assert_eq!(columns.as_array().unwrap().len(), 2);

    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                        "metadata": {"name": "w1", "creationTimestamp": ago(3 * HOUR + 20 * MINUTE)}});
    assert_eq!(
        cells("example.com", "Widget", widget),
        json!(["w1", "3h20m"])
    );
    assert_eq!(
        cells(
            "example.com",
            "Widget",
            json!({"metadata": {"name": "w2", "creationTimestamp": "yesterday"}})
        ),
        json!(["w2", "<invalid>"])
    );
    assert_eq!(
        cells("example.com", "Widget", json!({"metadata": {"name": "w3"}})),
        json!(["w3", null])
    );
    // The group matters: a Pod of another group is not printed as a core Pod.
    assert_eq!(column_names("example.com", "Pod").len(), 2);
}

#[test]
fn ages_follow_human_duration() {
    let age = |seconds: i64| -> Value {
        cells(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c", "creationTimestamp": ago(seconds)}}),
        )[2]
        .clone()
    };
    assert_eq!(age(0), "0s");
    assert_eq!(age(45), "45s");
    assert_eq!(age(119), "119s");
    assert_eq!(age(2 * MINUTE), "2m");
    assert_eq!(age(2 * MINUTE + 30), "2m30s");
    assert_eq!(age(9 * MINUTE + 59), "9m59s");
    assert_eq!(age(10 * MINUTE + 30), "10m");
    assert_eq!(age(179 * MINUTE), "179m");
    assert_eq!(age(3 * HOUR), "3h");
    assert_eq!(age(7 * HOUR + 59 * MINUTE), "7h59m");
    assert_eq!(age(8 * HOUR + 30 * MINUTE), "8h");
    assert_eq!(age(47 * HOUR), "47h");
    assert_eq!(age(2 * DAY), "2d");
    assert_eq!(age(7 * DAY + 23 * HOUR), "7d23h");
    assert_eq!(age(8 * DAY + 5 * HOUR), "8d");
    assert_eq!(age(729 * DAY), "729d");
    assert_eq!(age(730 * DAY), "2y");
    assert_eq!(age(3 * 365 * DAY + 10 * DAY), "3y10d");
    assert_eq!(age(9 * 365 * DAY), "9y");
    // Clock skew: up to a second in the future is "now"; beyond is invalid.
    assert_eq!(age(-1), "0s");
    assert_eq!(age(-2), "<invalid>");
    assert_eq!(age(-3600), "<invalid>");
}

#[test]
fn unset_or_bad_creation_timestamp_is_unknown() {
    let age = |ts: Value| -> Value {
        cells(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c", "creationTimestamp": ts}}),
        )[2]
        .clone()
    };
    assert_eq!(age(Value::Null), "<unknown>");
    assert_eq!(age(json!("0001-01-01T00:00:00Z")), "<unknown>");
    assert_eq!(age(json!("not a time")), "<unknown>");
    assert_eq!(age(json!(12345)), "<unknown>");
    assert_eq!(age(json!("2024-06-01T11:59:30.5+00:00")), "29s");
    assert_eq!(age(json!("1900-01-01T00:00:00Z")), "124y");
}

// ---------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------

const KINDS: &[(&str, &str)] = &[
    ("", "Pod"),
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("", "Service"),
    ("", "Endpoints"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "ServiceAccount"),
    ("", "Namespace"),
    ("", "Node"),
    ("", "Event"),
    ("coordination.k8s.io", "Lease"),
    ("example.com", "Widget"),
];

/// Field names the printers read, so random objects reach deep into their paths.
const KEYS: &[&str] = &[
    "metadata",
    "name",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "spec",
    "status",
    "containers",
    "initContainers",
    "containerStatuses",
    "initContainerStatuses",
    "state",
    "lastState",
    "waiting",
    "running",
    "terminated",
    "reason",
    "exitCode",
    "signal",
    "finishedAt",
    "restartCount",
    "ready",
    "started",
    "restartPolicy",
    "phase",
    "conditions",
    "type",
    "conditionType",
    "readinessGates",
    "podIP",
    "podIPs",
    "ip",
    "nodeName",
    "nominatedNodeName",
    "replicas",
    "readyReplicas",
    "updatedReplicas",
    "availableReplicas",
    "selector",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "template",
    "image",
    "clusterIP",
    "clusterIPs",
    "externalIPs",
    "ports",
    "port",
    "nodePort",
    "protocol",
    "loadBalancer",
    "ingress",
    "hostname",
    "externalName",
    "subsets",
    "addresses",
    "addressType",
    "endpoints",
    "data",
    "binaryData",
    "secrets",
    "unschedulable",
    "address",
    "nodeInfo",
    "kubeletVersion",
    "osImage",
    "involvedObject",
    "kind",
    "fieldPath",
    "source",
    "component",
    "host",
    "message",
    "firstTimestamp",
    "lastTimestamp",
    "eventTime",
    "series",
    "count",
    "lastObservedTime",
    "holderIdentity",
    "node-role.kubernetes.io/x",
    "kubernetes.io/role",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("2024-06-01T11:00:00Z"),
            Just("0001-01-01T00:00:00Z"),
            Just("-009999-01-01T00:00:00Z"),
            Just("9999-12-31T23:59:59.999999999Z"),
            Just("1970-01-01T00:00:00Z"),
            Just("True"),
            Just("Always"),
            Just("In"),
            Just("NotIn"),
            Just("Exists"),
            Just("DoesNotExist"),
            Just("Completed"),
            Just("Running"),
            Just("Succeeded"),
            Just("LoadBalancer"),
            Just("NodePort"),
            Just("ExternalName"),
            Just("Ready"),
            Just("InternalIP"),
            Just(""),
        ]
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ]
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| ((*k).to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_json_renders_without_panicking(
        objects in prop::collection::vec(arbitrary_json(), 0..4),
        kind in prop::sample::select(KINDS),
        include in prop::sample::select(&["Object", "Metadata", "None", "bogus"][..]),
        list_meta in arbitrary_json(),
        now_seconds in Timestamp::MIN.as_second()..Timestamp::MAX.as_second(),
    ) {
        let now = Timestamp::from_second(now_seconds).unwrap();
        let table = table::table(kind.0, kind.1, &objects, list_meta, include, now);
        let width = table["columnDefinitions"].as_array().unwrap().len();
        let rows = table["rows"].as_array().unwrap();
        prop_assert_eq!(rows.len(), objects.len());
        for row in rows {
            // One cell per column, each a string, integer or (for a date) null.
            let cells = row["cells"].as_array().unwrap();
            prop_assert_eq!(cells.len(), width);
            for cell in cells {
                prop_assert!(cell.is_string() || cell.is_i64() || cell.is_null());
            }
        }
        prop_assert!(table["metadata"].is_object());
    }
}
