//! Reservations: one store key per allocated cluster IP and per allocated node port, created
//! with the store's put-if-absent, so two writers — two requests of one server, or two API
//! servers on one etcd — can never both get the same one, and a restart remembers them all.
//!
//! Keys live under `/registry/moor.dev/serviceipallocations/{ip}` and
//! `/registry/moor.dev/servicenodeportallocations/{port}`: the store's key layout for a
//! cluster-scoped resource of the `moor.dev` group, under prefixes no served resource watches,
//! so they never show up in the API's caches, lists or watches. The value names the Service
//! that owns the reservation (namespace, name, uid) and when it was made; the uid is what a
//! release checks, so a Service never frees what another one holds, and the time is what
//! the repair pass's grace period reads.
//!
//! This module knows nothing about Service objects; [`super`] decides what to reserve.

use std::net::Ipv4Addr;

use bytes::Bytes;
use serde::Deserialize;

use crate::store::{DeleteOutcome, KeyValue, ListOptions, Store, StoreError, key};

/// The group the reservation keys are stored under (moor's own API group).
const GROUP: &str = "moor.dev";
/// The pseudo-resource of cluster IP reservations.
const IP_RESOURCE: &str = "serviceipallocations";
/// The pseudo-resource of node port reservations.
const PORT_RESOURCE: &str = "servicenodeportallocations";

/// One reservable thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Item {
    /// A cluster IP.
    Ip(Ipv4Addr),
    /// A node port.
    Port(u16),
}

impl Item {
    /// Its store key.
    pub(super) fn key(&self) -> String {
        match self {
            Item::Ip(ip) => key::object_key(GROUP, IP_RESOURCE, None, &ip.to_string()),
            Item::Port(port) => key::object_key(GROUP, PORT_RESOURCE, None, &port.to_string()),
        }
    }

    /// The item a store key names.
    pub(super) fn from_key(key: &str) -> Option<Item> {
        if let Some(ip) = key.strip_prefix(&prefix(Kind::Ip)) {
            return ip.parse().ok().map(Item::Ip);
        }
        key.strip_prefix(&prefix(Kind::Port))?
            .parse()
            .ok()
            .map(Item::Port)
    }

    pub(super) fn kind(&self) -> Kind {
        match self {
            Item::Ip(_) => Kind::Ip,
            Item::Port(_) => Kind::Port,
        }
    }
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Ip(ip) => write!(f, "cluster IP {ip}"),
            Item::Port(port) => write!(f, "node port {port}"),
        }
    }
}

/// Cluster IPs or node ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Ip,
    Port,
}

/// The key prefix of every reservation of `kind`.
pub(super) fn prefix(kind: Kind) -> String {
    let resource = match kind {
        Kind::Ip => IP_RESOURCE,
        Kind::Port => PORT_RESOURCE,
    };
    key::resource_prefix(GROUP, resource, None)
}

/// The Service a reservation belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(super) struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A reservation's stored value.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(super) struct Reservation {
    #[serde(flatten)]
    pub owner: Owner,
    /// When it was made (RFC 3339).
    pub reserved: String,
}

impl Reservation {
    fn parse(kv: &KeyValue) -> Option<Self> {
        serde_json::from_slice(&kv.value).ok()
    }

    /// The stored form (a JSON object of strings, so encoding cannot fail).
    pub(super) fn encode(&self) -> Bytes {
        serde_json::json!({
            "namespace": self.owner.namespace,
            "name": self.owner.name,
            "uid": self.owner.uid,
            "reserved": self.reserved,
        })
        .to_string()
        .into()
    }

    /// How long ago it was made; `None` when the time cannot be read.
    pub(super) fn age(&self, now: jiff::Timestamp) -> Option<std::time::Duration> {
        let at: jiff::Timestamp = self.reserved.parse().ok()?;
        now.duration_since(at).try_into().ok()
    }
}

/// What trying to reserve an item found.
#[derive(Debug)]
pub(super) enum Reserve {
    /// Reserved now, for the caller.
    Reserved,
    /// The caller's Service already held it.
    AlreadyOurs,
    /// Someone else holds it (`None`: a reservation whose value cannot be read).
    Taken(Option<Owner>),
}

/// One reservation as found in the store.
#[derive(Debug)]
pub(super) struct Found {
    pub item: Item,
    pub kv: KeyValue,
    /// `None` when the value cannot be read.
    pub reservation: Option<Reservation>,
}

/// Reserve `item` for `owner` (put-if-absent).
pub(super) async fn reserve(
    store: &dyn Store,
    item: Item,
    owner: &Owner,
) -> Result<Reserve, StoreError> {
    let value = Reservation {
        owner: owner.clone(),
        reserved: crate::apiserver::writes::now(),
    };
    match store.create(&item.key(), value.encode()).await {
        Ok(_) => Ok(Reserve::Reserved),
        Err(StoreError::AlreadyExists { .. }) => Ok(match holder(store, item).await? {
            Some(Some(r)) if r.owner.uid == owner.uid => Reserve::AlreadyOurs,
            Some(r) => Reserve::Taken(r.map(|r| r.owner)),
            // Released between the create and the read: still reported as taken, so a
            // static request answers "already allocated" rather than racing on, and
            // dynamic allocation moves to its next candidate.
            None => Reserve::Taken(None),
        }),
        Err(e) => Err(e),
    }
}

/// The reservation of `item`: `None` when there is none, `Some(None)` when its value cannot
/// be read.
pub(super) async fn holder(
    store: &dyn Store,
    item: Item,
) -> Result<Option<Option<Reservation>>, StoreError> {
    let (kv, _) = store.get(&item.key()).await?;
    Ok(kv.map(|kv| Reservation::parse(&kv)))
}

/// Release `item` if the Service with `uid` holds it; whether it was released.
pub(super) async fn release(store: &dyn Store, item: Item, uid: &str) -> Result<bool, StoreError> {
    let (kv, _) = store.get(&item.key()).await?;
    let Some(kv) = kv else {
        return Ok(false);
    };
    if Reservation::parse(&kv).is_none_or(|r| r.owner.uid != uid) {
        return Ok(false);
    }
    delete_exact(store, &kv).await
}

/// Delete the reservation `kv` only if nobody wrote it since it was read.
pub(super) async fn delete_exact(store: &dyn Store, kv: &KeyValue) -> Result<bool, StoreError> {
    Ok(matches!(
        store.delete(&kv.key, Some(kv.mod_revision)).await?,
        DeleteOutcome::Deleted { .. }
    ))
}

/// Every reservation of `kind`.
pub(super) async fn list(store: &dyn Store, kind: Kind) -> Result<Vec<Found>, StoreError> {
    let mut found = Vec::new();
    let mut opts = ListOptions {
        limit: Some(1000),
        ..ListOptions::default()
    };
    loop {
        let page = store.list(&prefix(kind), opts.clone()).await?;
        let last = page.kvs.last().map(|kv| kv.key.clone());
        for kv in page.kvs {
            // A key that names no item of this kind (written by hand) is left alone.
            let Some(item) = Item::from_key(&kv.key) else {
                continue;
            };
            let reservation = Reservation::parse(&kv);
            found.push(Found {
                item,
                kv,
                reservation,
            });
        }
        if !page.more || last.is_none() {
            return Ok(found);
        }
        opts.revision = Some(page.revision);
        opts.start_after = last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::RESOURCES;

    #[test]
    fn keys_round_trip_and_stay_out_of_every_watched_prefix() {
        for item in [Item::Ip(Ipv4Addr::new(10, 43, 0, 1)), Item::Port(30080)] {
            let key = item.key();
            assert_eq!(Item::from_key(&key), Some(item));
            assert!(key.starts_with(&prefix(item.kind())));
            crate::store::check_key(&key).unwrap();
            for r in RESOURCES {
                assert!(
                    !key.starts_with(&r.prefix(None)),
                    "{key} under {}",
                    r.plural
                );
            }
        }
        assert_eq!(
            Item::Ip(Ipv4Addr::new(10, 43, 0, 1)).key(),
            "/registry/moor.dev/serviceipallocations/10.43.0.1"
        );
        assert_eq!(
            Item::Port(30080).key(),
            "/registry/moor.dev/servicenodeportallocations/30080"
        );
        assert_eq!(
            Item::from_key("/registry/moor.dev/serviceipallocations/x"),
            None
        );
        assert_eq!(Item::from_key("/registry/services/default/a"), None);
    }

    #[test]
    fn reservations_read_their_age() {
        let r = Reservation {
            owner: Owner {
                namespace: "default".into(),
                name: "web".into(),
                uid: "u".into(),
            },
            reserved: "2024-06-01T12:00:00Z".into(),
        };
        let now: jiff::Timestamp = "2024-06-01T12:01:30Z".parse().unwrap();
        assert_eq!(r.age(now), Some(std::time::Duration::from_secs(90)));
        let json: serde_json::Value = serde_json::from_slice(&r.encode()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"namespace": "default", "name": "web", "uid": "u", "reserved": "2024-06-01T12:00:00Z"})
        );
        let unreadable = Reservation {
            reserved: "yesterday".into(),
            ..r
        };
        assert_eq!(unreadable.age(now), None);
    }
}
