//! The repair pass (upstream's cluster IP and node port repair controllers): brings the
//! reservations back in line with the Services in the store.
//!
//! A write reserves before it stores the Service and releases after, so a crash (or a
//! failed release) can leave a reservation nobody holds; and Services restored from a
//! snapshot, or written before reservations existed, can hold an IP or port without one.
//! The pass:
//!
//! - releases a reservation whose Service is gone or no longer holds it — only once it is
//!   older than the grace period, so the reservation of a create still in flight on this or
//!   another API server (reserved, Service not yet written) is never undone, and only if
//!   nobody rewrote it since it was read;
//! - reserves, for a Service holding an IP or port with no reservation, that IP or port;
//! - reports what needs a person: an IP or port held by two Services, or outside the
//!   configured ranges (left as they are: moving them would break their clients).
//!
//! Reservations are read before Services, so a Service created in between is seen with its
//! reservation or later; a reservation is never read as leaked because of that order.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use super::reservations::{self, Found, Item, Kind, Owner, Reserve};
use super::{ServiceAllocator, owner_of, spec};
use crate::api::registry;
use crate::store::{ListOptions, StoreError};

/// How often the server runs the pass (upstream's repair interval).
pub const REPAIR_INTERVAL: Duration = Duration::from_secs(180);
/// How old a reservation nobody holds must be before the pass releases it: far longer than
/// any create takes between reserving and writing the Service.
pub const RESERVATION_GRACE: Duration = Duration::from_secs(60);

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Reservations released: their Service is gone or no longer holds them.
    pub released: Vec<String>,
    /// Reservations made for Services that held an IP or port without one.
    pub reserved: Vec<String>,
    /// What needs a person: an IP or port held by two Services, or outside the range.
    pub problems: Vec<String>,
}

impl RepairReport {
    /// Whether the pass found everything in order.
    pub fn is_clean(&self) -> bool {
        self.released.is_empty() && self.reserved.is_empty() && self.problems.is_empty()
    }
}

impl ServiceAllocator {
    /// Run one repair pass with reservations older than `grace` eligible for release.
    pub async fn repair(&self, grace: Duration) -> Result<RepairReport, StoreError> {
        let config = self.config();
        let mut found = reservations::list(&*self.store, Kind::Ip).await?;
        found.extend(reservations::list(&*self.store, Kind::Port).await?);
        let services = self.list_services().await?;

        let mut holders: BTreeMap<Item, Vec<Owner>> = BTreeMap::new();
        for svc in &services {
            let owner = owner_of(svc);
            if let Some(ip) = spec::held_ip(svc) {
                holders.entry(Item::Ip(ip)).or_default().push(owner.clone());
            }
            for port in spec::held_node_ports(svc) {
                holders
                    .entry(Item::Port(port))
                    .or_default()
                    .push(owner.clone());
            }
        }

        let mut report = RepairReport::default();
        let now = jiff::Timestamp::now();
        let mut kept: HashSet<Item> = HashSet::new();
        for Found {
            item,
            kv,
            reservation,
        } in found
        {
            let held_by_owner = reservation.as_ref().is_some_and(|r| {
                holders
                    .get(&item)
                    .is_some_and(|hs| hs.iter().any(|h| h.uid == r.owner.uid))
            });
            // An unreadable time counts as old: moor always writes one.
            let young = reservation
                .as_ref()
                .and_then(|r| r.age(now))
                .is_some_and(|age| age < grace);
            if held_by_owner || young {
                kept.insert(item);
                continue;
            }
            if reservations::delete_exact(&*self.store, &kv).await? {
                let whose = reservation
                    .map(|r| format!(" (reserved for {} at {})", r.owner, r.reserved))
                    .unwrap_or_default();
                report.released.push(format!("{item}{whose}"));
            } else {
                // Rewritten since it was read: someone else's now.
                kept.insert(item);
            }
        }

        for (item, hs) in &holders {
            let names = || {
                hs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if hs.len() > 1 {
                report
                    .problems
                    .push(format!("{item} is held by several Services: {}", names()));
            }
            let in_range = match item {
                Item::Ip(ip) => config.cidr.index_of(*ip).is_some(),
                Item::Port(port) => config.node_ports.contains(*port),
            };
            if !in_range {
                let range = match item {
                    Item::Ip(_) => format!("the service CIDR {}", config.cidr),
                    Item::Port(_) => format!("the node port range {}", config.node_ports),
                };
                report.problems.push(format!(
                    "{item} of {} is outside {range}; re-create the Service to move it",
                    names()
                ));
                continue;
            }
            if kept.contains(item) {
                continue;
            }
            match reservations::reserve(&*self.store, *item, &hs[0]).await? {
                Reserve::Reserved => {
                    self.hint(*item, true);
                    report.reserved.push(format!("{item} (for {})", hs[0]));
                }
                Reserve::AlreadyOurs => {}
                // Reserved in between: fine when by one of its holders.
                Reserve::Taken(Some(owner)) if hs.iter().any(|h| h.uid == owner.uid) => {}
                Reserve::Taken(owner) => report.problems.push(format!(
                    "{item} is held by {} but reserved for {}",
                    names(),
                    owner.map_or_else(|| "an unreadable reservation".to_owned(), |o| o.to_string())
                )),
            }
        }
        self.load().await?;
        Ok(report)
    }

    /// Every Service in the store, read at one revision.
    async fn list_services(&self) -> Result<Vec<Value>, StoreError> {
        let Some(info) = registry::by_resource("", "v1", "services") else {
            return Ok(Vec::new());
        };
        let prefix = info.prefix(None);
        let mut services = Vec::new();
        let mut opts = ListOptions {
            limit: Some(500),
            ..ListOptions::default()
        };
        loop {
            let page = self.store.list(&prefix, opts.clone()).await?;
            let last = page.kvs.last().map(|kv| kv.key.clone());
            services.extend(
                page.kvs
                    .iter()
                    .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok()),
            );
            if !page.more || last.is_none() {
                return Ok(services);
            }
            opts.revision = Some(page.revision);
            opts.start_after = last;
        }
    }
}
