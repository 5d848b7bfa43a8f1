//! `GET pods/{name}/log`: the API server's side of `kubectl logs`. Finds the pod's node and
//! the container, then proxies to that node agent's kubelet API
//! (`/containerLogs/{namespace}/{pod}/{container}`, at the Node's InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.port`) and streams its answer back, so
//! `--follow` streams as the container writes.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::Inner;
use super::error::ApiError;
use super::request::{Params, Target};
use crate::api::registry;

/// The query parameters kubelet understands, passed through.
const PASSED: &[&str] = &[
    "follow",
    "previous",
    "tailLines",
    "limitBytes",
    "timestamps",
    "sinceSeconds",
];

impl Inner {
    pub async fn pod_log(&self, target: &Target, params: &Params) -> Result<Response, ApiError> {
        let pod_target = Target {
            info: target.info,
            namespace: target.namespace.clone(),
            name: target.name.clone(),
            subresource: None,
        };
        let pod = self.get_object(&pod_target, &Params::default()).await?;
        let pod = &pod.value;
        let name = target.name.as_deref().unwrap_or_default();
        let namespace = target.namespace.as_deref().unwrap_or("default");
        let container = container_for(pod, name, params.get("container"))?;
        let node_name = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
                ))
            })?;
        let nodes = registry::by_resource("", "v1", "nodes")
            .ok_or_else(|| ApiError::internal("nodes are not served"))?;
        let node_target = Target {
            info: nodes,
            namespace: None,
            name: Some(node_name.to_owned()),
            subresource: None,
        };
        let node = self.get_object(&node_target, &Params::default()).await?;
        let (host, port) = kubelet_endpoint(&node.value).ok_or_else(|| {
            ApiError::bad_request(format!(
                "node \"{node_name}\" has no address and kubelet port to fetch logs from"
            ))
        })?;
        let mut query: Vec<(&str, &str)> = Vec::new();
        for p in PASSED {
            if let Some(v) = params.get(p) {
                query.push((p, v));
            }
        }
        let query = serde_urlencoded::to_string(&query).unwrap_or_default();
        let path = format!(
            "/containerLogs/{}/{}/{}?{query}",
            encode(namespace),
            encode(name),
            encode(&container)
        );
        proxy(&host, port, &path).await
    }
}

/// The container asked for, or the only one; upstream's wording when it is ambiguous.
fn container_for(pod: &Value, pod_name: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let init = names("initContainers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().chain(init.iter()).any(|n| n == c) => Ok(c.to_owned()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]{}",
            containers.join(" "),
            if init.is_empty() {
                String::new()
            } else {
                format!(" or one of the init containers: [{}]", init.join(" "))
            }
        ))),
    }
}

/// The node's InternalIP (else any address) and kubelet port.
fn kubelet_endpoint(node: &Value) -> Option<(String, u16)> {
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)?;
    let addresses = node.pointer("/status/addresses")?.as_array()?;
    let pick = |kind: &str| {
        addresses
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .map(str::to_owned)
    };
    let host = pick("InternalIP").or_else(|| pick("Hostname"))?;
    Some((host, port))
}

fn encode(segment: &str) -> String {
    serde_urlencoded::to_string([("", segment)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// One HTTP/1 request to the kubelet; its body streamed back as it comes.
async fn proxy(host: &str, port: u16, path: &str) -> Result<Response, ApiError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!("Get \"http://{host}:{port}{path}\": {e}"))
    };
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    .map_err(|_| unreachable(&"connection timed out"))?
    .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        // Ends when the response body is done or the client went away.
        let _ = conn.await;
    });
    let request = hyper::Request::get(path)
        .header(header::HOST, addr.as_str())
        .body(Body::empty())
        .map_err(|e| unreachable(&e))?;
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(&e))?;
    let status = answer.status();
    if status != StatusCode::OK {
        let body = http_body_util::BodyExt::collect(answer.into_body())
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let message = body.trim().to_owned();
        return Err(if status == StatusCode::BAD_REQUEST {
            ApiError::bad_request(message)
        } else {
            ApiError::internal(message)
        });
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain")],
        Body::new(answer.into_body()),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_the_only_one_or_must_be_named() {
        let one = json!({"spec": {"containers": [{"name": "web"}]}});
        assert_eq!(container_for(&one, "p", None).unwrap(), "web");
        let two = json!({"spec": {"containers": [{"name": "web"}, {"name": "side"}], "initContainers": [{"name": "init"}]}});
        assert_eq!(
            container_for(&two, "p", None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [web side] or one of the init containers: [init]"
        );
        assert_eq!(container_for(&two, "p", Some("init")).unwrap(), "init");
        assert_eq!(
            container_for(&two, "p", Some("nope")).unwrap_err().message,
            "container nope is not valid for pod p"
        );
    }

    #[test]
    fn the_endpoint_comes_from_the_node_status() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "box1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}
        }});
        assert_eq!(kubelet_endpoint(&node), Some(("10.0.0.5".into(), 10250)));
        assert_eq!(kubelet_endpoint(&json!({"status": {}})), None);
    }
}
