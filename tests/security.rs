//! Security of `moor server` as a user meets it: TLS by default with a kubeconfig the real
//! kubectl uses; 401 without a credential; 403 without an RBAC permission and 200 once a
//! RoleBinding grants it; ServiceAccount tokens checked (expired, forged, wrong audience,
//! deleted account); a node's credential kept to its own pods; a bootstrap token joining an
//! agent; and a slowloris client not starving anyone else.

#[macro_use]
#[path = "support/wait.rs"]
mod wait;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use kube::Client;
use moor::auth::pki::ClusterCa;
use moor::controllers::serviceaccount::TokenIssuer;
use serde_json::{Value, json};

struct Server {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.csv");
        std::fs::write(
            &tokens,
            "bob-token,bob,1001\ncarol-token,carol,1002,\"team-a\"\n",
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_moor"))
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--disable-gitops",
                "--disable-scheduler",
            ])
            .arg("--token-auth-file")
            .arg(&tokens)
            .args(extra)
            .env_remove("MOOR_ETCD_ENDPOINTS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("server exited before it was ready")
                .unwrap();
            if let Some(rest) = line.strip_prefix("apiserver  ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        assert!(url.starts_with("https://"), "{url}");
        Server { child, url, dir }
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .expect("run kubectl")
    }

    fn ca_der(&self) -> Vec<u8> {
        let pem = std::fs::read_to_string(self.dir.path().join("pki/ca.crt")).unwrap();
        moor::auth::pki::first_pem_der(&pem).unwrap()
    }

    /// A client trusting the cluster CA, with no credential.
    fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config.root_cert = Some(vec![self.ca_der()]);
        config
    }

    fn with_token(&self, token: &str) -> Client {
        let mut config = self.config();
        config.auth_info.token = Some(token.to_owned().into());
        Client::try_from(config).unwrap()
    }

    fn with_certificate(&self, user: &str, groups: &[&str]) -> Client {
        let ca = ClusterCa::load_or_create(&self.dir.path().join("pki")).unwrap();
        let issued = ca.issue_client(user, groups).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut config = self.config();
        config.auth_info.client_certificate_data = Some(b64(&issued.cert_pem));
        config.auth_info.client_key_data = Some(b64(&issued.key_pem).into());
        Client::try_from(config).unwrap()
    }
}

/// The status code (and body) of a request.
async fn call(client: &Client, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
        .unwrap();
    let response = client.send(request.map(Into::into)).await.unwrap();
    let code = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_kubeconfig_authentication_and_rbac() {
    let server = Server::start(&[]);
    // The kubeconfig moor server writes works with the real kubectl over TLS.
    let out = server.kubectl(&["get", "namespaces", "-o", "name"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace/kube-system"));
    let out = server.kubectl(&["auth", "whoami", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whoami: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(whoami["status"]["userInfo"]["username"], "admin");

    // No credential: 401, except for health and version.
    let anonymous = Client::try_from(server.config()).unwrap();
    let (code, status) = call(&anonymous, "GET", "/api/v1/namespaces", None).await;
    assert_eq!(code, 401, "{status}");
    assert_eq!(status["reason"], "Unauthorized");
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(call(&anonymous, "GET", path, None).await.0, 200, "{path}");
    }
    // A token that is not in the file: 401.
    let (code, _) = call(&server.with_token("nobody"), "GET", "/api/v1/pods", None).await;
    assert_eq!(code, 401);

    // Bob (token file) may not list pods until a RoleBinding grants view in default.
    let bob = server.with_token("bob-token");
    let (code, status) = call(&bob, "GET", "/api/v1/namespaces/default/pods", None).await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let out = server.kubectl(&[
        "create",
        "rolebinding",
        "bob-view",
        "--clusterrole=view",
        "--user=bob",
        "-n",
        "default",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually_ok!("bob reads pods", {
        let (code, status) = call(&bob, "GET", "/api/v1/namespaces/default/pods", None).await;
        if code == 200 {
            Ok(())
        } else {
            Err((code, status))
        }
    });
    // ... in default only, and read only.
    let (code, _) = call(&bob, "GET", "/api/v1/namespaces/kube-system/pods", None).await;
    assert_eq!(code, 403);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let (code, _) = call(
        &bob,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(cm),
    )
    .await;
    assert_eq!(code, 403);
    // view excludes Secrets.
    let (code, _) = call(&bob, "GET", "/api/v1/namespaces/default/secrets", None).await;
    assert_eq!(code, 403);
    // kubectl auth can-i asks the server (SelfSubjectAccessReview).
    let can_i = |who: &str, verb: &str, what: &str, ns: &str| {
        let out = server.kubectl(&["auth", "can-i", verb, what, "-n", ns, "--as", who]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(can_i("bob", "list", "pods", "default"), "yes");
    assert_eq!(can_i("bob", "list", "pods", "kube-system"), "no");
    assert_eq!(can_i("bob", "create", "configmaps", "default"), "no");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_are_checked() {
    let server = Server::start(&[]);
    let out = server.kubectl(&["create", "serviceaccount", "build", "-n", "default"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.kubectl(&[
        "get",
        "sa",
        "build",
        "-n",
        "default",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let uid = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!uid.is_empty());
    let issuer = TokenIssuer::load_or_create(server.dir.path()).unwrap();
    let whoami = |client: Client| async move {
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
        call(
            &client,
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some(review),
        )
        .await
    };

    let good = issuer
        .issue("default", "build", &uid, &[], Duration::from_secs(600))
        .unwrap();
    let (code, review) = whoami(server.with_token(&good)).await;
    assert_eq!(code, 201, "{review}");
    let info = &review["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:build");
    assert!(
        info["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:serviceaccounts:default"))
    );

    // Wrong audience.
    let other_audience = issuer
        .issue(
            "default",
            "build",
            &uid,
            &["https://elsewhere".to_owned()],
            Duration::from_secs(600),
        )
        .unwrap();
    let (code, status) = whoami(server.with_token(&other_audience)).await;
    assert_eq!(code, 401, "{status}");
    // Forged: signed by another key.
    let stranger = tempfile::tempdir().unwrap();
    let forged = TokenIssuer::load_or_create(stranger.path())
        .unwrap()
        .issue("default", "build", &uid, &[], Duration::from_secs(600))
        .unwrap();
    assert_eq!(whoami(server.with_token(&forged)).await.0, 401);
    // Tampered: the payload changed, the signature kept.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("system:serviceaccount:kube-system:default");
    parts[1] = engine.encode(claims.to_string());
    assert_eq!(whoami(server.with_token(&parts.join("."))).await.0, 401);
    // Expired an hour ago (past the minute of clock skew allowed), signed with the real key.
    let key = std::fs::read(server.dir.path().join("service-account.key")).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let mut expired_claims = claims.clone();
    expired_claims["sub"] = json!("system:serviceaccount:default:build");
    expired_claims["iat"] = json!(now - 7200);
    expired_claims["nbf"] = json!(now - 7200);
    expired_claims["exp"] = json!(now - 3600);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(issuer.key_id().to_owned());
    let expired = jsonwebtoken::encode(
        &header,
        &expired_claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&key),
    )
    .unwrap();
    let (code, status) = whoami(server.with_token(&expired)).await;
    assert_eq!(code, 401, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("expired"),
        "{status}"
    );
    // The same claims, not expired, are accepted: the expiry alone made the difference.
    expired_claims["exp"] = json!(now + 3600);
    let fresh = jsonwebtoken::encode(
        &header,
        &expired_claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&key),
    )
    .unwrap();
    assert_eq!(whoami(server.with_token(&fresh)).await.0, 201);
    // Deleting the ServiceAccount kills its tokens.
    let out = server.kubectl(&["delete", "serviceaccount", "build", "-n", "default"]);
    assert!(out.status.success());
    eventually_ok!("the token refused", {
        match whoami(server.with_token(&good)).await {
            (401, _) => Ok(()),
            other => Err(other),
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_credential_reaches_only_its_own_pods() {
    let server = Server::start(&[]);
    let pod = |name: &str, node: &str, secret: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "s", "secret": {"secretName": secret}}]}})
    };
    let admin = server.with_certificate("admin", &["system:masters"]);
    for (name, node, secret) in [("on-n1", "n1", "s1"), ("on-n2", "n2", "s2")] {
        let (code, body) = call(
            &admin,
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(pod(name, node, secret)),
        )
        .await;
        assert_eq!(code, 201, "{body}");
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret}, "stringData": {"k": "v"}});
        assert_eq!(
            call(
                &admin,
                "POST",
                "/api/v1/namespaces/default/secrets",
                Some(secret)
            )
            .await
            .0,
            201
        );
    }
    let n1 = server.with_certificate("system:node:n1", &["system:nodes"]);
    let status = json!({"status": {"phase": "Running"}});
    let patch = |name: &str| {
        let n1 = n1.clone();
        let path = format!("/api/v1/namespaces/default/pods/{name}/status");
        let status = status.clone();
        async move {
            let request = axum::http::Request::patch(path)
                .header("content-type", "application/merge-patch+json")
                .body(status.to_string().into_bytes())
                .unwrap();
            n1.send(request.map(Into::into))
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    eventually_ok!(
        "n1 updates its pod's status",
        match patch("on-n1").await {
            200 => Ok(()),
            other => Err(other),
        }
    );
    assert_eq!(patch("on-n2").await, 403, "another node's pod");
    assert_eq!(
        call(&n1, "DELETE", "/api/v1/namespaces/default/pods/on-n2", None)
            .await
            .0,
        403
    );
    // Secrets: only the one its pod mounts.
    assert_eq!(
        call(&n1, "GET", "/api/v1/namespaces/default/secrets/s1", None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&n1, "GET", "/api/v1/namespaces/default/secrets/s2", None)
            .await
            .0,
        403
    );
    assert_eq!(
        call(&n1, "GET", "/api/v1/namespaces/default/secrets", None)
            .await
            .0,
        403
    );
    // Its own Node, not another's.
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    assert_eq!(
        call(&n1, "POST", "/api/v1/nodes", Some(node("n1"))).await.0,
        201
    );
    assert_eq!(
        call(&n1, "POST", "/api/v1/nodes", Some(node("n2"))).await.0,
        403
    );
    // And nothing else: no Deployments.
    assert_eq!(
        call(&n1, "GET", "/apis/apps/v1/deployments", None).await.0,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_joins_with_a_bootstrap_token() {
    let server = Server::start(&[]);
    let moor = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_moor"))
            .args(args)
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .output()
            .unwrap()
    };
    let out = moor(&["token", "create", "--ttl", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        moor::auth::authn::bootstrap_token_parts(&token).is_some(),
        "{token}"
    );
    // The token itself only lets its holder join.
    let holder = server.with_token(&token);
    assert_eq!(
        call(&holder, "GET", "/api/v1/namespaces/default/pods", None)
            .await
            .0,
        403
    );
    let wrong = format!("{}.0000000000000000", &token[..6]);
    assert_eq!(
        call(&server.with_token(&wrong), "GET", "/version", None)
            .await
            .0,
        401
    );

    // The agent joins: it sends a CSR with the token and keeps the certificate it gets.
    // (No containerd here: the agent stops after joining, which is all this test needs.)
    let agent_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args([
            "agent",
            "--node-name",
            "joiner",
            "--token",
            &token,
            "--server",
            &server.url,
        ])
        .arg("--certificate-authority")
        .arg(server.dir.path().join("pki/ca.crt"))
        .arg("--data-dir")
        .arg(agent_dir.path())
        .args(["--containerd-socket", "/nonexistent/containerd.sock"])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("node \"joiner\" joined"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kubeconfig = agent_dir.path().join("kubeconfig.yaml");
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["auth", "whoami", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whoami: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        whoami["status"]["userInfo"]["username"],
        "system:node:joiner"
    );
    // A node cannot obtain a certificate for another node with its own credential.
    let (csr, _) = moor::auth::pki::node_csr("someone-else").unwrap();
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&text).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let node = Client::try_from(config).unwrap();
    let (code, status) = call(
        &node,
        "POST",
        moor::auth::NODE_CERTIFICATE_PATH,
        Some(json!({"csr": csr})),
    )
    .await;
    assert_eq!(code, 403, "{status}");
    // An expired token no longer joins.
    let out = moor(&["token", "delete", &token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually_ok!("the deleted token refused", {
        match call(&server.with_token(&token), "GET", "/version", None).await {
            (401, _) => Ok(()),
            other => Err(other),
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_does_not_starve_others() {
    let server = Server::start(&[]);
    let addr: std::net::SocketAddr = server.url.trim_start_matches("https://").parse().unwrap();
    // 200 connections that never finish a TLS handshake, and 50 that dribble a request's
    // headers a byte at a time.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(std::net::TcpStream::connect(addr).unwrap());
    }
    let dribbling: Vec<_> = (0..50)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                // A ClientHello that never ends: the handshake deadline must cut it off.
                for byte in b"\x16\x03\x01\x02\x00" {
                    if stream.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                std::thread::sleep(Duration::from_secs(30));
            })
        })
        .collect();
    // Everyone else is served while the slow clients still hold their connections: not
    // one of them has been cut off yet when the requests are done.
    let admin = server.with_certificate("admin", &["system:masters"]);
    for _ in 0..20 {
        assert_eq!(call(&admin, "GET", "/api/v1/namespaces", None).await.0, 200);
    }
    let stream = idle.pop().unwrap();
    let mut buf = [0u8; 16];
    stream.set_nonblocking(true).unwrap();
    let still_open = std::io::Read::read(&mut &stream, &mut buf);
    assert!(
        matches!(&still_open, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the idle connection was already closed when the others had been served: {still_open:?}"
    );
    // And the server closes it at the handshake deadline (a read timing out here would
    // mean it never did).
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let read = std::io::Read::read(&mut &stream, &mut buf);
    assert!(
        matches!(&read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{read:?}"
    );
    drop(idle);
    drop(dribbling);
}
