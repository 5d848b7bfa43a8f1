//! The ServiceAccount and node lifecycle controllers against a real API server, and the
//! service-account token issuer on a real data dir.
//!
//! Nodes and their Leases are created by the tests, standing in for agents: a task renews
//! a node's Lease while the "agent" is alive. Flags are seconds-scale (grace 1 s, default
//! eviction timeout 1 s) so heartbeat loss and evictions happen quickly.

#[path = "support/wait.rs"]
#[macro_use]
mod wait;

#[path = "support/apiserver.rs"]
mod apiserver_support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, NodeCondition, Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use moor::controllers::node_lifecycle::{
    MESSAGE_UNKNOWN, NO_EXECUTE, NO_SCHEDULE, REASON_UNKNOWN, TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
};
use moor::controllers::serviceaccount::{Claims, KEY_FILE, TokenError, TokenIssuer};
use moor::controllers::{ControllerManager, Options};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(15);

/// Poll for `$for` that `check` stays `Ok`; fail at the first `Err`, showing it.
macro_rules! throughout {
    ($what:expr, $for:expr, $check:expr) => {{
        let until = Instant::now() + $for;
        while Instant::now() < until {
            if let Err(seen) = $check {
                panic!("expected {} throughout; saw: {:?}", $what, seen);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

/// A server with only this file's controllers running, on short flags.
struct Cluster {
    client: Client,
    shutdown: CancellationToken,
    _server: TestServer,
    _data: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let server = TestServer::start(Backend::Embedded).await;
        let client = server.client();
        let data = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(
            ControllerManager::new(client.clone())
                .with_controllers(vec!["serviceaccount".into(), "nodelifecycle".into()])
                .with_options(Options {
                    node_monitor_grace: Duration::from_secs(1),
                    pod_eviction_timeout: Duration::from_secs(1),
                    data_dir: data.path().into(),
                })
                .run(shutdown.clone()),
        );
        Cluster {
            client,
            shutdown,
            _server: server,
            _data: data,
        }
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

// ---------------------------------------------------------------------------------------
// ServiceAccounts
// ---------------------------------------------------------------------------------------

async fn default_sa(client: &Client, namespace: &str) -> Result<ServiceAccount, String> {
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .get_opt("default")
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no default ServiceAccount in {namespace}"))
}

#[tokio::test]
async fn default_service_account_in_every_namespace() {
    let cluster = Cluster::start().await;
    let client = &cluster.client;

    // Namespaces that existed before the controller.
    for ns in ["default", "kube-system", "kube-node-lease"] {
        eventually_ok!(
            format!("the default ServiceAccount in {ns}"), within PATIENCE,
            default_sa(client, ns).await
        );
    }

    // A new namespace.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["team-a", "doomed"] {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        eventually_ok!(
            format!("the default ServiceAccount in {name}"), within PATIENCE,
            default_sa(client, name).await
        );
    }

    // Deleted: it comes back, as a new object.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-a");
    let old_uid = default_sa(client, "team-a").await.unwrap().uid().unwrap();
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    eventually_ok!("the default ServiceAccount re-created in team-a", within PATIENCE, {
        match default_sa(client, "team-a").await {
            Ok(sa) if sa.uid().as_deref() != Some(old_uid.as_str()) => Ok(sa),
            Ok(sa) => Err(format!("still the old one: {:?}", sa.uid())),
            Err(e) => Err(e),
        }
    });

    // A namespace being deleted gets no new content. No namespace controller runs here, so
    // it stays Terminating (or, if the API server deletes it at once, is gone).
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let doomed: Api<ServiceAccount> = Api::namespaced(client.clone(), "doomed");
    match doomed.delete("default", &DeleteParams::default()).await {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => panic!("deleting doomed/default: {e}"),
    }
    // A barrier: the same watch carries both deletions, so once team-a's account is back
    // the controller has seen doomed's go too.
    let old_uid = default_sa(client, "team-a").await.unwrap().uid().unwrap();
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    eventually_ok!("the default ServiceAccount re-created in team-a again", within PATIENCE, {
        match default_sa(client, "team-a").await {
            Ok(sa) if sa.uid().as_deref() != Some(old_uid.as_str()) => Ok(sa),
            Ok(_) => Err("still the old one".to_owned()),
            Err(e) => Err(e),
        }
    });
    throughout!(
        "no ServiceAccount in the terminating namespace",
        Duration::from_millis(500),
        {
            match doomed.get_opt("default").await {
                Ok(None) | Err(_) => Ok(()),
                Ok(Some(sa)) if sa.metadata.deletion_timestamp.is_some() => Ok(()),
                Ok(Some(sa)) => Err(sa),
            }
        }
    );
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

fn issue(issuer: &TokenIssuer, name: &str, audience: &str, expiry: Duration) -> String {
    issuer
        .issue(
            "team-a",
            name,
            &format!("uid-{name}"),
            &[audience.to_owned()],
            expiry,
        )
        .unwrap()
}

#[test]
fn token_round_trip_has_upstream_claims() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TokenIssuer::load_or_create(dir.path()).unwrap();
    let key = dir.path().join(KEY_FILE);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the signing key must be private");
    // No temp files are left behind.
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");

    let token = issue(
        &issuer,
        "builder",
        "https://api.example",
        Duration::from_secs(3600),
    );
    let claims = issuer.verify(&token, "https://api.example").unwrap();
    assert_eq!(claims.iss, "https://kubernetes.default.svc.cluster.local");
    assert_eq!(claims.sub, "system:serviceaccount:team-a:builder");
    assert_eq!(claims.aud, vec!["https://api.example".to_owned()]);
    assert_eq!(claims.kubernetes.namespace, "team-a");
    assert_eq!(claims.kubernetes.serviceaccount.name, "builder");
    assert_eq!(claims.kubernetes.serviceaccount.uid, "uid-builder");
    assert_eq!(claims.exp - claims.iat, 3600);
    assert_eq!(claims.nbf, claims.iat);

    // The wire shape, as other tools decode it.
    let raw = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&token).unwrap();
    assert_eq!(raw.header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(raw.header.kid.as_deref(), Some(issuer.key_id()));
    let kubernetes = &raw.claims["kubernetes.io"];
    assert_eq!(kubernetes["namespace"], "team-a");
    assert_eq!(kubernetes["serviceaccount"]["name"], "builder");
    assert_eq!(kubernetes["serviceaccount"]["uid"], "uid-builder");
    assert!(raw.claims["aud"].is_array());
    for claim in ["iss", "sub", "exp", "iat", "nbf"] {
        assert!(
            raw.claims.get(claim).is_some(),
            "missing {claim}: {}",
            raw.claims
        );
    }

    // The public key others verify with.
    let jwks = issuer.jwks();
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].common.key_id.as_deref(), Some(issuer.key_id()));

    // No audience asked for: the issuer itself.
    let token = issuer
        .issue("team-a", "builder", "u", &[], Duration::from_secs(600))
        .unwrap();
    let claims = issuer.verify(&token, issuer.issuer()).unwrap();
    assert_eq!(claims.aud, vec![issuer.issuer().to_owned()]);
    assert_eq!(Claims::username("a", "b"), "system:serviceaccount:a:b");
}

#[test]
fn tokens_are_refused_for_the_wrong_audience_time_or_signature() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = TokenIssuer::load_or_create(dir.path()).unwrap();
    let token = issue(&issuer, "builder", "api", Duration::from_secs(600));

    // Wrong audience.
    match issuer.verify(&token, "vault") {
        Err(TokenError::Audience { audience }) => assert_eq!(audience, "vault"),
        other => panic!("expected an audience error, got {other:?}"),
    }

    // Expired, and not yet valid (beyond the allowed clock skew either way).
    let claims = issuer.verify(&token, "api").unwrap();
    let at = |s: i64| jiff::Timestamp::from_second(s).unwrap();
    match issuer.verify_at(&token, "api", at(claims.exp + 61)) {
        Err(TokenError::Expired { at: when }) => assert_eq!(when.as_second(), claims.exp),
        other => panic!("expected an expiry error, got {other:?}"),
    }
    assert!(issuer.verify_at(&token, "api", at(claims.exp + 59)).is_ok());
    assert!(matches!(
        issuer.verify_at(&token, "api", at(claims.iat - 3600)),
        Err(TokenError::NotYetValid { .. })
    ));

    // Tampered: another token's claims under this one's signature.
    let other = issue(&issuer, "admin", "api", Duration::from_secs(600));
    let parts: Vec<&str> = token.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    assert!(matches!(
        issuer.verify(&spliced, "api"),
        Err(TokenError::Signature)
    ));
    // A flipped signature character.
    let mut signature: Vec<char> = parts[2].chars().collect();
    let middle = signature.len() / 2;
    signature[middle] = if signature[middle] == 'A' { 'B' } else { 'A' };
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        signature.iter().collect::<String>()
    );
    assert!(matches!(
        issuer.verify(&flipped, "api"),
        Err(TokenError::Signature)
    ));
    // Not a token at all.
    assert!(matches!(
        issuer.verify("not.a.token", "api"),
        Err(TokenError::Malformed(_))
    ));

    // Signed by another key (another cluster's data dir).
    let elsewhere = tempfile::tempdir().unwrap();
    let stranger = TokenIssuer::load_or_create(elsewhere.path()).unwrap();
    let forged = issue(&stranger, "builder", "api", Duration::from_secs(600));
    assert!(matches!(
        issuer.verify(&forged, "api"),
        Err(TokenError::Signature)
    ));
    // A symmetric token made with the public key as its secret (the classic confusion).
    let public = serde_json::to_vec(&issuer.jwks()).unwrap();
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert!(matches!(
        issuer.verify(&confused, "api"),
        Err(TokenError::Signature)
    ));
    // Another issuer string.
    let renamed = issuer.clone().with_issuer("https://other.example");
    assert!(matches!(
        renamed.verify(&token, "api"),
        Err(TokenError::Issuer { .. })
    ));

    // Nonsense expiries.
    assert!(matches!(
        issuer.issue("a", "b", "c", &[], Duration::ZERO),
        Err(TokenError::InvalidExpiry(_))
    ));
}

#[test]
fn signing_key_survives_a_restart_and_bad_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let first = TokenIssuer::load_or_create(dir.path()).unwrap();
    let token = issue(&first, "builder", "api", Duration::from_secs(600));
    let key = std::fs::read(dir.path().join(KEY_FILE)).unwrap();
    drop(first);

    // "Restart": a new issuer on the same dir verifies the old token and keeps the key.
    let second = TokenIssuer::load_or_create(dir.path()).unwrap();
    let claims = second.verify(&token, "api").unwrap();
    assert_eq!(claims.sub, "system:serviceaccount:team-a:builder");
    assert_eq!(std::fs::read(dir.path().join(KEY_FILE)).unwrap(), key);

    // A data dir that does not exist yet is created.
    let nested = dir.path().join("a/b");
    TokenIssuer::load_or_create(&nested).unwrap();
    assert!(nested.join(KEY_FILE).exists());

    // An operator's PEM key (RFC 8410's example) is used as it is.
    let pem_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        pem_dir.path().join(KEY_FILE),
        "-----BEGIN PRIVATE KEY-----\n\
         MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
         -----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let operator = TokenIssuer::load_or_create(pem_dir.path()).unwrap();
    let token = issue(&operator, "builder", "api", Duration::from_secs(600));
    operator.verify(&token, "api").unwrap();
    // RFC 8410's public key for it: 19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1.
    assert_eq!(
        operator.jwks().keys[0].algorithm,
        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(
            jsonwebtoken::jwk::OctetKeyPairParameters {
                key_type: jsonwebtoken::jwk::OctetKeyPairType::OctetKeyPair,
                curve: jsonwebtoken::jwk::EllipticCurve::Ed25519,
                x: "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE".to_owned(),
            }
        )
    );

    // A corrupt key is an error naming the file, never a new key silently replacing it.
    std::fs::write(dir.path().join(KEY_FILE), b"-----BEGIN NONSENSE-----").unwrap();
    let error = TokenIssuer::load_or_create(dir.path()).unwrap_err();
    assert!(matches!(error, TokenError::BadKey { .. }), "{error:?}");
    assert!(error.to_string().contains(KEY_FILE), "{error}");
}

// ---------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// Register a node as an agent does: Ready with a heartbeat, and its Lease.
async fn register_node(client: &Client, name: &str, spec: serde_json::Value) {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": spec,
        "status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "kubelet is posting ready status",
             "lastHeartbeatTime": now, "lastTransitionTime": now},
            {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": now},
        ]},
    }))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()},
    }))
    .unwrap();
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
}

/// The agent's heartbeat: renew the node's Lease every 200 ms until the token fires.
fn heartbeat(client: &Client, name: &str) -> CancellationToken {
    let stop = CancellationToken::new();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let name = name.to_owned();
    let token = stop.clone();
    tokio::spawn(async move {
        while !token.is_cancelled() {
            let patch = json!({"spec": {"renewTime": now_micro()}});
            let _ = leases
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    });
    stop
}

fn condition(node: &Node, type_: &str) -> Option<NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// The node's taints as (key, effect).
fn taints(node: &Node) -> Vec<(String, String)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| {
            t.iter()
                .map(|t| (t.key.clone(), t.effect.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    taints(node).iter().any(|(k, e)| k == key && e == effect)
}

async fn node_where(
    nodes: &Api<Node>,
    name: &str,
    what: &str,
    check: impl Fn(&Node) -> bool,
) -> Node {
    eventually_ok!(format!("node {name}: {what}"), within PATIENCE, {
        let node = nodes.get(name).await.unwrap();
        if check(&node) {
            Ok(node)
        } else {
            Err((taints(&node), node.status.clone()))
        }
    })
}

fn unreachable_tainted(node: &Node) -> bool {
    has_taint(node, TAINT_UNREACHABLE, NO_EXECUTE)
        && has_taint(node, TAINT_UNREACHABLE, NO_SCHEDULE)
}

#[tokio::test]
async fn heartbeat_loss_marks_the_node_unknown_and_recovery_untaints_it() {
    let cluster = Cluster::start().await;
    let nodes = cluster.nodes();
    register_node(&cluster.client, "n1", json!({})).await;
    let beating = heartbeat(&cluster.client, "n1");

    // Lease renewals alone keep it healthy well past the grace period.
    throughout!(
        "n1 healthy while its Lease is renewed",
        Duration::from_millis(2500),
        {
            let node = nodes.get("n1").await.unwrap();
            let ready = condition(&node, "Ready").map(|c| c.status);
            if ready.as_deref() == Some("True") && taints(&node).is_empty() {
                Ok(())
            } else {
                Err((ready, taints(&node)))
            }
        }
    );

    // The agent dies.
    beating.cancel();
    let node = node_where(&nodes, "n1", "Ready Unknown and unreachable taints", |n| {
        condition(n, "Ready").is_some_and(|c| c.status == "Unknown") && unreachable_tainted(n)
    })
    .await;
    let ready = condition(&node, "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some(REASON_UNKNOWN));
    assert_eq!(ready.message.as_deref(), Some(MESSAGE_UNKNOWN));
    assert!(
        ready.last_heartbeat_time.is_some(),
        "the last heartbeat is kept"
    );
    let memory = condition(&node, "MemoryPressure").unwrap();
    assert_eq!(memory.status, "Unknown");
    for type_ in ["DiskPressure", "PIDPressure"] {
        assert_eq!(
            condition(&node, type_).map(|c| c.status).as_deref(),
            Some("Unknown"),
            "{type_}"
        );
    }
    let taint_list = node.spec.as_ref().unwrap().taints.as_ref().unwrap();
    let no_execute = taint_list.iter().find(|t| t.effect == NO_EXECUTE).unwrap();
    assert!(
        no_execute.time_added.is_some(),
        "NoExecute taints carry timeAdded"
    );

    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    eventually_ok!("a NodeNotReady event for n1", within PATIENCE, {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("NodeNotReady")
                    && e.involved_object.name.as_deref() == Some("n1")
                    && e.involved_object.kind.as_deref() == Some("Node")
            })
            .ok_or("no event yet")
    });

    // The agent comes back: a fresh heartbeat lifts the unreachable taints, though the
    // conditions wait for the agent to rewrite them.
    let beating = heartbeat(&cluster.client, "n1");
    node_where(&nodes, "n1", "no unreachable taints", |n| {
        !taints(n).iter().any(|(k, _)| k == TAINT_UNREACHABLE)
    })
    .await;
    throughout!(
        "n1 untainted while its Lease is renewed",
        Duration::from_millis(1500),
        {
            let node = nodes.get("n1").await.unwrap();
            if taints(&node).is_empty() {
                Ok(())
            } else {
                Err(taints(&node))
            }
        }
    );
    beating.cancel();
}

#[tokio::test]
async fn a_node_that_never_reports_is_marked_never_updated() {
    let cluster = Cluster::start().await;
    let nodes = cluster.nodes();
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "silent"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let node = node_where(
        &nodes,
        "silent",
        "Ready Unknown and unreachable taints",
        |n| condition(n, "Ready").is_some_and(|c| c.status == "Unknown") && unreachable_tainted(n),
    )
    .await;
    let ready = condition(&node, "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusNeverUpdated"));
}

fn pod(name: &str, node: &str, tolerations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "busybox"}],
            "tolerations": tolerations,
        },
    }))
    .unwrap()
}

/// Whether the pod was evicted: deleted, or terminating (the agent finishes the deletion).
async fn evicted(pods: &Api<Pod>, name: &str) -> Result<bool, kube::Error> {
    Ok(pods
        .get_opt(name)
        .await?
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some()))
}

async fn wait_evicted(pods: &Api<Pod>, name: &str) {
    eventually_ok!(format!("pod {name} evicted"), within PATIENCE, {
        match evicted(pods, name).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(pods.get(name).await.map(|p| p.status)),
            Err(e) => panic!("{e}"),
        }
    });
}

#[tokio::test]
async fn pods_are_evicted_when_their_tolerations_run_out() {
    let cluster = Cluster::start().await;
    let client = &cluster.client;
    let (nodes, pods) = (cluster.nodes(), cluster.pods());
    register_node(client, "n2", json!({})).await;
    register_node(client, "n3", json!({})).await;
    let n2_beating = heartbeat(client, "n2");
    let n3_beating = heartbeat(client, "n3");

    let unreachable = |seconds: Option<i64>| {
        let mut t = json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": NO_EXECUTE});
        if let Some(s) = seconds {
            t["tolerationSeconds"] = json!(s);
        }
        json!([t])
    };
    let post = PostParams::default();
    pods.create(&post, &pod("plain", "n2", json!([])))
        .await
        .unwrap();
    pods.create(&post, &pod("patient", "n2", unreachable(Some(4))))
        .await
        .unwrap();
    pods.create(&post, &pod("forever", "n2", unreachable(None)))
        .await
        .unwrap();
    pods.create(&post, &pod("elsewhere", "n3", json!([])))
        .await
        .unwrap();
    let ready = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    ]}});
    pods.patch_status("forever", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();

    // n2's agent dies.
    n2_beating.cancel();
    node_where(&nodes, "n2", "unreachable taints", unreachable_tainted).await;
    let tainted = Instant::now();

    // No toleration of its own: the default one (pod_eviction_timeout, 1 s here).
    wait_evicted(&pods, "plain").await;
    assert!(
        !evicted(&pods, "patient").await.unwrap(),
        "a pod tolerating for 4 s is evicted with the ones tolerating for 1 s"
    );
    wait_evicted(&pods, "patient").await;
    let waited = tainted.elapsed();
    assert!(
        waited >= Duration::from_millis(3500),
        "evicted after {waited:?}, before its 4 s"
    );

    // Tolerating forever: kept, but no longer Ready (its agent cannot say).
    let forever = pods.get("forever").await.unwrap();
    assert!(
        forever.metadata.deletion_timestamp.is_none(),
        "the pod tolerating forever was evicted"
    );
    eventually_ok!("forever marked not ready", within PATIENCE, {
        let pod = pods.get("forever").await.unwrap();
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        if ready.as_deref() == Some("False") {
            Ok(())
        } else {
            Err(ready)
        }
    });
    // The healthy node's pod is untouched.
    assert!(!evicted(&pods, "elsewhere").await.unwrap());

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually_ok!("a TaintManagerEviction event for plain", within PATIENCE, {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("TaintManagerEviction")
                    && e.involved_object.name.as_deref() == Some("plain")
            })
            .ok_or("no event yet")
    });
    // Still there a second after the others went.
    throughout!("forever kept", Duration::from_secs(1), {
        let pod = pods.get("forever").await.unwrap();
        if pod.metadata.deletion_timestamp.is_none() {
            Ok(())
        } else {
            Err(pod.metadata)
        }
    });
    n3_beating.cancel();
}

#[tokio::test]
async fn other_noexecute_taints_evict_at_once_and_cordons_taint() {
    let cluster = Cluster::start().await;
    let client = &cluster.client;
    let (nodes, pods) = (cluster.nodes(), cluster.pods());
    register_node(client, "n4", json!({})).await;
    let beating = heartbeat(client, "n4");
    let post = PostParams::default();
    pods.create(&post, &pod("intolerant", "n4", json!([])))
        .await
        .unwrap();
    let tolerant = json!([{"key": "example.com/maintenance", "operator": "Exists"}]);
    pods.create(&post, &pod("tolerant", "n4", tolerant))
        .await
        .unwrap();

    // An operator's taint: only pods that tolerate it stay; the taint is not ours to
    // remove.
    let taint = json!({"spec": {"taints": [
        {"key": "example.com/maintenance", "value": "disk", "effect": NO_EXECUTE}
    ]}});
    nodes
        .patch("n4", &PatchParams::default(), &Patch::Merge(&taint))
        .await
        .unwrap();
    wait_evicted(&pods, "intolerant").await;
    assert!(
        !evicted(&pods, "tolerant").await.unwrap(),
        "a tolerating pod was evicted"
    );
    let node = nodes.get("n4").await.unwrap();
    assert!(
        has_taint(&node, "example.com/maintenance", NO_EXECUTE),
        "{:?}",
        taints(&node)
    );

    // Cordoned: the unschedulable taint follows spec.unschedulable both ways.
    let cordon = |on: bool| json!({"spec": {"unschedulable": on}});
    nodes
        .patch("n4", &PatchParams::default(), &Patch::Merge(&cordon(true)))
        .await
        .unwrap();
    node_where(&nodes, "n4", "the unschedulable taint", |n| {
        has_taint(n, TAINT_UNSCHEDULABLE, NO_SCHEDULE)
    })
    .await;
    nodes
        .patch("n4", &PatchParams::default(), &Patch::Merge(&cordon(false)))
        .await
        .unwrap();
    let node = node_where(&nodes, "n4", "no unschedulable taint", |n| {
        !has_taint(n, TAINT_UNSCHEDULABLE, NO_SCHEDULE)
    })
    .await;
    assert!(
        has_taint(&node, "example.com/maintenance", NO_EXECUTE),
        "{:?}",
        taints(&node)
    );
    assert!(!evicted(&pods, "tolerant").await.unwrap());
    beating.cancel();
}
