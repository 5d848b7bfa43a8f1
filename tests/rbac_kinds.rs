//! The four RBAC kinds (`rbac.authorization.k8s.io/v1` Role, ClusterRole, RoleBinding,
//! ClusterRoleBinding) served like every other kind: created, listed, watched, discovered,
//! printed and validated, driven by the real kubectl (Debian's `kubectl`, installed by
//! scripts/setup) against an in-process server; the bootstrap policy accepted by the API and
//! evaluated from what the API serves back; and kubectl's protobuf bodies for these kinds
//! decoded to the JSON Kubernetes writes.

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/kubectl.rs"]
mod kubectl_support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::rbac::v1 as rbac;
use kube::api::{Api, ListParams, PostParams};
use kubectl_support::{Kubectl, text};
use moor::auth::rbac::{Policy, default_objects};
use moor::auth::{Attributes, Decision, GROUP_MASTERS, ResourceAttributes, UserInfo};
use prost::Message;
use serde_json::{Value, json};

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The line of `output` that contains `needle`.
fn line_with<'a>(output: &'a str, needle: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_lists_watches_and_validates_rbac_objects() {
    let server = TestServer::start(Backend::Embedded).await;
    let k = Kubectl::new(&server);
    let dir = tempfile::tempdir().unwrap();

    let resources = k
        .ok(&["api-resources", "--api-group=rbac.authorization.k8s.io"])
        .await;
    for (plural, namespaced, kind) in [
        ("clusterrolebindings", "false", "ClusterRoleBinding"),
        ("clusterroles", "false", "ClusterRole"),
        ("rolebindings", "true", "RoleBinding"),
        ("roles", "true", "Role"),
    ] {
        let line = resources
            .lines()
            .find(|l| l.split_whitespace().next() == Some(plural))
            .unwrap_or_else(|| panic!("no {plural} in:\n{resources}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields,
            [plural, "rbac.authorization.k8s.io/v1", namespaced, kind],
            "{resources}"
        );
    }

    // kubectl's create subcommands send protobuf bodies.
    let out = k
        .ok(&[
            "create",
            "clusterrole",
            "pod-reader",
            "--verb=get,list,watch",
            "--resource=pods",
        ])
        .await;
    assert_eq!(
        out.trim(),
        "clusterrole.rbac.authorization.k8s.io/pod-reader created"
    );
    // RBAC names are path segments: the colon of `system:` names is fine.
    k.ok(&[
        "create",
        "clusterrole",
        "system:log-reader",
        "--verb=get",
        "--non-resource-url=/logs/*",
    ])
    .await;
    let out = k
        .ok(&[
            "create",
            "rolebinding",
            "viewers",
            "--clusterrole=view",
            "--user=u",
            "-n",
            "default",
        ])
        .await;
    assert_eq!(
        out.trim(),
        "rolebinding.rbac.authorization.k8s.io/viewers created"
    );
    k.ok(&[
        "create",
        "role",
        "cm-editor",
        "--verb=update",
        "--resource=configmaps",
        "--resource-name=app",
        "-n",
        "default",
    ])
    .await;
    k.ok(&[
        "create",
        "rolebinding",
        "builders",
        "--role=cm-editor",
        "--serviceaccount=default:builder",
        "--group=ci",
        "-n",
        "default",
    ])
    .await;
    k.ok(&[
        "create",
        "clusterrolebinding",
        "devs-read",
        "--clusterrole=pod-reader",
        "--group=devs",
    ])
    .await;

    let listed = k.ok(&["get", "clusterroles,rolebindings", "-A"]).await;
    let header = line_with(&listed, "CREATED AT");
    assert!(header.starts_with("NAME "), "{listed}");
    let reader = line_with(&listed, "clusterrole.rbac.authorization.k8s.io/pod-reader");
    assert!(
        reader.split_whitespace().nth(1).unwrap().ends_with('Z'),
        "CREATED AT is a timestamp: {listed}"
    );
    line_with(
        &listed,
        "clusterrole.rbac.authorization.k8s.io/system:log-reader",
    );
    let header = line_with(&listed, "ROLE");
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(columns, ["NAMESPACE", "NAME", "ROLE", "AGE"], "{listed}");
    let viewers = line_with(&listed, "rolebinding.rbac.authorization.k8s.io/viewers");
    let cells: Vec<&str> = viewers.split_whitespace().collect();
    assert_eq!(
        &cells[..3],
        [
            "default",
            "rolebinding.rbac.authorization.k8s.io/viewers",
            "ClusterRole/view"
        ]
    );
    let builders = line_with(&listed, "rolebinding.rbac.authorization.k8s.io/builders");
    assert!(builders.contains("Role/cm-editor"), "{listed}");

    let wide = k
        .ok(&["get", "rolebindings", "-n", "default", "-o", "wide"])
        .await;
    let header: Vec<&str> = line_with(&wide, "NAME").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
        "{wide}"
    );
    let builders: Vec<&str> = line_with(&wide, "builders").split_whitespace().collect();
    assert_eq!(builders[0], "builders");
    assert_eq!(builders[1], "Role/cm-editor");
    assert_eq!(&builders[3..], ["ci", "default/builder"], "{wide}");
    let crbs = k
        .ok(&["get", "clusterrolebindings", "devs-read", "-o", "wide"])
        .await;
    assert!(
        line_with(&crbs, "devs-read").contains("ClusterRole/pod-reader"),
        "{crbs}"
    );

    // Stored as sent, with upstream's defaults.
    let verbs = k
        .ok(&[
            "get",
            "clusterrole",
            "pod-reader",
            "-o",
            "jsonpath={.rules[0].verbs}",
        ])
        .await;
    assert_eq!(verbs, r#"["get","list","watch"]"#);
    let refs = k
        .ok(&[
            "get",
            "rolebinding",
            "viewers",
            "-n",
            "default",
            "-o",
            "jsonpath={.roleRef.apiGroup} {.roleRef.kind} {.subjects[0].kind} {.subjects[0].apiGroup}",
        ])
        .await;
    assert_eq!(
        refs,
        "rbac.authorization.k8s.io ClusterRole User rbac.authorization.k8s.io"
    );
    let names = k
        .ok(&[
            "get",
            "role",
            "cm-editor",
            "-n",
            "default",
            "-o",
            "jsonpath={.rules[0].resourceNames}",
        ])
        .await;
    assert_eq!(names, r#"["app"]"#);
    let described = k.ok(&["describe", "clusterrole", "pod-reader"]).await;
    assert!(described.contains("[get list watch]"), "{described}");

    // Validation as upstream.
    let err = k
        .fails(&[
            "patch",
            "rolebinding",
            "viewers",
            "-n",
            "default",
            "--type=merge",
            "-p",
            r#"{"roleRef":{"name":"edit"}}"#,
        ])
        .await;
    assert!(err.contains("cannot change roleRef"), "{err}");
    let bad_crb = write(
        dir.path(),
        "crb.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: to-role\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: cm-editor\nsubjects:\n- kind: ServiceAccount\n  name: builder\n",
    );
    let err = k
        .fails(&["create", "--validate=false", "-f", &bad_crb])
        .await;
    assert!(
        err.contains(r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#),
        "{err}"
    );
    assert!(
        err.contains("subjects[0].namespace: Required value"),
        "{err}"
    );
    let bad_role = write(
        dir.path(),
        "role.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: nothing\n  namespace: default\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n",
    );
    let err = k
        .fails(&["create", "--validate=false", "-f", &bad_role])
        .await;
    assert!(
        err.contains("rules[0].verbs: Required value: verbs must contain at least one value"),
        "{err}"
    );

    // A watch sees a binding created while it runs.
    let mut watch = k
        .command(&[
            "get",
            "clusterrolebindings",
            "-w",
            "--output-watch-events",
            "--request-timeout=5s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    k.ok(&[
        "create",
        "clusterrolebinding",
        "watched",
        "--clusterrole=pod-reader",
        "--user=w",
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _ = watch.kill();
    let watched = tokio::task::spawn_blocking(move || watch.wait_with_output().unwrap())
        .await
        .unwrap();
    let watched = String::from_utf8_lossy(&watched.stdout).into_owned();
    assert!(
        line_with(&watched, "watched").contains("ADDED"),
        "{watched}"
    );

    k.ok(&["delete", "clusterrole", "pod-reader"]).await;
    k.ok(&["delete", "rolebinding", "viewers", "-n", "default"])
        .await;
    let left = k.run(&["get", "clusterrole", "pod-reader"]).await;
    assert!(
        !left.status.success() && String::from_utf8_lossy(&left.stderr).contains("NotFound"),
        "{}",
        text(&left)
    );
}

fn request(user: &UserInfo, verb: &str, group: &str, resource: &str, ns: &str) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: verb.to_owned(),
        resource: Some(ResourceAttributes {
            group: group.to_owned(),
            resource: resource.to_owned(),
            namespace: ns.to_owned(),
            ..Default::default()
        }),
        path: String::new(),
    }
}

/// Every RBAC object the server holds, as JSON with apiVersion and kind.
async fn served_rbac_objects(client: &kube::Client) -> Vec<Value> {
    let lp = ListParams::default();
    let mut out = Vec::new();
    for r in Api::<rbac::ClusterRole>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
    {
        out.push(serde_json::to_value(r).unwrap());
    }
    for r in Api::<rbac::ClusterRoleBinding>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
    {
        out.push(serde_json::to_value(r).unwrap());
    }
    for r in Api::<rbac::Role>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
    {
        out.push(serde_json::to_value(r).unwrap());
    }
    for r in Api::<rbac::RoleBinding>::all(client.clone())
        .list(&lp)
        .await
        .unwrap()
    {
        out.push(serde_json::to_value(r).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_policy_is_accepted_and_evaluated_from_served_objects() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let pp = PostParams::default();
    let defaults = default_objects();
    for obj in &defaults {
        match obj["kind"].as_str() {
            Some("ClusterRole") => {
                let role: rbac::ClusterRole = serde_json::from_value(obj.clone()).unwrap();
                let api = Api::<rbac::ClusterRole>::all(client.clone());
                let created = match api.create(&pp, &role).await {
                    Ok(created) => created,
                    // A server that bootstraps its own policy has it already.
                    Err(kube::Error::Api(e)) if e.code == 409 => api
                        .get(role.metadata.name.as_deref().unwrap())
                        .await
                        .unwrap(),
                    Err(e) => panic!("{}: {e}", obj["metadata"]["name"]),
                };
                // Nothing defaulted away or added to the rules.
                assert_eq!(created.rules, role.rules);
                assert_eq!(created.aggregation_rule, role.aggregation_rule);
            }
            Some("ClusterRoleBinding") => {
                let b: rbac::ClusterRoleBinding = serde_json::from_value(obj.clone()).unwrap();
                match Api::<rbac::ClusterRoleBinding>::all(client.clone())
                    .create(&pp, &b)
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => panic!("{}: {e}", obj["metadata"]["name"]),
                }
            }
            other => panic!("unexpected bootstrap kind {other:?}"),
        }
    }
    let viewers: rbac::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "viewers", "namespace": "default"},
        "roleRef": {"kind": "ClusterRole", "name": "view", "apiGroup": ""},
        "subjects": [{"kind": "User", "name": "u"}]
    }))
    .unwrap();
    let created = Api::<rbac::RoleBinding>::namespaced(client.clone(), "default")
        .create(&pp, &viewers)
        .await
        .unwrap();
    assert_eq!(created.role_ref.api_group, "rbac.authorization.k8s.io");

    let objects = served_rbac_objects(&client).await;
    for d in &defaults {
        assert!(
            objects
                .iter()
                .any(|o| o["kind"] == d["kind"] && o["metadata"]["name"] == d["metadata"]["name"]),
            "{} {} is not served",
            d["kind"],
            d["metadata"]["name"]
        );
    }
    let policy = Policy::from_objects(&objects);
    assert!(policy.problems().is_empty(), "{:?}", policy.problems());

    let u = UserInfo::new("u", []);
    assert!(
        policy
            .authorize(&request(&u, "list", "", "pods", "default"))
            .allowed()
    );
    assert!(
        !policy
            .authorize(&request(&u, "list", "", "pods", "kube-system"))
            .allowed()
    );
    assert!(
        !policy
            .authorize(&request(&u, "get", "", "secrets", "default"))
            .allowed()
    );
    let someone = UserInfo::new("someone", []);
    assert_eq!(
        policy.authorize(&request(&someone, "list", "", "pods", "default")),
        Decision::NoOpinion
    );
    let admin = UserInfo::new("admin", [GROUP_MASTERS.to_owned()]);
    assert!(
        policy
            .authorize(&request(
                &admin,
                "delete",
                "rbac.authorization.k8s.io",
                "clusterroles",
                ""
            ))
            .allowed()
    );
}

// ---- protobuf bodies ---------------------------------------------------------------------

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Frame `obj` as client-go does and decode it, then check k8s-openapi reads and re-writes
/// the same JSON.
fn decode<K, M>(obj: &M) -> Value
where
    K: k8s_openapi::Resource + serde::Serialize + serde::de::DeserializeOwned,
    M: Message,
{
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(K::API_VERSION),
            kind: s(K::KIND),
        }),
        raw: Some(obj.encode_to_vec()),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    let json = moor::apiserver::protobuf::decode(&body, K::API_VERSION, K::KIND)
        .unwrap_or_else(|e| panic!("decode {}: {e}", K::KIND));
    let typed: K = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("k8s-openapi rejects decoded {}: {e}\n{json:#}", K::KIND));
    assert_eq!(serde_json::to_value(&typed).unwrap(), json);
    json
}

fn meta(
    name: &str,
    namespace: &str,
) -> Option<k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta> {
    Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: s(name),
        namespace: s(namespace),
        generate_name: s(""),
        generation: Some(0),
        creation_timestamp: Some(Default::default()),
        ..Default::default()
    })
}

#[test]
fn rbac_protobuf_bodies_decode_like_kubernetes() {
    use k8s_pb::api::rbac::v1 as pb;
    use k8s_pb::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    let rule = pb::PolicyRule {
        verbs: strs(&["get", "list"]),
        api_groups: strs(&[""]),
        resources: strs(&["pods", "pods/log"]),
        resource_names: strs(&["web"]),
        non_resource_ur_ls: vec![],
    };
    let url_rule = pb::PolicyRule {
        verbs: strs(&["get"]),
        non_resource_ur_ls: strs(&["/healthz", "/logs/*"]),
        ..Default::default()
    };
    let json = decode::<rbac::Role, _>(&pb::Role {
        metadata: meta("r", "ns"),
        rules: vec![rule.clone()],
    });
    assert_eq!(
        json,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "r", "namespace": "ns"},
               "rules": [{"verbs": ["get", "list"], "apiGroups": [""],
                          "resources": ["pods", "pods/log"], "resourceNames": ["web"]}]})
    );

    let json = decode::<rbac::ClusterRole, _>(&pb::ClusterRole {
        metadata: meta("system:agg", ""),
        rules: vec![url_rule],
        aggregation_rule: Some(pb::AggregationRule {
            cluster_role_selectors: vec![LabelSelector {
                match_labels: [("a".to_owned(), "true".to_owned())].into(),
                match_expressions: vec![LabelSelectorRequirement {
                    key: s("tier"),
                    operator: s("In"),
                    values: strs(&["x", "y"]),
                }],
            }],
        }),
    });
    assert_eq!(json["metadata"], json!({"name": "system:agg"}));
    assert_eq!(
        json["rules"],
        json!([{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/logs/*"]}])
    );
    assert_eq!(
        json["aggregationRule"],
        json!({"clusterRoleSelectors": [{"matchLabels": {"a": "true"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["x", "y"]}]}]})
    );

    // What `kubectl create rolebinding --clusterrole=view --user=u --serviceaccount=ns:sa`
    // sends: Go writes the empty optional strings too.
    let subjects = vec![
        pb::Subject {
            kind: s("User"),
            api_group: s("rbac.authorization.k8s.io"),
            name: s("u"),
            namespace: s(""),
        },
        pb::Subject {
            kind: s("ServiceAccount"),
            api_group: s(""),
            name: s("sa"),
            namespace: s("ns"),
        },
    ];
    let role_ref = Some(pb::RoleRef {
        api_group: s("rbac.authorization.k8s.io"),
        kind: s("ClusterRole"),
        name: s("view"),
    });
    let json = decode::<rbac::RoleBinding, _>(&pb::RoleBinding {
        metadata: meta("b", "ns"),
        subjects: subjects.clone(),
        role_ref: role_ref.clone(),
    });
    assert_eq!(
        json,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "b", "namespace": "ns"},
               "subjects": [
                   {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "u"},
                   {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}
               ],
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}})
    );
    let json = decode::<rbac::ClusterRoleBinding, _>(&pb::ClusterRoleBinding {
        metadata: meta("crb", ""),
        subjects,
        role_ref,
    });
    assert_eq!(json["kind"], "ClusterRoleBinding");
    assert_eq!(json["roleRef"]["name"], "view");
    assert_eq!(json["subjects"][1]["namespace"], "ns");
}
