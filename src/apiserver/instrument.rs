//! Request metrics of the API server: what a request was in kube-apiserver's metric labels
//! (verb, group, version, resource, subresource, scope), its answer counted by code and
//! timed, and long-running requests (watches, logs) counted for as long as their response
//! streams.
//!
//! Only resource requests are recorded: discovery, OpenAPI and unknown paths are not, so an
//! arbitrary URL can never mint a label value. The families themselves live in
//! [`crate::metrics`].

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::Method;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};

use super::request::Target;
use crate::metrics::{self, LongRunning, RequestLabels};

/// The labels of a request for `target` (`watch`: `watch=true` was asked; `apply`: a PATCH
/// whose body is an apply configuration), with kube-apiserver's verbs: GET of one object,
/// LIST and WATCH of collections (a watch of one object is a WATCH too), POST, PUT, PATCH,
/// APPLY, DELETE and DELETECOLLECTION.
pub fn labels(target: &Target, method: &Method, watch: bool, apply: bool) -> RequestLabels {
    let named = target.name.is_some();
    let verb = match *method {
        Method::GET | Method::HEAD if watch => "WATCH",
        Method::GET | Method::HEAD if named => "GET",
        Method::GET | Method::HEAD => "LIST",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH if apply => "APPLY",
        Method::PATCH => "PATCH",
        Method::DELETE if named => "DELETE",
        Method::DELETE => "DELETECOLLECTION",
        // kube-apiserver's bucket for anything else, which keeps the label set bounded.
        _ => "other",
    };
    // kube-apiserver's scope: a create names one object even though its URL is a
    // collection's.
    let scope = if named || *method == Method::POST {
        "resource"
    } else if target.namespace.is_some() {
        "namespace"
    } else {
        "cluster"
    };
    RequestLabels {
        verb,
        group: target.info.group,
        version: target.info.version,
        resource: target.info.plural,
        subresource: target.subresource.map_or("", |s| s.name()),
        scope,
    }
}

/// The labels of `PUT namespaces/{name}/finalize`, which has a handler of its own.
pub fn finalize_labels() -> RequestLabels {
    RequestLabels {
        verb: "PUT",
        group: "",
        version: "v1",
        resource: "namespaces",
        subresource: "finalize",
        scope: "resource",
    }
}

/// Count and time the answer to a request started at `started`. A long-running request
/// is timed until its response starts (kube-apiserver does not time watches to their end
/// either: that would only measure how long clients keep them) and counted as open until
/// its body is dropped — when it ends or its client goes away.
pub fn record(labels: RequestLabels, started: Instant, response: Response) -> Response {
    let status = response.status();
    metrics::api_request(labels, status.as_u16(), started.elapsed());
    if !(labels.is_long_running() && status.is_success()) {
        return response;
    }
    let open = LongRunning::start(&labels);
    response.map(|body| Body::new(CountedBody { body, _open: open }))
}

/// A response body that keeps its request counted as open while it lives.
struct CountedBody {
    body: Body,
    _open: LongRunning,
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        // `Body` is Unpin (it boxes its inner body), so no pin projection is needed.
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::{self, Subresource};

    fn target(plural: &str, namespace: Option<&str>, name: Option<&str>) -> Target {
        Target {
            info: registry::by_resource("", "v1", plural).unwrap(),
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            subresource: None,
        }
    }

    #[test]
    fn verbs_and_scopes_are_kube_apiservers() {
        let pods = target("pods", Some("default"), None);
        let pod = target("pods", Some("default"), Some("web"));
        let nodes = target("nodes", None, None);
        let cases = [
            (&pods, Method::GET, false, false, "LIST", "namespace"),
            (&pods, Method::GET, true, false, "WATCH", "namespace"),
            (&pod, Method::GET, false, false, "GET", "resource"),
            (&pod, Method::GET, true, false, "WATCH", "resource"),
            (&nodes, Method::GET, false, false, "LIST", "cluster"),
            (&pods, Method::POST, false, false, "POST", "resource"),
            (&pod, Method::PUT, false, false, "PUT", "resource"),
            (&pod, Method::PATCH, false, false, "PATCH", "resource"),
            (&pod, Method::PATCH, false, true, "APPLY", "resource"),
            (&pod, Method::DELETE, false, false, "DELETE", "resource"),
            (
                &pods,
                Method::DELETE,
                false,
                false,
                "DELETECOLLECTION",
                "namespace",
            ),
            (&pods, Method::OPTIONS, false, false, "other", "namespace"),
        ];
        for (target, method, watch, apply, verb, scope) in cases {
            let l = labels(target, &method, watch, apply);
            assert_eq!((l.verb, l.scope), (verb, scope), "{method} watch={watch}");
            assert_eq!((l.group, l.version), ("", "v1"));
            assert_eq!(l.resource, target.info.plural);
            assert_eq!(l.subresource, "");
        }
        let mut log = pod.clone();
        log.subresource = Some(Subresource::Log);
        let l = labels(&log, &Method::GET, false, false);
        assert_eq!((l.verb, l.subresource), ("GET", "log"));
        assert!(l.is_long_running());
    }
}
