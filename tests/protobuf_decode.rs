//! Protobuf request bodies decode to the JSON Kubernetes itself would produce.
//!
//! Objects are built with k8s-pb's prost types (the same generated code client-go's protos
//! describe), encoded with prost inside a `runtime.Unknown` envelope as client-go writes it,
//! decoded by `protobuf::decode`, and then checked two ways: k8s-openapi must read the JSON
//! and write back exactly the same JSON (so every name and value shape is one Kubernetes
//! uses, and nothing is silently dropped), and chosen paths must hold the values that were
//! encoded (so each field number maps to the right name).

#[path = "../src/apiserver/protobuf.rs"]
mod protobuf;

use std::collections::BTreeMap;

use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::autoscaling::v1 as autoscaling;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::discovery::v1 as discovery;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use prost::Message;
use protobuf::{ProtobufError, decode};
use serde_json::{Value, json};

// ---- building blocks -------------------------------------------------------------------

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn smap(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn qmap(kv: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    kv.iter().map(|(k, v)| (k.to_string(), q(v))).collect()
}

fn q(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

fn time(seconds: i64) -> Option<meta::Time> {
    Some(meta::Time {
        seconds: Some(seconds),
        nanos: Some(0),
    })
}

fn micro(seconds: i64, nanos: i32) -> Option<meta::MicroTime> {
    Some(meta::MicroTime {
        seconds: Some(seconds),
        nanos: Some(nanos),
    })
}

/// As Go writes an IntOrString: all three fields, always.
fn int_or_str_int(v: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(v),
        str_val: s(""),
    })
}

fn int_or_str_str(v: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(v),
    })
}

fn meta(name: &str, namespace: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        namespace: if namespace.is_empty() {
            None
        } else {
            s(namespace)
        },
        labels: smap(&[("app", name), ("tier", "web")]),
        annotations: smap(&[("note", "a \"quoted\" value")]),
        ..Default::default()
    })
}

const T0: i64 = 1_767_323_045; // 2026-01-02T03:04:05Z

/// A body exactly as client-go's protobuf serializer frames it.
fn body(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(raw),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// Encode `obj`, decode it as `K`, and check k8s-openapi reads and re-writes the same JSON.
fn roundtrip<K, M>(obj: &M) -> Value
where
    K: k8s_openapi::Resource + Serialize + DeserializeOwned,
    M: Message,
{
    let json = decode(
        &body(K::API_VERSION, K::KIND, obj.encode_to_vec()),
        K::API_VERSION,
        K::KIND,
    )
    .unwrap_or_else(|e| panic!("decode {}: {e}", K::KIND));
    let typed: K = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("k8s-openapi rejects decoded {}: {e}\n{json:#}", K::KIND));
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        again, json,
        "k8s-openapi's JSON (left) differs from the decoded JSON (right)"
    );
    json
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {v:#}"))
}

// ---- kinds -----------------------------------------------------------------------------

/// What `kubectl create namespace x` sends: Go writes every non-pointer field, so the
/// zero values must disappear again, leaving what `kubectl create -o json` shows.
#[test]
fn namespace_as_kubectl_sends_it() {
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: s("x"),
            generate_name: s(""),
            namespace: s(""),
            self_link: s(""),
            uid: s(""),
            resource_version: s(""),
            generation: Some(0),
            creation_timestamp: Some(meta::Time::default()),
            ..Default::default()
        }),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus {
            phase: s(""),
            conditions: vec![],
        }),
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::Namespace, _>(&ns);
    assert_eq!(
        json,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "spec": {}, "status": {}})
    );
    // Keys come out in Kubernetes' own order.
    let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec", "status"]);
}

#[test]
fn namespace_full() {
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: s("prod"),
            generate_name: s("prod-"),
            uid: s("8d5f2c9e-0000-4000-8000-000000000001"),
            resource_version: s("42"),
            generation: Some(3),
            creation_timestamp: time(T0),
            deletion_timestamp: time(T0 + 60),
            deletion_grace_period_seconds: Some(0),
            labels: smap(&[("kubernetes.io/metadata.name", "prod")]),
            annotations: smap(&[("a", "b")]),
            owner_references: vec![meta::OwnerReference {
                api_version: s("v1"),
                kind: s("ConfigMap"),
                name: s("owner"),
                uid: s("u-1"),
                controller: Some(false),
                block_owner_deletion: Some(true),
            }],
            finalizers: strs(&["kubernetes"]),
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl-create"),
                operation: s("Update"),
                api_version: s("v1"),
                time: time(T0),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:metadata":{"f:labels":{".":{}}}}"#.to_vec()),
                }),
                subresource: s(""),
            }],
            ..Default::default()
        }),
        spec: Some(core::NamespaceSpec {
            finalizers: strs(&["kubernetes"]),
        }),
        status: Some(core::NamespaceStatus {
            phase: s("Terminating"),
            conditions: vec![core::NamespaceCondition {
                r#type: s("NamespaceDeletionContentFailure"),
                status: s("False"),
                last_transition_time: time(T0),
                reason: s("ContentDeleted"),
                message: s("All content successfully deleted"),
            }],
        }),
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::Namespace, _>(&ns);
    assert_eq!(
        at(&json, "/metadata"),
        &json!({
            "name": "prod", "generateName": "prod-", "uid": "8d5f2c9e-0000-4000-8000-000000000001",
            "resourceVersion": "42", "generation": 3, "creationTimestamp": "2026-01-02T03:04:05Z",
            "deletionTimestamp": "2026-01-02T03:05:05Z", "deletionGracePeriodSeconds": 0,
            "labels": {"kubernetes.io/metadata.name": "prod"}, "annotations": {"a": "b"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "u-1",
                                 "controller": false, "blockOwnerDeletion": true}],
            "finalizers": ["kubernetes"],
            "managedFields": [{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}]
        })
    );
    assert_eq!(
        at(&json, "/status/conditions/0/lastTransitionTime"),
        "2026-01-02T03:04:05Z"
    );
}

#[test]
fn configmap() {
    let cm = core::ConfigMap {
        metadata: meta("settings", "default"),
        immutable: Some(false),
        data: smap(&[("app.properties", "a=1\nb=2\n"), ("empty", "")]),
        binary_data: [("blob".to_owned(), vec![0u8, 159, 146, 150, 255])].into(),
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::ConfigMap, _>(&cm);
    // A pointer field set to false is a statement, not an absence.
    assert_eq!(at(&json, "/immutable"), false);
    assert_eq!(
        at(&json, "/data"),
        &json!({"app.properties": "a=1\nb=2\n", "empty": ""})
    );
    assert_eq!(at(&json, "/binaryData/blob"), "AJ+Slv8=");
    assert_eq!(at(&json, "/metadata/namespace"), "default");
}

#[test]
fn secret_with_binary_data() {
    let all_bytes: Vec<u8> = (0..=255).collect();
    let secret = core::Secret {
        metadata: meta("creds", "team-a"),
        immutable: Some(true),
        data: [
            ("bin".to_owned(), all_bytes.clone()),
            ("password".to_owned(), b"s3cr3t".to_vec()),
            ("one".to_owned(), vec![0xff]),
            ("two".to_owned(), vec![0xff, 0xfe]),
            ("empty".to_owned(), vec![]),
        ]
        .into(),
        string_data: smap(&[("plain", "text")]),
        r#type: s("kubernetes.io/basic-auth"),
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::Secret, _>(&secret);
    assert_eq!(at(&json, "/data/password"), "czNjcjN0");
    assert_eq!(at(&json, "/data/one"), "/w==");
    assert_eq!(at(&json, "/data/two"), "//4=");
    assert_eq!(at(&json, "/data/empty"), "");
    assert_eq!(at(&json, "/stringData/plain"), "text");
    assert_eq!(at(&json, "/type"), "kubernetes.io/basic-auth");
    let typed: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json).unwrap();
    assert_eq!(typed.data.unwrap()["bin"].0, all_bytes);
}

#[test]
fn serviceaccount() {
    let sa = core::ServiceAccount {
        metadata: meta("builder", "ci"),
        secrets: vec![core::ObjectReference {
            name: s("builder-token"),
            ..Default::default()
        }],
        image_pull_secrets: vec![core::LocalObjectReference {
            name: s("registry"),
        }],
        automount_service_account_token: Some(false),
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::ServiceAccount, _>(&sa);
    assert_eq!(at(&json, "/automountServiceAccountToken"), false);
    assert_eq!(at(&json, "/secrets"), &json!([{"name": "builder-token"}]));
    assert_eq!(
        at(&json, "/imagePullSecrets"),
        &json!([{"name": "registry"}])
    );
}

#[test]
fn service_with_int_and_string_target_ports() {
    let svc = core::Service {
        metadata: meta("web", "default"),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: s("http"),
                    protocol: s("TCP"),
                    app_protocol: s("http"),
                    port: Some(80),
                    target_port: int_or_str_int(8080),
                    node_port: Some(30080),
                },
                core::ServicePort {
                    name: s("metrics"),
                    protocol: s("TCP"),
                    port: Some(9090),
                    target_port: int_or_str_str("metrics"),
                    node_port: Some(0),
                    ..Default::default()
                },
            ],
            selector: smap(&[("app", "web")]),
            cluster_ip: s("10.96.0.10"),
            cluster_ips: strs(&["10.96.0.10", "fd00::10"]),
            r#type: s("NodePort"),
            external_ips: strs(&["192.0.2.1"]),
            session_affinity: s("ClientIP"),
            load_balancer_source_ranges: strs(&["10.0.0.0/8"]),
            external_traffic_policy: s("Local"),
            health_check_node_port: Some(0),
            publish_not_ready_addresses: Some(false),
            session_affinity_config: Some(core::SessionAffinityConfig {
                client_ip: Some(core::ClientIpConfig {
                    timeout_seconds: Some(10800),
                }),
            }),
            ip_families: strs(&["IPv4", "IPv6"]),
            ip_family_policy: s("PreferDualStack"),
            allocate_load_balancer_node_ports: Some(false),
            internal_traffic_policy: s("Cluster"),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus {
                ingress: vec![core::LoadBalancerIngress {
                    ip: s("192.0.2.10"),
                    hostname: s(""),
                    ip_mode: s("VIP"),
                    ports: vec![core::PortStatus {
                        port: Some(80),
                        protocol: s("TCP"),
                        error: None,
                    }],
                }],
            }),
            conditions: vec![],
        }),
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::Service, _>(&svc);
    assert_eq!(
        at(&json, "/spec/ports"),
        &json!([
            {"name": "http", "protocol": "TCP", "appProtocol": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
            {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": "metrics"}
        ])
    );
    assert_eq!(
        at(&json, "/spec/clusterIPs"),
        &json!(["10.96.0.10", "fd00::10"])
    );
    assert_eq!(at(&json, "/spec/externalIPs"), &json!(["192.0.2.1"]));
    assert_eq!(
        at(&json, "/spec/sessionAffinityConfig/clientIP/timeoutSeconds"),
        10800
    );
    assert_eq!(at(&json, "/spec/allocateLoadBalancerNodePorts"), false);
    assert!(json.pointer("/spec/healthCheckNodePort").is_none());
    assert!(json.pointer("/spec/publishNotReadyAddresses").is_none());
    assert_eq!(
        at(&json, "/status/loadBalancer/ingress/0"),
        &json!({"ip": "192.0.2.10", "ipMode": "VIP", "ports": [{"port": 80, "protocol": "TCP"}]})
    );
}

fn probe(handler: core::ProbeHandler) -> Option<core::Probe> {
    Some(core::Probe {
        handler: Some(handler),
        initial_delay_seconds: Some(5),
        timeout_seconds: Some(1),
        period_seconds: Some(10),
        success_threshold: Some(1),
        failure_threshold: Some(3),
        termination_grace_period_seconds: Some(0),
    })
}

fn container(name: &str) -> core::Container {
    core::Container {
        name: s(name),
        image: s("registry.example/app:1.2.3"),
        command: strs(&["/bin/app"]),
        args: strs(&["--port=8080", "--verbose"]),
        working_dir: s("/srv"),
        ports: vec![
            core::ContainerPort {
                name: s("http"),
                host_port: Some(0),
                container_port: Some(8080),
                protocol: s("TCP"),
                host_ip: s(""),
            },
            core::ContainerPort {
                name: s("dns"),
                host_port: Some(5353),
                container_port: Some(53),
                protocol: s("UDP"),
                host_ip: s("127.0.0.1"),
            },
        ],
        env_from: vec![
            core::EnvFromSource {
                prefix: s("CFG_"),
                config_map_ref: Some(core::ConfigMapEnvSource {
                    local_object_reference: Some(core::LocalObjectReference {
                        name: s("settings"),
                    }),
                    optional: Some(false),
                }),
                secret_ref: None,
            },
            core::EnvFromSource {
                secret_ref: Some(core::SecretEnvSource {
                    local_object_reference: Some(core::LocalObjectReference { name: s("creds") }),
                    optional: Some(true),
                }),
                ..Default::default()
            },
        ],
        env: vec![
            core::EnvVar {
                name: s("PLAIN"),
                value: s("1"),
                value_from: None,
            },
            core::EnvVar {
                name: s("EMPTY"),
                value: s(""),
                value_from: None,
            },
            core::EnvVar {
                name: s("POD_NAME"),
                value: s(""),
                value_from: Some(core::EnvVarSource {
                    field_ref: Some(core::ObjectFieldSelector {
                        api_version: s("v1"),
                        field_path: s("metadata.name"),
                    }),
                    ..Default::default()
                }),
            },
            core::EnvVar {
                name: s("MEM"),
                value_from: Some(core::EnvVarSource {
                    resource_field_ref: Some(core::ResourceFieldSelector {
                        container_name: s(name),
                        resource: s("limits.memory"),
                        divisor: Some(q("1Mi")),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            core::EnvVar {
                name: s("KEY"),
                value_from: Some(core::EnvVarSource {
                    config_map_key_ref: Some(core::ConfigMapKeySelector {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: s("settings"),
                        }),
                        key: s("key"),
                        optional: Some(true),
                    }),
                    secret_key_ref: Some(core::SecretKeySelector {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: s("creds"),
                        }),
                        key: s("password"),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: qmap(&[("cpu", "500m"), ("memory", "128Mi")]),
            requests: qmap(&[
                ("cpu", "250m"),
                ("memory", "64Mi"),
                ("ephemeral-storage", "1Gi"),
            ]),
            claims: vec![core::ResourceClaim {
                name: s("gpu"),
                request: s(""),
            }],
        }),
        resize_policy: vec![core::ContainerResizePolicy {
            resource_name: s("cpu"),
            restart_policy: s("NotRequired"),
        }],
        volume_mounts: vec![
            core::VolumeMount {
                name: s("config"),
                read_only: Some(true),
                mount_path: s("/etc/app"),
                sub_path: s(""),
                mount_propagation: s("None"),
                ..Default::default()
            },
            core::VolumeMount {
                name: s("scratch"),
                read_only: Some(false),
                mount_path: s("/tmp"),
                ..Default::default()
            },
        ],
        volume_devices: vec![core::VolumeDevice {
            name: s("raw"),
            device_path: s("/dev/xvda"),
        }],
        liveness_probe: probe(core::ProbeHandler {
            http_get: Some(core::HttpGetAction {
                path: s("/healthz"),
                port: int_or_str_str("http"),
                host: s(""),
                scheme: s("HTTP"),
                http_headers: vec![core::HttpHeader {
                    name: s("X-Probe"),
                    value: s("1"),
                }],
            }),
            ..Default::default()
        }),
        readiness_probe: probe(core::ProbeHandler {
            tcp_socket: Some(core::TcpSocketAction {
                port: int_or_str_int(8080),
                host: s(""),
            }),
            ..Default::default()
        }),
        startup_probe: probe(core::ProbeHandler {
            exec: Some(core::ExecAction {
                command: strs(&["cat", "/tmp/ready"]),
            }),
            ..Default::default()
        }),
        lifecycle: Some(core::Lifecycle {
            post_start: Some(core::LifecycleHandler {
                exec: Some(core::ExecAction {
                    command: strs(&["/bin/warm"]),
                }),
                ..Default::default()
            }),
            pre_stop: Some(core::LifecycleHandler {
                sleep: Some(core::SleepAction { seconds: Some(5) }),
                ..Default::default()
            }),
            stop_signal: None,
        }),
        termination_message_path: s("/dev/termination-log"),
        termination_message_policy: s("File"),
        image_pull_policy: s("IfNotPresent"),
        security_context: Some(core::SecurityContext {
            capabilities: Some(core::Capabilities {
                add: strs(&["NET_ADMIN"]),
                drop: strs(&["ALL"]),
            }),
            privileged: Some(false),
            se_linux_options: Some(core::SeLinuxOptions {
                level: s("s0:c1,c2"),
                ..Default::default()
            }),
            run_as_user: Some(0),
            run_as_group: Some(1000),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            seccomp_profile: Some(core::SeccompProfile {
                r#type: s("RuntimeDefault"),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(true),
        ..Default::default()
    }
}

fn volumes() -> Vec<core::Volume> {
    let vol = |name: &str, source: core::VolumeSource| core::Volume {
        name: s(name),
        volume_source: Some(source),
    };
    vec![
        vol(
            "config",
            core::VolumeSource {
                config_map: Some(core::ConfigMapVolumeSource {
                    local_object_reference: Some(core::LocalObjectReference {
                        name: s("settings"),
                    }),
                    items: vec![core::KeyToPath {
                        key: s("a"),
                        path: s("a.conf"),
                        mode: Some(0o400),
                    }],
                    default_mode: Some(0o644),
                    optional: Some(false),
                }),
                ..Default::default()
            },
        ),
        vol(
            "creds",
            core::VolumeSource {
                secret: Some(core::SecretVolumeSource {
                    secret_name: s("creds"),
                    items: vec![],
                    default_mode: Some(0),
                    optional: None,
                }),
                ..Default::default()
            },
        ),
        vol(
            "scratch",
            core::VolumeSource {
                empty_dir: Some(core::EmptyDirVolumeSource {
                    medium: s("Memory"),
                    size_limit: Some(q("64Mi")),
                }),
                ..Default::default()
            },
        ),
        vol(
            "host",
            core::VolumeSource {
                host_path: Some(core::HostPathVolumeSource {
                    path: s("/var/log"),
                    r#type: s(""),
                }),
                ..Default::default()
            },
        ),
        vol(
            "data",
            core::VolumeSource {
                persistent_volume_claim: Some(core::PersistentVolumeClaimVolumeSource {
                    claim_name: s("data"),
                    read_only: Some(false),
                }),
                ..Default::default()
            },
        ),
        vol(
            "podinfo",
            core::VolumeSource {
                downward_api: Some(core::DownwardAPIVolumeSource {
                    items: vec![core::DownwardAPIVolumeFile {
                        path: s("labels"),
                        field_ref: Some(core::ObjectFieldSelector {
                            api_version: s("v1"),
                            field_path: s("metadata.labels"),
                        }),
                        resource_field_ref: None,
                        mode: None,
                    }],
                    default_mode: Some(420),
                }),
                ..Default::default()
            },
        ),
        vol(
            "projected",
            core::VolumeSource {
                projected: Some(core::ProjectedVolumeSource {
                    sources: vec![
                        core::VolumeProjection {
                            service_account_token: Some(core::ServiceAccountTokenProjection {
                                audience: s(""),
                                expiration_seconds: Some(3607),
                                path: s("token"),
                            }),
                            ..Default::default()
                        },
                        core::VolumeProjection {
                            config_map: Some(core::ConfigMapProjection {
                                local_object_reference: Some(core::LocalObjectReference {
                                    name: s("kube-root-ca.crt"),
                                }),
                                items: vec![core::KeyToPath {
                                    key: s("ca.crt"),
                                    path: s("ca.crt"),
                                    mode: None,
                                }],
                                optional: None,
                            }),
                            ..Default::default()
                        },
                    ],
                    default_mode: Some(420),
                }),
                ..Default::default()
            },
        ),
        vol(
            "ephemeral",
            core::VolumeSource {
                ephemeral: Some(core::EphemeralVolumeSource {
                    volume_claim_template: Some(core::PersistentVolumeClaimTemplate {
                        metadata: meta("scratch", ""),
                        spec: Some(core::PersistentVolumeClaimSpec {
                            access_modes: strs(&["ReadWriteOnce"]),
                            resources: Some(core::VolumeResourceRequirements {
                                requests: qmap(&[("storage", "1Gi")]),
                                limits: BTreeMap::new(),
                            }),
                            storage_class_name: s(""),
                            ..Default::default()
                        }),
                    }),
                }),
                ..Default::default()
            },
        ),
    ]
}

fn pod_spec() -> core::PodSpec {
    let term = |key: &str| core::NodeSelectorTerm {
        match_expressions: vec![core::NodeSelectorRequirement {
            key: s(key),
            operator: s("In"),
            values: strs(&["a", "b"]),
        }],
        match_fields: vec![],
    };
    let pod_term = core::PodAffinityTerm {
        label_selector: Some(meta::LabelSelector {
            match_labels: smap(&[("app", "web")]),
            match_expressions: vec![meta::LabelSelectorRequirement {
                key: s("tier"),
                operator: s("NotIn"),
                values: strs(&["db"]),
            }],
        }),
        namespaces: strs(&["default"]),
        topology_key: s("kubernetes.io/hostname"),
        ..Default::default()
    };
    core::PodSpec {
        volumes: volumes(),
        init_containers: vec![core::Container {
            name: s("init"),
            image: s("busybox"),
            ..Default::default()
        }],
        containers: vec![
            container("app"),
            core::Container {
                name: s("sidecar"),
                image: s("proxy"),
                ..Default::default()
            },
        ],
        ephemeral_containers: vec![core::EphemeralContainer {
            ephemeral_container_common: Some(core::EphemeralContainerCommon {
                name: s("debug"),
                image: s("busybox"),
                stdin: Some(true),
                tty: Some(true),
                ..Default::default()
            }),
            target_container_name: s("app"),
        }],
        restart_policy: s("Always"),
        termination_grace_period_seconds: Some(0),
        active_deadline_seconds: Some(3600),
        dns_policy: s("ClusterFirst"),
        node_selector: smap(&[("kubernetes.io/os", "linux")]),
        service_account_name: s("builder"),
        service_account: s("builder"),
        automount_service_account_token: Some(false),
        node_name: s("node-1"),
        host_network: Some(true),
        host_pid: Some(false),
        host_ipc: Some(true),
        share_process_namespace: Some(false),
        security_context: Some(core::PodSecurityContext {
            run_as_user: Some(1000),
            run_as_non_root: Some(true),
            supplemental_groups: vec![4000, 0],
            fs_group: Some(0),
            sysctls: vec![core::Sysctl {
                name: s("net.core.somaxconn"),
                value: s("1024"),
            }],
            fs_group_change_policy: s("OnRootMismatch"),
            ..Default::default()
        }),
        image_pull_secrets: vec![core::LocalObjectReference {
            name: s("registry"),
        }],
        hostname: s("web-0"),
        subdomain: s("web"),
        affinity: Some(core::Affinity {
            node_affinity: Some(core::NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(core::NodeSelector {
                    node_selector_terms: vec![term("zone")],
                }),
                preferred_during_scheduling_ignored_during_execution: vec![
                    core::PreferredSchedulingTerm {
                        weight: Some(10),
                        preference: Some(term("disk")),
                    },
                ],
            }),
            pod_affinity: Some(core::PodAffinity {
                required_during_scheduling_ignored_during_execution: vec![pod_term.clone()],
                preferred_during_scheduling_ignored_during_execution: vec![],
            }),
            pod_anti_affinity: Some(core::PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: vec![],
                preferred_during_scheduling_ignored_during_execution: vec![
                    core::WeightedPodAffinityTerm {
                        weight: Some(100),
                        pod_affinity_term: Some(pod_term),
                    },
                ],
            }),
        }),
        scheduler_name: s("default-scheduler"),
        tolerations: vec![
            core::Toleration {
                key: s("node.kubernetes.io/not-ready"),
                operator: s("Exists"),
                value: s(""),
                effect: s("NoExecute"),
                toleration_seconds: Some(300),
            },
            core::Toleration {
                operator: s("Exists"),
                ..Default::default()
            },
        ],
        host_aliases: vec![core::HostAlias {
            ip: s("127.0.0.1"),
            hostnames: strs(&["foo.local"]),
        }],
        priority_class_name: s("high"),
        priority: Some(0),
        dns_config: Some(core::PodDnsConfig {
            nameservers: strs(&["1.1.1.1"]),
            searches: strs(&["svc.cluster.local"]),
            options: vec![core::PodDnsConfigOption {
                name: s("ndots"),
                value: s("2"),
            }],
        }),
        readiness_gates: vec![core::PodReadinessGate {
            condition_type: s("example.com/ready"),
        }],
        runtime_class_name: s("runc"),
        enable_service_links: Some(false),
        preemption_policy: s("Never"),
        overhead: qmap(&[("cpu", "10m")]),
        topology_spread_constraints: vec![core::TopologySpreadConstraint {
            max_skew: Some(1),
            topology_key: s("zone"),
            when_unsatisfiable: s("DoNotSchedule"),
            label_selector: Some(meta::LabelSelector {
                match_labels: smap(&[("app", "web")]),
                match_expressions: vec![],
            }),
            min_domains: Some(2),
            match_label_keys: strs(&["pod-template-hash"]),
            ..Default::default()
        }],
        set_hostname_as_fqdn: Some(false),
        os: Some(core::PodOs { name: s("linux") }),
        host_users: Some(false),
        scheduling_gates: vec![core::PodSchedulingGate { name: s("wait") }],
        resource_claims: vec![core::PodResourceClaim {
            name: s("gpu"),
            resource_claim_name: s("gpu-claim"),
            resource_claim_template_name: None,
        }],
        ..Default::default()
    }
}

#[test]
fn pod_rich() {
    let pod = core::Pod {
        metadata: meta("web-0", "default"),
        spec: Some(pod_spec()),
        status: Some(core::PodStatus {
            phase: s("Running"),
            conditions: vec![core::PodCondition {
                r#type: s("Ready"),
                status: s("True"),
                last_probe_time: Some(meta::Time::default()),
                last_transition_time: time(T0),
                reason: s(""),
                message: s(""),
                observed_generation: Some(0),
            }],
            message: s(""),
            host_ip: s("10.0.0.5"),
            host_ips: vec![core::HostIp { ip: s("10.0.0.5") }],
            pod_ip: s("10.244.0.7"),
            pod_ips: vec![
                core::PodIp {
                    ip: s("10.244.0.7"),
                },
                core::PodIp { ip: s("fd00::7") },
            ],
            start_time: time(T0),
            container_statuses: vec![core::ContainerStatus {
                name: s("app"),
                state: Some(core::ContainerState {
                    running: Some(core::ContainerStateRunning {
                        started_at: time(T0 + 1),
                    }),
                    ..Default::default()
                }),
                last_state: Some(core::ContainerState {
                    terminated: Some(core::ContainerStateTerminated {
                        exit_code: Some(137),
                        signal: Some(9),
                        reason: s("OOMKilled"),
                        message: s(""),
                        started_at: time(T0 - 100),
                        finished_at: time(T0 - 1),
                        container_id: s("containerd://abc"),
                    }),
                    ..Default::default()
                }),
                ready: Some(false),
                restart_count: Some(0),
                image: s("registry.example/app:1.2.3"),
                image_id: s("sha256:abc"),
                container_id: s("containerd://def"),
                started: Some(true),
                allocated_resources: qmap(&[("cpu", "250m")]),
                ..Default::default()
            }],
            qos_class: s("Burstable"),
            ..Default::default()
        }),
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::Pod, _>(&pod);
    let app = at(&json, "/spec/containers/0");
    assert_eq!(
        at(app, "/ports"),
        &json!([
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "dns", "hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"}
        ])
    );
    assert_eq!(at(app, "/env/1"), &json!({"name": "EMPTY"}));
    assert_eq!(at(app, "/env/3/valueFrom/resourceFieldRef/divisor"), "1Mi");
    assert_eq!(
        at(app, "/env/4/valueFrom/configMapKeyRef"),
        &json!({"name": "settings", "key": "key", "optional": true})
    );
    assert_eq!(
        at(app, "/envFrom/0"),
        &json!({"prefix": "CFG_", "configMapRef": {"name": "settings", "optional": false}})
    );
    assert_eq!(
        at(app, "/resources/limits"),
        &json!({"cpu": "500m", "memory": "128Mi"})
    );
    assert_eq!(
        at(app, "/livenessProbe"),
        &json!({
            "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP", "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
            "initialDelaySeconds": 5, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
            "failureThreshold": 3, "terminationGracePeriodSeconds": 0
        })
    );
    assert_eq!(at(app, "/readinessProbe/tcpSocket"), &json!({"port": 8080}));
    assert_eq!(at(app, "/lifecycle/preStop/sleep/seconds"), 5);
    assert_eq!(
        at(app, "/securityContext"),
        &json!({
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}, "privileged": false,
            "seLinuxOptions": {"level": "s0:c1,c2"}, "runAsUser": 0, "runAsGroup": 1000, "runAsNonRoot": false,
            "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
            "seccompProfile": {"type": "RuntimeDefault"}
        })
    );
    assert_eq!(at(app, "/tty"), true);
    assert!(
        app.get("stdin").is_none(),
        "zero non-pointer bools are omitted"
    );
    assert_eq!(
        at(&json, "/spec/volumes/0"),
        &json!({"name": "config", "configMap": {"name": "settings", "items": [{"key": "a", "path": "a.conf", "mode": 256}], "defaultMode": 420, "optional": false}})
    );
    assert_eq!(
        at(&json, "/spec/volumes/1"),
        &json!({"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0}})
    );
    assert_eq!(
        at(&json, "/spec/volumes/3"),
        &json!({"name": "host", "hostPath": {"path": "/var/log", "type": ""}})
    );
    assert_eq!(
        at(
            &json,
            "/spec/volumes/7/ephemeral/volumeClaimTemplate/spec/storageClassName"
        ),
        ""
    );
    assert_eq!(
        at(&json, "/spec/ephemeralContainers/0"),
        &json!({"name": "debug", "image": "busybox", "stdin": true, "tty": true, "targetContainerName": "app"})
    );
    let spec = at(&json, "/spec");
    assert_eq!(at(spec, "/terminationGracePeriodSeconds"), 0);
    assert_eq!(at(spec, "/hostNetwork"), true);
    assert_eq!(at(spec, "/hostIPC"), true);
    assert!(spec.get("hostPID").is_none());
    assert_eq!(at(spec, "/shareProcessNamespace"), false);
    assert_eq!(
        at(spec, "/securityContext/supplementalGroups"),
        &json!([4000, 0])
    );
    assert_eq!(at(spec, "/securityContext/fsGroup"), 0);
    assert_eq!(at(spec, "/priority"), 0);
    assert_eq!(at(spec, "/setHostnameAsFQDN"), false);
    assert_eq!(
        at(spec, "/dnsConfig/options/0"),
        &json!({"name": "ndots", "value": "2"})
    );
    assert_eq!(
        at(
            spec,
            "/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/weight"
        ),
        10
    );
    assert_eq!(at(spec, "/tolerations/1"), &json!({"operator": "Exists"}));
    let status = at(&json, "/status");
    assert_eq!(
        at(status, "/conditions/0"),
        &json!({"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"})
    );
    assert_eq!(
        at(status, "/podIPs"),
        &json!([{"ip": "10.244.0.7"}, {"ip": "fd00::7"}])
    );
    let cs = at(status, "/containerStatuses/0");
    assert_eq!(at(cs, "/ready"), false, "required fields keep their zero");
    assert_eq!(at(cs, "/restartCount"), 0);
    assert_eq!(at(cs, "/lastState/terminated/exitCode"), 137);
    assert_eq!(at(cs, "/state/running/startedAt"), "2026-01-02T03:04:06Z");
}

#[test]
fn deployment_and_replicaset() {
    let template = core::PodTemplateSpec {
        metadata: Some(meta::ObjectMeta {
            labels: smap(&[("app", "web")]),
            creation_timestamp: Some(meta::Time::default()),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("nginx"),
                image: s("nginx"),
                resources: Some(core::ResourceRequirements::default()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    };
    let selector = Some(meta::LabelSelector {
        match_labels: smap(&[("app", "web")]),
        match_expressions: vec![],
    });
    let deploy = apps::Deployment {
        metadata: meta("web", "default"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: selector.clone(),
            template: Some(template.clone()),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: int_or_str_str("25%"),
                    max_surge: int_or_str_int(1),
                }),
            }),
            min_ready_seconds: Some(0),
            revision_history_limit: Some(10),
            paused: Some(false),
            progress_deadline_seconds: Some(600),
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(3),
            updated_replicas: Some(3),
            ready_replicas: Some(2),
            available_replicas: Some(2),
            unavailable_replicas: Some(1),
            conditions: vec![apps::DeploymentCondition {
                r#type: s("Available"),
                status: s("True"),
                last_update_time: time(T0),
                last_transition_time: time(T0),
                reason: s("MinimumReplicasAvailable"),
                message: s("Deployment has minimum availability."),
            }],
            collision_count: Some(0),
            ..Default::default()
        }),
    };
    let json = roundtrip::<k8s_openapi::api::apps::v1::Deployment, _>(&deploy);
    assert_eq!(at(&json, "/apiVersion"), "apps/v1");
    assert_eq!(
        at(&json, "/spec/replicas"),
        0,
        "a pointer's explicit zero is kept"
    );
    assert!(json.pointer("/spec/minReadySeconds").is_none());
    assert!(json.pointer("/spec/paused").is_none());
    assert_eq!(
        at(&json, "/spec/strategy"),
        &json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}})
    );
    // As `kubectl create deployment --dry-run=client -o json` prints the template.
    assert_eq!(
        at(&json, "/spec/template"),
        &json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}})
    );
    assert_eq!(at(&json, "/status/collisionCount"), 0);
    assert_eq!(
        at(&json, "/status/conditions/0/lastUpdateTime"),
        "2026-01-02T03:04:05Z"
    );

    let rs = apps::ReplicaSet {
        metadata: Some(meta::ObjectMeta {
            name: s("web-5d4f"),
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("Deployment"),
                name: s("web"),
                uid: s("u"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            ..Default::default()
        }),
        spec: Some(apps::ReplicaSetSpec {
            replicas: Some(2),
            min_ready_seconds: Some(5),
            selector,
            template: Some(template),
        }),
        status: Some(apps::ReplicaSetStatus {
            replicas: Some(0),
            fully_labeled_replicas: Some(0),
            ready_replicas: Some(0),
            available_replicas: Some(0),
            observed_generation: Some(1),
            conditions: vec![apps::ReplicaSetCondition {
                r#type: s("ReplicaFailure"),
                status: s("True"),
                last_transition_time: time(T0),
                reason: s("FailedCreate"),
                message: s("quota"),
            }],
            ..Default::default()
        }),
    };
    let json = roundtrip::<k8s_openapi::api::apps::v1::ReplicaSet, _>(&rs);
    assert_eq!(
        at(&json, "/status"),
        &json!({"replicas": 0, "observedGeneration": 1, "conditions": [{"type": "ReplicaFailure", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z", "reason": "FailedCreate", "message": "quota"}]})
    );
    assert_eq!(at(&json, "/spec/minReadySeconds"), 5);
}

#[test]
fn node() {
    let node = core::Node {
        metadata: meta("node-1", ""),
        spec: Some(core::NodeSpec {
            pod_cidr: s("10.244.0.0/24"),
            pod_cid_rs: strs(&["10.244.0.0/24", "fd00:1::/64"]),
            provider_id: s("moor://node-1"),
            unschedulable: Some(true),
            taints: vec![core::Taint {
                key: s("node.kubernetes.io/unschedulable"),
                value: s(""),
                effect: s("NoSchedule"),
                time_added: time(T0),
            }],
            ..Default::default()
        }),
        status: Some(core::NodeStatus {
            capacity: qmap(&[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]),
            allocatable: qmap(&[("cpu", "3900m"), ("memory", "7.5Gi")]),
            conditions: vec![core::NodeCondition {
                r#type: s("Ready"),
                status: s("True"),
                last_heartbeat_time: time(T0),
                last_transition_time: time(T0 - 3600),
                reason: s("KubeletReady"),
                message: s("kubelet is posting ready status"),
            }],
            addresses: vec![
                core::NodeAddress {
                    r#type: s("InternalIP"),
                    address: s("10.0.0.5"),
                },
                core::NodeAddress {
                    r#type: s("Hostname"),
                    address: s("node-1"),
                },
            ],
            daemon_endpoints: Some(core::NodeDaemonEndpoints {
                kubelet_endpoint: Some(core::DaemonEndpoint { port: Some(10250) }),
            }),
            node_info: Some(core::NodeSystemInfo {
                machine_id: s("m"),
                system_uuid: s("s"),
                boot_id: s("b"),
                kernel_version: s("6.8.0"),
                os_image: s("Debian"),
                container_runtime_version: s("containerd://1.7"),
                kubelet_version: s("v1.33.0"),
                kube_proxy_version: s(""),
                operating_system: s("linux"),
                architecture: s("amd64"),
                swap: Some(core::NodeSwapStatus { capacity: Some(0) }),
            }),
            images: vec![core::ContainerImage {
                names: strs(&["nginx:latest"]),
                size_bytes: Some(70_000_000_000),
            }],
            volumes_in_use: strs(&["vol-1"]),
            volumes_attached: vec![core::AttachedVolume {
                name: s("vol-1"),
                device_path: s("/dev/sdb"),
            }],
            ..Default::default()
        }),
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::Node, _>(&node);
    assert_eq!(
        at(&json, "/spec/podCIDRs"),
        &json!(["10.244.0.0/24", "fd00:1::/64"])
    );
    assert_eq!(at(&json, "/spec/providerID"), "moor://node-1");
    assert_eq!(
        at(&json, "/spec/taints/0"),
        &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2026-01-02T03:04:05Z"})
    );
    assert_eq!(at(&json, "/status/images/0/sizeBytes"), 70_000_000_000i64);
    assert_eq!(
        at(&json, "/status/nodeInfo/kubeProxyVersion"),
        "",
        "required strings keep their zero"
    );
    assert_eq!(at(&json, "/status/nodeInfo/swap/capacity"), 0);
    assert_eq!(
        at(&json, "/status/daemonEndpoints/kubeletEndpoint/Port"),
        10250
    );
    assert_eq!(at(&json, "/status/allocatable/memory"), "7.5Gi");
}

#[test]
fn endpoints_and_endpointslice() {
    let ep = core::Endpoints {
        metadata: meta("web", "default"),
        subsets: vec![core::EndpointSubset {
            addresses: vec![core::EndpointAddress {
                ip: s("10.244.0.7"),
                hostname: s("web-0"),
                node_name: s("node-1"),
                target_ref: Some(core::ObjectReference {
                    kind: s("Pod"),
                    namespace: s("default"),
                    name: s("web-0"),
                    uid: s("u"),
                    ..Default::default()
                }),
            }],
            not_ready_addresses: vec![core::EndpointAddress {
                ip: s("10.244.0.8"),
                ..Default::default()
            }],
            ports: vec![core::EndpointPort {
                name: s("http"),
                port: Some(8080),
                protocol: s("TCP"),
                app_protocol: None,
            }],
        }],
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::Endpoints, _>(&ep);
    assert_eq!(
        at(&json, "/subsets/0/addresses/0/targetRef"),
        &json!({"kind": "Pod", "namespace": "default", "name": "web-0", "uid": "u"})
    );
    assert_eq!(
        at(&json, "/subsets/0/notReadyAddresses"),
        &json!([{"ip": "10.244.0.8"}])
    );

    let slice = discovery::EndpointSlice {
        metadata: meta("web-abc", "default"),
        address_type: s("IPv4"),
        endpoints: vec![discovery::Endpoint {
            addresses: strs(&["10.244.0.7"]),
            conditions: Some(discovery::EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: Some(false),
            }),
            hostname: s("web-0"),
            target_ref: Some(core::ObjectReference {
                kind: s("Pod"),
                name: s("web-0"),
                ..Default::default()
            }),
            deprecated_topology: smap(&[("zone", "a")]),
            node_name: s("node-1"),
            zone: s("a"),
            hints: Some(discovery::EndpointHints {
                for_zones: vec![discovery::ForZone { name: s("a") }],
                ..Default::default()
            }),
        }],
        ports: vec![discovery::EndpointPort {
            name: s(""),
            protocol: s("TCP"),
            port: Some(0),
            app_protocol: s("http"),
        }],
    };
    let json = roundtrip::<k8s_openapi::api::discovery::v1::EndpointSlice, _>(&slice);
    assert_eq!(
        at(&json, "/endpoints/0/conditions"),
        &json!({"ready": false, "serving": true, "terminating": false})
    );
    assert_eq!(
        at(&json, "/ports/0"),
        &json!({"name": "", "protocol": "TCP", "port": 0, "appProtocol": "http"})
    );
    assert_eq!(at(&json, "/endpoints/0/hints/forZones/0/name"), "a");
}

#[test]
fn event_and_lease_times() {
    let event = core::Event {
        metadata: meta("web-0.17a", "default"),
        involved_object: Some(core::ObjectReference {
            kind: s("Pod"),
            namespace: s("default"),
            name: s("web-0"),
            field_path: s("spec.containers{app}"),
            ..Default::default()
        }),
        reason: s("Pulled"),
        message: s("Successfully pulled image"),
        source: Some(core::EventSource {
            component: s("kubelet"),
            host: s("node-1"),
        }),
        first_timestamp: Some(meta::Time {
            seconds: Some(T0),
            nanos: Some(999_999_999),
        }),
        last_timestamp: time(T0 + 10),
        count: Some(2),
        r#type: s("Normal"),
        event_time: micro(T0, 123_456_789),
        series: Some(core::EventSeries {
            count: Some(2),
            last_observed_time: micro(T0 + 10, 5_000),
        }),
        action: s("Pulling"),
        related: None,
        reporting_component: s("kubelet"),
        reporting_instance: s("node-1"),
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::Event, _>(&event);
    // Go drops a Time's nanoseconds when decoding; MicroTime keeps microseconds.
    assert_eq!(at(&json, "/firstTimestamp"), "2026-01-02T03:04:05Z");
    assert_eq!(at(&json, "/eventTime"), "2026-01-02T03:04:05.123456Z");
    assert_eq!(
        at(&json, "/series"),
        &json!({"count": 2, "lastObservedTime": "2026-01-02T03:04:15.000005Z"})
    );
    assert_eq!(
        at(&json, "/involvedObject/fieldPath"),
        "spec.containers{app}"
    );

    // A zero MicroTime, as Go writes a never-set eventTime, is omitted.
    let old_style = core::Event {
        metadata: meta("e", "default"),
        involved_object: Some(core::ObjectReference::default()),
        event_time: Some(meta::MicroTime::default()),
        ..Default::default()
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::Event, _>(&old_style);
    assert!(json.get("eventTime").is_none());

    let lease = coordination::Lease {
        metadata: meta("node-1", "kube-node-lease"),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(40),
            acquire_time: micro(0, 0),
            renew_time: micro(T0, 1_000),
            lease_transitions: Some(0),
            strategy: None,
            preferred_holder: None,
        }),
    };
    let json = roundtrip::<k8s_openapi::api::coordination::v1::Lease, _>(&lease);
    assert_eq!(
        at(&json, "/spec"),
        &json!({"holderIdentity": "node-1", "leaseDurationSeconds": 40, "acquireTime": "1970-01-01T00:00:00.000000Z",
                "renewTime": "2026-01-02T03:04:05.000001Z", "leaseTransitions": 0})
    );
}

#[test]
fn subresource_and_option_kinds() {
    let scale = autoscaling::Scale {
        metadata: meta("web", "default"),
        spec: Some(autoscaling::ScaleSpec { replicas: Some(0) }),
        status: Some(autoscaling::ScaleStatus {
            replicas: Some(3),
            selector: s("app=web"),
        }),
    };
    let json = roundtrip::<k8s_openapi::api::autoscaling::v1::Scale, _>(&scale);
    assert_eq!(at(&json, "/spec"), &json!({"replicas": 0}));
    assert_eq!(
        at(&json, "/status"),
        &json!({"replicas": 3, "selector": "app=web"})
    );

    let binding = core::Binding {
        metadata: meta("web-0", "default"),
        target: Some(core::ObjectReference {
            kind: s("Node"),
            name: s("node-1"),
            api_version: s("v1"),
            ..Default::default()
        }),
    };
    let json = roundtrip::<k8s_openapi::api::core::v1::Binding, _>(&binding);
    assert_eq!(
        at(&json, "/target"),
        &json!({"kind": "Node", "name": "node-1", "apiVersion": "v1"})
    );

    // client-go sends DeleteOptions in the resource's group version.
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions {
            uid: s("u-1"),
            resource_version: None,
        }),
        orphan_dependents: None,
        propagation_policy: s("Foreground"),
        dry_run: strs(&["All"]),
        ignore_store_read_error_with_cluster_breaking_potential: None,
    };
    let raw = opts.encode_to_vec();
    for version in ["apps/v1", "v1", "meta.k8s.io/v1"] {
        let json = decode(
            &body(version, "DeleteOptions", raw.clone()),
            "v1",
            "DeleteOptions",
        )
        .unwrap();
        assert_eq!(
            json,
            json!({"apiVersion": version, "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                   "preconditions": {"uid": "u-1"}, "propagationPolicy": "Foreground", "dryRun": ["All"]})
        );
        let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions =
            serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(typed).unwrap(), json);
    }
}

// ---- wire-format details ---------------------------------------------------------------

/// Append a varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[test]
fn wire_variants_go_may_send() {
    // Packed and unpacked repeated int64, a negative int32, an unknown field, fields out of
    // order, and a message field split in two occurrences (proto merges them).
    let mut sc = Vec::new();
    varint(&mut sc, 4 << 3); // supplementalGroups, unpacked
    varint(&mut sc, 1);
    varint(&mut sc, (4 << 3) | 2); // packed
    varint(&mut sc, 2);
    varint(&mut sc, 2);
    varint(&mut sc, 3);
    varint(&mut sc, 999 << 3); // unknown varint field
    varint(&mut sc, 7);
    varint(&mut sc, 2 << 3); // runAsUser
    varint(&mut sc, (-1i64) as u64);
    let mut spec = Vec::new();
    varint(&mut spec, (14 << 3) | 2);
    varint(&mut spec, sc.len() as u64);
    spec.extend(&sc);
    let restart = core::PodSpec {
        restart_policy: s("Never"),
        ..Default::default()
    }
    .encode_to_vec();
    let mut pod = Vec::new();
    for part in [&spec, &restart] {
        varint(&mut pod, (2 << 3) | 2);
        varint(&mut pod, part.len() as u64);
        pod.extend(part);
    }
    pod.extend(
        core::Pod {
            metadata: meta("p", "ns"),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let json = decode(&body("v1", "Pod", pod), "v1", "Pod").unwrap();
    assert_eq!(
        at(&json, "/spec"),
        &json!({"securityContext": {"supplementalGroups": [1, 2, 3], "runAsUser": -1}, "restartPolicy": "Never"})
    );
    assert_eq!(at(&json, "/metadata/name"), "p");
}

#[test]
fn envelope_without_type_meta_takes_the_url_kind() {
    let raw = core::ConfigMap {
        metadata: meta("c", "d"),
        ..Default::default()
    }
    .encode_to_vec();
    let unknown = Unknown {
        raw: Some(raw),
        ..Default::default()
    };
    let mut b = b"k8s\0".to_vec();
    b.extend(unknown.encode_to_vec());
    let json = decode(&b, "v1", "ConfigMap").unwrap();
    assert_eq!(at(&json, "/kind"), "ConfigMap");
    assert_eq!(at(&json, "/apiVersion"), "v1");
}

// ---- bad input -------------------------------------------------------------------------

fn err(body: &[u8], api_version: &str, kind: &str) -> ProtobufError {
    match decode(body, api_version, kind) {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e,
    }
}

#[test]
fn bad_input_is_named() {
    let raw = core::Namespace {
        metadata: meta("x", ""),
        ..Default::default()
    }
    .encode_to_vec();
    let good = body("v1", "Namespace", raw.clone());

    let e = err(b"{\"kind\":\"Namespace\"}", "v1", "Namespace");
    assert!(matches!(e, ProtobufError::MissingMagic), "{e}");
    assert!(e.to_string().contains("k8s\\0"), "{e}");
    assert!(matches!(
        err(b"", "v1", "Namespace"),
        ProtobufError::MissingMagic
    ));

    let e = err(&good, "v1", "ConfigMap");
    assert_eq!(
        e.to_string(),
        "protobuf body holds a v1/Namespace, but this URL takes a v1/ConfigMap"
    );
    let e = err(
        &body("apps/v1", "Namespace", raw.clone()),
        "v1",
        "Namespace",
    );
    assert!(matches!(e, ProtobufError::KindMismatch { .. }), "{e}");

    let e = err(
        &body("example.com/v1", "Widget", raw.clone()),
        "example.com/v1",
        "Widget",
    );
    assert!(matches!(e, ProtobufError::UnsupportedKind { .. }), "{e}");
    assert!(e.to_string().contains("application/json"), "{e}");
    assert!(protobuf::is_supported("apps/v1", "Deployment"));
    assert!(!protobuf::is_supported("example.com/v1", "Widget"));
    assert_eq!(
        protobuf::CONTENT_TYPE,
        "application/vnd.kubernetes.protobuf"
    );

    let gz = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("Namespace"),
        }),
        raw: Some(raw),
        content_encoding: s("gzip"),
        content_type: None,
    };
    let mut b = b"k8s\0".to_vec();
    b.extend(gz.encode_to_vec());
    assert!(matches!(
        err(&b, "v1", "Namespace"),
        ProtobufError::UnsupportedEncoding(_)
    ));

    // Every truncation of a valid body is an error (or, at a field boundary, a smaller
    // object), never a panic.
    for n in 0..good.len() {
        let _ = decode(&good[..n], "v1", "Namespace");
    }
    assert!(decode(&good[..good.len() - 1], "v1", "Namespace").is_err());
}

#[test]
fn malformed_fields_name_their_path() {
    // containers[1].ports[0].containerPort sent as a string.
    let mut port = Vec::new();
    varint(&mut port, (3 << 3) | 2);
    varint(&mut port, 2);
    port.extend(b"80");
    let mut c = core::Container {
        name: s("b"),
        ..Default::default()
    }
    .encode_to_vec();
    varint(&mut c, (6 << 3) | 2);
    varint(&mut c, port.len() as u64);
    c.extend(&port);
    let mut spec = core::PodSpec {
        containers: vec![core::Container::default()],
        ..Default::default()
    }
    .encode_to_vec();
    varint(&mut spec, (2 << 3) | 2);
    varint(&mut spec, c.len() as u64);
    spec.extend(&c);
    let mut pod = Vec::new();
    varint(&mut pod, (2 << 3) | 2);
    varint(&mut pod, spec.len() as u64);
    pod.extend(&spec);
    let e = err(&body("v1", "Pod", pod), "v1", "Pod");
    assert_eq!(
        e.to_string(),
        "malformed protobuf Pod at spec.containers[1].ports[0].containerPort: wire type is length-delimited, expected varint"
    );

    // Invalid UTF-8 in a label value.
    let mut entry = Vec::new();
    varint(&mut entry, (1 << 3) | 2);
    varint(&mut entry, 3);
    entry.extend(b"app");
    varint(&mut entry, (2 << 3) | 2);
    varint(&mut entry, 2);
    entry.extend([0xff, 0xfe]);
    let mut m = Vec::new();
    varint(&mut m, (11 << 3) | 2);
    varint(&mut m, entry.len() as u64);
    m.extend(&entry);
    let mut ns = Vec::new();
    varint(&mut ns, (1 << 3) | 2);
    varint(&mut ns, m.len() as u64);
    ns.extend(&m);
    let e = err(&body("v1", "Namespace", ns), "v1", "Namespace");
    assert_eq!(
        e.to_string(),
        "malformed protobuf Namespace at metadata.labels[\"app\"]: string is not valid UTF-8"
    );

    // A length running past the end.
    let mut b = body("v1", "Namespace", vec![]);
    b.truncate(4);
    b.extend([(2 << 3) | 2, 10, 1]);
    let e = err(&b, "v1", "Namespace");
    assert_eq!(
        e.to_string(),
        "malformed protobuf envelope at raw: truncated: field needs 10 bytes but only 1 remain"
    );

    // A time beyond year 9999.
    let lease = coordination::Lease {
        spec: Some(coordination::LeaseSpec {
            renew_time: micro(i64::MAX / 2, 0),
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = err(
        &body("coordination.k8s.io/v1", "Lease", lease.encode_to_vec()),
        "coordination.k8s.io/v1",
        "Lease",
    );
    assert!(
        e.to_string()
            .starts_with("malformed protobuf Lease at spec.renewTime: time "),
        "{e}"
    );

    // managedFields whose FieldsV1 is not JSON.
    let ns = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            managed_fields: vec![meta::ManagedFieldsEntry {
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(b"{not json".to_vec()),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = err(
        &body("v1", "Namespace", ns.encode_to_vec()),
        "v1",
        "Namespace",
    );
    assert!(
        e.to_string()
            .contains("at metadata.managedFields[0].fieldsV1: FieldsV1 is not JSON"),
        "{e}"
    );

    // A deprecated group wire type.
    let e = err(
        &body("v1", "Namespace", vec![(1 << 3) | 3]),
        "v1",
        "Namespace",
    );
    assert!(
        e.to_string().contains("unsupported wire type 3 (group)"),
        "{e}"
    );
}

fn valid_pod_body() -> Vec<u8> {
    let pod = core::Pod {
        metadata: meta("web-0", "default"),
        spec: Some(pod_spec()),
        status: None,
    };
    body("v1", "Pod", pod.encode_to_vec())
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, "v1", "Pod");
        let mut with_magic = b"k8s\0".to_vec();
        with_magic.extend(&bytes);
        let _ = decode(&with_magic, "v1", "Pod");
        // Random bytes as the raw object of every supported kind.
        for (v, k) in [("v1", "Pod"), ("v1", "Node"), ("v1", "Secret"), ("apps/v1", "Deployment"),
                       ("v1", "Event"), ("discovery.k8s.io/v1", "EndpointSlice"), ("v1", "DeleteOptions")] {
            let _ = decode(&body(v, k, bytes.clone()), v, k);
        }
    }

    #[test]
    fn mutated_pods_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut b = valid_pod_body();
        for (i, byte) in edits {
            let i = i.index(b.len());
            b[i] = byte;
        }
        if let Ok(v) = decode(&b, "v1", "Pod") {
            prop_assert!(v.is_object());
        }
    }
}
