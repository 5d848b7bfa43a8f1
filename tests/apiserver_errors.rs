//! Bad input gets Kubernetes Status errors with the right code and reason — never a crash
//! or a hang: malformed bodies, oversized bodies, unknown paths and methods, bad selectors
//! and resourceVersions, unsupported media types, invalid objects.

#[path = "support/apiserver.rs"]
mod apiserver_support;

use apiserver_support::{Backend, TestServer};

async fn call(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    match client.request_text(request).await {
        Ok(text) => (
            200,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        ),
        Err(kube::Error::Api(status)) => (status.code, serde_json::to_value(&*status).unwrap()),
        Err(other) => panic!("{method} {path}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_status_errors() {
    let server = TestServer::start(Backend::Embedded).await;
    let c = server.client();
    let cms = "/api/v1/namespaces/default/configmaps";

    let (code, status) = call(
        &c,
        "POST",
        cms,
        "application/json",
        b"{\n  \"metadata\": }".to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("line 2"),
        "{status}"
    );

    let big = format!(
        "{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"k\":\"{}\"}}}}",
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let (code, status) = call(&c, "POST", cms, "application/json", big.into_bytes()).await;
    assert_eq!(code, 413, "{status}");

    let (code, _) = call(
        &c,
        "GET",
        "/api/v1/namespaces/default/nonsense",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 404);
    let (code, status) = call(&c, "PUT", cms, "application/json", b"{}".to_vec()).await;
    assert_eq!(code, 405, "{status}");

    let (code, status) = call(
        &c,
        "GET",
        &format!("{cms}?labelSelector=a%20in%20(b"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 400, "{status}");
    let (code, status) = call(
        &c,
        "GET",
        "/api/v1/pods?fieldSelector=spec.bogus%3Dx",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("field label not supported"),
        "{status}"
    );
    let (code, _) = call(
        &c,
        "GET",
        &format!("{cms}?resourceVersion=abc"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = call(
        &c,
        "GET",
        &format!("{cms}?limit=-3"),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 400);

    let (code, status) = call(&c, "POST", cms, "application/cbor", b"x".to_vec()).await;
    assert_eq!(code, 415, "{status}");
    let (code, status) = call(
        &c,
        "POST",
        cms,
        "application/vnd.kubernetes.protobuf",
        b"not protobuf".to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{status}");

    // Kind and namespace must agree with the URL.
    let (code, status) = call(
        &c,
        "POST",
        cms,
        "application/json",
        br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    let (code, status) = call(
        &c,
        "POST",
        cms,
        "application/json",
        br#"{"metadata":{"name":"x","namespace":"other"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{status}");

    // Invalid objects: 422 listing the bad fields.
    let (code, status) = call(
        &c,
        "POST",
        cms,
        "application/json",
        br#"{"metadata":{"name":"Not_Valid"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    let (code, status) = call(
        &c,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        br#"{"metadata":{"name":"p"},"spec":{"containers":[]}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("spec.containers"),
        "{status}"
    );

    // Hostile patches: replacing the whole object with a number, metadata with a string.
    let (code, _) = call(
        &c,
        "POST",
        cms,
        "application/json",
        br#"{"metadata":{"name":"target"}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 200);
    let target = format!("{cms}/target");
    let (code, status) = call(
        &c,
        "PATCH",
        &target,
        "application/json-patch+json",
        br#"[{"op":"replace","path":"","value":5}]"#.to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    let (code, status) = call(
        &c,
        "PATCH",
        &target,
        "application/merge-patch+json",
        br#"{"metadata":"x"}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    let (code, status) = call(
        &c,
        "PATCH",
        &target,
        "application/strategic-merge-patch+json",
        br#"[1,2]"#.to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    let (code, status) = call(
        &c,
        "PATCH",
        &target,
        "application/apply-patch+yaml",
        b"data: [unterminated".to_vec(),
    )
    .await;
    assert_eq!(code, 400, "{status}");

    // The server is still fine.
    let (code, _) = call(&c, "GET", cms, "application/json", vec![]).await;
    assert_eq!(code, 200);
}
