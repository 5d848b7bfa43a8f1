//! Reads: get, list and watch, served from the watch caches. Consistent reads wait until
//! the cache has every write this server acknowledged for the resource; a continued list
//! reads the store at the first page's revision so every page is one snapshot.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::Inner;
use super::cache::{CacheError, CacheEvent, CachedObject, Filter, ResourceCache};
use super::error::ApiError;
use super::request::{Params, Target};
use crate::api::selector::{FieldSelector, LabelSelector};
use crate::store::{EventKind, ListOptions, Revision};

/// How long a read waits for the cache to catch up with a revision before answering 504.
const CATCH_UP: Duration = Duration::from_secs(3);

/// Watches without timeoutSeconds end after this (kube-apiserver: 30–60 min, randomized).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Interval between bookmarks on watches that asked for them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

/// How a read's resourceVersion is to be honoured.
enum Freshness {
    /// `resourceVersion` unset: everything acknowledged before the request.
    Consistent,
    /// `resourceVersion=0`: whatever the cache has.
    Any,
    /// `resourceVersion=N` (NotOlderThan): at least N.
    NotOlderThan(Revision),
    /// `resourceVersionMatch=Exact`: exactly N (read from the store).
    Exact(Revision),
}

fn parse_revision(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!("invalid resourceVersion {rv:?}: expected a number"))
        })
}

fn freshness(params: &Params) -> Result<Freshness, ApiError> {
    let rv = params.get("resourceVersion");
    match (rv, params.get("resourceVersionMatch")) {
        (None, None) => Ok(Freshness::Consistent),
        (None, Some(m)) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch {m:?} is forbidden unless resourceVersion is provided"
        ))),
        (Some("0"), None | Some("NotOlderThan")) => Ok(Freshness::Any),
        (Some(rv), None | Some("NotOlderThan")) => Ok(Freshness::NotOlderThan(parse_revision(rv)?)),
        (Some(rv), Some("Exact")) => Ok(Freshness::Exact(parse_revision(rv)?)),
        (Some(_), Some(other)) => Err(ApiError::bad_request(format!(
            "invalid resourceVersionMatch {other:?}: expected Exact or NotOlderThan"
        ))),
    }
}

/// The filter a request's namespace and selectors ask for.
fn filter(target: &Target, params: &Params) -> Result<Filter, ApiError> {
    let labels = match params.get("labelSelector") {
        Some(s) => LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => LabelSelector::default(),
    };
    let fields = match params.get("fieldSelector") {
        Some(s) => {
            let fields =
                FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
            fields
                .validate_for(target.info.group, target.info.kind)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            fields
        }
        None => FieldSelector::default(),
    };
    Ok(Filter {
        namespace: target.namespace.clone().filter(|_| target.info.namespaced),
        labels,
        fields,
    })
}

/// One page of a list: objects in key order, the revision they reflect, and whether more
/// follow.
pub struct Page {
    /// (storage key, object), in key order.
    pub objects: Vec<(String, Arc<CachedObject>)>,
    /// The revision the page was read at.
    pub revision: Revision,
    /// Whether more objects follow (a continue token is offered).
    pub more: bool,
}

impl Page {
    /// The list's metadata: its resourceVersion and, when more follow, the continue token.
    pub fn list_meta(&self) -> Value {
        let mut meta = json!({"resourceVersion": self.revision.to_string()});
        if self.more
            && let Some((last, _)) = self.objects.last()
        {
            meta["continue"] = json!(encode_continue(self.revision, last));
        }
        meta
    }
}

/// An opaque continue token: the revision of the first page and the last key served.
fn encode_continue(revision: Revision, key: &str) -> String {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{revision}-{hex}")
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let (rev, hex) = token.split_once('-').ok_or_else(bad)?;
    let revision = rev.parse::<Revision>().map_err(|_| bad())?;
    if hex.len() % 2 != 0 {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    Ok((revision, String::from_utf8(bytes).map_err(|_| bad())?))
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl Inner {
    fn cache(&self, target: &Target) -> Result<&Arc<ResourceCache>, ApiError> {
        self.caches
            .get(&(target.info.group, target.info.plural))
            .ok_or_else(|| ApiError::internal(format!("no cache for {}", target.info.plural)))
    }

    /// Make sure the cache can answer a read of `freshness`: `Ok(None)` when it can,
    /// `Ok(Some(revision))` when the read must go to the store at that revision instead.
    ///
    /// This server's own acknowledged writes are always awaited in the cache. On a store
    /// other servers also write (etcd), a consistent read must also see their writes: the
    /// cache proves it has them when its revision reaches the store's current one;
    /// otherwise the read goes to the store, as kube-apiserver's consistent reads did before
    /// they could rely on watch progress notifications.
    async fn wait_fresh(
        &self,
        target: &Target,
        freshness: &Freshness,
    ) -> Result<Option<Revision>, ApiError> {
        let cache = self.cache(target)?;
        let needed = match freshness {
            Freshness::Consistent => self.acknowledged(target.info),
            Freshness::NotOlderThan(r) => *r,
            Freshness::Any | Freshness::Exact(_) => return Ok(None),
        };
        cache
            .wait_for(needed, CATCH_UP)
            .await
            .map_err(|e| ApiError::timeout(e.to_string()))?;
        if matches!(freshness, Freshness::Consistent)
            && self.shared_store.load(std::sync::atomic::Ordering::Relaxed)
        {
            let current = self.store.current_revision().await?;
            if cache.revision() < current {
                return Ok(Some(current));
            }
        }
        Ok(None)
    }

    /// One object, read with the freshness the request asks for.
    pub async fn get_object(
        &self,
        target: &Target,
        params: &Params,
    ) -> Result<Arc<CachedObject>, ApiError> {
        let info = target.info;
        let name = target.name.as_deref().unwrap_or_default();
        let freshness = freshness(params)?;
        let key = info.key(target.namespace.as_deref(), name);
        let not_found = || ApiError::not_found(info.group, info.plural, name);
        let from_store = |kv: crate::store::KeyValue| {
            CachedObject::from_store(&kv.value, kv.mod_revision)
                .map(Arc::new)
                .map_err(|e| ApiError::internal(e.to_string()))
        };
        if let Freshness::Exact(rev) = freshness {
            let page = self
                .store
                .list(
                    &key,
                    ListOptions {
                        revision: Some(rev),
                        limit: Some(1),
                        start_after: None,
                    },
                )
                .await?;
            let kv = page.kvs.into_iter().find(|kv| kv.key == key);
            return from_store(kv.ok_or_else(not_found)?);
        }
        if self.wait_fresh(target, &freshness).await?.is_some() {
            let (kv, _) = self.store.get(&key).await?;
            return from_store(kv.ok_or_else(not_found)?);
        }
        let (obj, _) = self.cache(target)?.get(&key);
        obj.ok_or_else(not_found)
    }

    /// GET of one object.
    pub async fn get(&self, target: &Target, params: &Params) -> Result<Response, ApiError> {
        let obj = self.get_object(target, params).await?;
        Ok(json_response(StatusCode::OK, obj.bytes.clone()))
    }

    /// One page of a collection, read with the freshness the request asks for (or at the
    /// revision of its continue token).
    pub async fn list_page(&self, target: &Target, params: &Params) -> Result<Page, ApiError> {
        let filter = filter(target, params)?;
        let limit = params.number("limit")?.unwrap_or(0) as usize;
        let prefix = target.info.prefix(target.namespace.as_deref());
        if let Some(token) = params.get("continue") {
            let (revision, after) = decode_continue(token)?;
            return self
                .list_from_store(&prefix, revision, &after, limit, &filter)
                .await;
        }
        let fresh = freshness(params)?;
        if let Freshness::Exact(rev) = fresh {
            return self.list_from_store(&prefix, rev, "", limit, &filter).await;
        }
        if let Some(at) = self.wait_fresh(target, &fresh).await? {
            return self.list_from_store(&prefix, at, "", limit, &filter).await;
        }
        let (snapshot, more) = self.cache(target)?.list(&prefix, None, limit, &filter);
        Ok(Page {
            objects: snapshot.objects,
            revision: snapshot.revision,
            more,
        })
    }

    /// LIST of a collection (one page).
    pub async fn list(&self, target: &Target, params: &Params) -> Result<Response, ApiError> {
        let info = target.info;
        let page = self.list_page(target, params).await?;
        // The items are ready-made bytes; only the envelope is encoded here.
        let head = json!({
            "kind": format!("{}List", info.kind),
            "apiVersion": info.api_version(),
            "metadata": page.list_meta(),
        });
        let mut head = serde_json::to_vec(&head).map_err(|e| ApiError::internal(e.to_string()))?;
        head.pop(); // the closing brace
        let size: usize = page.objects.iter().map(|(_, o)| o.bytes.len() + 1).sum();
        let mut body = BytesMut::with_capacity(head.len() + size + 16);
        body.put_slice(&head);
        body.put_slice(b",\"items\":[");
        for (i, (_, obj)) in page.objects.iter().enumerate() {
            if i > 0 {
                body.put_u8(b',');
            }
            body.put_slice(&obj.bytes);
        }
        body.put_slice(b"]}");
        Ok(json_response(StatusCode::OK, body.freeze()))
    }

    async fn list_from_store(
        &self,
        prefix: &str,
        revision: Revision,
        after: &str,
        limit: usize,
        filter: &Filter,
    ) -> Result<Page, ApiError> {
        let mut objects = Vec::new();
        let mut start_after = (!after.is_empty()).then(|| after.to_owned());
        loop {
            let page = self
                .store
                .list(
                    prefix,
                    ListOptions {
                        revision: Some(revision),
                        limit: Some(if limit == 0 { 1000 } else { limit + 1 }),
                        start_after: start_after.clone(),
                    },
                )
                .await
                .map_err(|e| {
                    if e.is_compacted() {
                        ApiError::expired(
                            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                        )
                    } else {
                        e.into()
                    }
                })?;
            for kv in &page.kvs {
                start_after = Some(kv.key.clone());
                let obj = CachedObject::from_store(&kv.value, kv.mod_revision)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                if !obj.matches(filter) {
                    continue;
                }
                if limit > 0 && objects.len() == limit {
                    return Ok(Page {
                        objects,
                        revision,
                        more: true,
                    });
                }
                objects.push((kv.key.clone(), Arc::new(obj)));
            }
            if !page.more {
                return Ok(Page {
                    objects,
                    revision,
                    more: false,
                });
            }
        }
    }

    /// WATCH of a collection (or of one object, via a name field selector).
    pub async fn watch(
        self: Arc<Self>,
        target: &Target,
        params: &Params,
    ) -> Result<Response, ApiError> {
        let info = target.info;
        let mut filter = filter(target, params)?;
        if let Some(name) = &target.name {
            filter.fields = FieldSelector::parse(&format!("metadata.name={name}"))
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        let bookmarks = params.flag("allowWatchBookmarks")?;
        let send_initial = params.flag("sendInitialEvents")?;
        let timeout = params
            .number("timeoutSeconds")?
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(DEFAULT_WATCH_TIMEOUT);
        let cache = self.cache(target)?.clone();
        let start = match params.get("resourceVersion") {
            None | Some("0") => None,
            Some(rv) => Some(parse_revision(rv)?),
        };
        if start.is_none() {
            // "Most recent": include everything this server acknowledged.
            let _ = self.wait_fresh(target, &Freshness::Consistent).await;
        }
        let (mut watch, snapshot) = match cache.watch(if send_initial { None } else { start }) {
            Ok(w) => w,
            Err(CacheError::TooOld { requested, oldest }) => {
                // As kube-apiserver: the watch opens, then one ERROR event with 410.
                let status =
                    ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
                        .status();
                let line = watch_line("ERROR", &serde_json::to_vec(&status).unwrap_or_default());
                return Ok(stream_response(futures::stream::iter([
                    Ok::<_, Infallible>(line),
                ])));
            }
            Err(e) => return Err(ApiError::timeout(e.to_string())),
        };
        let prefix = info.prefix(target.namespace.as_deref());
        let shutdown = self.shutdown.clone();
        let kind = info.kind;
        let api_version = info.api_version();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(256);
        tokio::spawn(async move {
            let bookmark = |rev: Revision, initial_end: bool| {
                let mut meta = json!({"resourceVersion": rev.to_string()});
                if initial_end {
                    meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                }
                let obj = json!({"kind": kind, "apiVersion": api_version, "metadata": meta});
                watch_line("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
            };
            let mut last = watch.from;
            // Initial events: the state as of the snapshot, as ADDED.
            if let Some(snapshot) = snapshot {
                for (key, obj) in &snapshot.objects {
                    if key.starts_with(&prefix)
                        && obj.matches(&filter)
                        && tx.send(Ok(watch_line("ADDED", &obj.bytes))).await.is_err()
                    {
                        return;
                    }
                }
                last = snapshot.revision;
                if send_initial && bookmarks && tx.send(Ok(bookmark(last, true))).await.is_err() {
                    return;
                }
            }
            for event in std::mem::take(&mut watch.replay) {
                if let Some(line) = event_line(&event, &filter)
                    && tx.send(Ok(line)).await.is_err()
                {
                    return;
                }
                last = last.max(event.revision());
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    _ = ticker.tick(), if bookmarks => {
                        let rev = last.max(cache.revision());
                        if tx.send(Ok(bookmark(rev, false))).await.is_err() {
                            return;
                        }
                    }
                    event = watch.live.recv() => match event {
                        Ok(event) => {
                            if event.revision() <= last {
                                continue;
                            }
                            last = event.revision();
                            if let Some(line) = event_line(&event, &filter)
                                && tx.send(Ok(line)).await.is_err()
                            {
                                return;
                            }
                        }
                        // Too slow to keep up: end the watch; the client re-watches from
                        // the last resourceVersion it saw, which history still covers.
                        Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                    }
                }
            }
        });
        Ok(stream_response(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
    }
}

/// The line a watch sends for an event, or nothing when the event does not concern the
/// watcher. An object that starts or stops matching the selectors is ADDED or DELETED, as
/// upstream does.
fn event_line(event: &CacheEvent, filter: &Filter) -> Option<Bytes> {
    let now = event.object.matches(filter);
    let before = event.prev.as_ref().is_some_and(|p| p.matches(filter));
    let kind = match (event.kind, before, now) {
        (EventKind::Deleted, _, true) => "DELETED",
        (EventKind::Deleted, _, false) => return None,
        (_, false, true) => "ADDED",
        (_, true, true) => "MODIFIED",
        (_, true, false) => "DELETED",
        (_, false, false) => return None,
    };
    Some(watch_line(kind, &event.object.bytes))
}

fn watch_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = BytesMut::with_capacity(object.len() + 32);
    line.put_slice(b"{\"type\":\"");
    line.put_slice(kind.as_bytes());
    line.put_slice(b"\",\"object\":");
    line.put_slice(object);
    line.put_slice(b"}\n");
    line.freeze()
}

fn stream_response<S>(stream: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue(42, "/registry/pods/default/web-0");
        assert_eq!(
            decode_continue(&token).unwrap(),
            (42, "/registry/pods/default/web-0".into())
        );
        assert!(decode_continue("garbage").is_err());
        assert!(decode_continue("1-zz").is_err());
    }
}
