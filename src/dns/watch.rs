//! Keeps the [`Index`] current: one kube-runtime watcher per kind (Services and
//! EndpointSlices, all namespaces), each event applied to the index the moment it arrives.
//!
//! A (re)list is buffered until the watcher says it is complete and then replaces that
//! kind in one step, so a watch that errors and relists never leaves queries looking at a
//! half-empty index; between the error and the relist the old picture keeps answering.
//! This module only reads from the API and only writes the index.

use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::index::Index;

/// A kind the index holds.
pub(crate) trait Indexed:
    kube::Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn apply(index: &mut Index, object: &Self);
    fn delete(index: &mut Index, object: &Self);
    fn replace(index: &mut Index, objects: &[Self]);
}

impl Indexed for Service {
    fn apply(index: &mut Index, object: &Self) {
        index.apply_service(object);
    }
    fn delete(index: &mut Index, object: &Self) {
        index.delete_service(object);
    }
    fn replace(index: &mut Index, objects: &[Self]) {
        index.replace_services(objects);
    }
}

impl Indexed for EndpointSlice {
    fn apply(index: &mut Index, object: &Self) {
        index.apply_slice(object);
    }
    fn delete(index: &mut Index, object: &Self) {
        index.delete_slice(object);
    }
    fn replace(index: &mut Index, objects: &[Self]) {
        index.replace_slices(objects);
    }
}

/// Watch every `K` until `shutdown`, keeping `index` in step; `synced` is told once the
/// first complete list is in the index.
pub(crate) async fn run<K: Indexed>(
    client: kube::Client,
    index: Arc<RwLock<Index>>,
    synced: oneshot::Sender<()>,
    shutdown: CancellationToken,
) {
    let kind = K::kind(&());
    let events =
        watcher::watcher(Api::<K>::all(client), watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut synced = Some(synced);
    let mut relist: Option<Vec<K>> = None;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                // The watcher relists on its next poll, after the back-off.
                tracing::warn!(%kind, %error, "cluster DNS watch failed; retrying");
                continue;
            }
            None => return,
        };
        // A std lock: every update below is synchronous and short, and queries only read.
        let write = || index.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Init => relist = Some(Vec::new()),
            Event::InitApply(object) => relist.get_or_insert_with(Vec::new).push(object),
            Event::InitDone => {
                K::replace(&mut write(), &relist.take().unwrap_or_default());
                if let Some(synced) = synced.take() {
                    let _ = synced.send(());
                }
            }
            Event::Apply(object) => K::apply(&mut write(), &object),
            Event::Delete(object) => K::delete(&mut write(), &object),
        }
    }
}
