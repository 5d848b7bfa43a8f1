//! The review endpoints a caller asks about itself — SelfSubjectAccessReview (`kubectl
//! auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i --list`) and
//! SelfSubjectReview (`kubectl auth whoami`) — and moor's node join endpoint, which signs
//! a joining agent's certificate signing request with the cluster CA.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Inner;
use super::access::Caller;
use super::error::ApiError;
use crate::auth::{
    Attributes, Decision, GROUP_BOOTSTRAPPERS, GROUP_MASTERS, ResourceAttributes, UserInfo,
};

pub use crate::auth::NODE_CERTIFICATE_PATH;

fn caller(caller: Option<Extension<Caller>>) -> UserInfo {
    caller
        .map(|Extension(Caller(user))| user)
        .unwrap_or_default()
}

/// The review in `body`: JSON, YAML or (as kubectl sends it) protobuf.
fn parse(headers: &HeaderMap, body: &Bytes, kind: &str) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let value = super::request::parse_body(content_type, body, ("authorization.k8s.io/v1", kind))?;
    if value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k != kind)
    {
        return Err(ApiError::bad_request(format!(
            "expected a {kind}, got a {}",
            value["kind"]
        )));
    }
    Ok(value)
}

fn created(value: Value) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
pub async fn self_subject_access_review(
    State(inner): State<Arc<Inner>>,
    user: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut review = parse(&headers, &body, "SelfSubjectAccessReview")?;
    let user = caller(user);
    let spec = &review["spec"];
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let attrs = if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        Attributes {
            user,
            verb: text(r, "verb"),
            resource: Some(ResourceAttributes {
                group: text(r, "group"),
                resource: text(r, "resource"),
                subresource: text(r, "subresource"),
                namespace: text(r, "namespace"),
                name: text(r, "name"),
            }),
            path: String::new(),
        }
    } else if let Some(n) = spec.get("nonResourceAttributes").filter(|v| v.is_object()) {
        Attributes {
            user,
            verb: text(n, "verb"),
            resource: None,
            path: text(n, "path"),
        }
    } else {
        return Err(ApiError::bad_request(
            "spec: exactly one of resourceAttributes and nonResourceAttributes is required",
        ));
    };
    let decision = inner.authorize(&attrs);
    let mut status = json!({"allowed": decision.allowed()});
    match decision {
        Decision::Allow(reason) => status["reason"] = Value::String(reason),
        Decision::Deny(reason) => {
            status["denied"] = Value::Bool(true);
            status["reason"] = Value::String(reason);
        }
        Decision::NoOpinion => {}
    }
    review["status"] = status;
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    Ok(created(review))
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews`.
pub async fn self_subject_rules_review(
    State(inner): State<Arc<Inner>>,
    user: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut review = parse(&headers, &body, "SelfSubjectRulesReview")?;
    let user = caller(user);
    let namespace = review["spec"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let (resource_rules, non_resource_rules) = if user.in_group(GROUP_MASTERS) {
        (
            vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})],
            vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})],
        )
    } else {
        let (resources, non_resources) = inner.rbac_policy().rules_for(&user, &namespace);
        (
            resources
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
            non_resources
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
        )
    };
    review["status"] = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    });
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectRulesReview");
    Ok(created(review))
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`).
pub async fn self_subject_review(user: Option<Extension<Caller>>) -> Response {
    let user = caller(user);
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    created(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "metadata": {"creationTimestamp": jiff::Timestamp::now().to_string()},
        "status": {"userInfo": info},
    }))
}

/// `POST /moor/v1/node-certificate` with `{"csr": PEM}`: a client certificate for the
/// node the request names, signed by the cluster CA, and the CA (`{"certificate", "ca"}`).
/// A node renews only its own; a bootstrap token's holder (or an administrator) may ask
/// for any node, as upstream's CSR auto-approval allows.
pub async fn node_certificate(
    State(inner): State<Arc<Inner>>,
    user: Option<Extension<Caller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = caller(user);
    let ca = inner
        .security()
        .ca
        .clone()
        .ok_or_else(|| ApiError::unavailable("this server has no cluster CA to sign with"))?;
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("decoding the request: {e}")))?;
    let csr = request
        .get("csr")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("the request needs a \"csr\" (PEM)"))?;
    let own = user.node_name().map(str::to_owned);
    let may_name_any = user.in_group(GROUP_BOOTSTRAPPERS) || user.in_group(GROUP_MASTERS);
    let (certificate, node) = ca
        .sign_node_csr(csr, |node| {
            own.as_deref() == Some(node) || (own.is_none() && may_name_any)
        })
        .map_err(|e| match e {
            crate::auth::pki::PkiError::BadRequest(message)
                if message.contains("may not obtain") =>
            {
                ApiError::forbidden(message)
            }
            e => ApiError::bad_request(e.to_string()),
        })?;
    tracing::info!(node = %node, by = %user.name, "signed a node client certificate");
    Ok(created(json!({
        "certificate": certificate,
        "ca": ca.cert_pem(),
    })))
}
