//! Cluster IPs made local to the node, over netlink. Where the kernel has the `dummy` link
//! driver the addresses go on a dummy interface of their own (as kube-proxy's IPVS mode
//! does with kube-ipvs0), which is deleted on exit and so takes every address with it;
//! otherwise they are /32 addresses on `lo`, and only addresses inside the service CIDRs
//! are ever listed or removed there — `lo` is shared with everything else on the machine.
//! Either way packets from pods reach them through the pods' default route to the node.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::{Handle, LinkDummy, LinkUnspec};

use crate::apiserver::services::ServiceCidr;

use super::ProxyError;

/// The dummy interface's name when the kernel has the driver.
pub const DEFAULT_DUMMY_INTERFACE: &str = "moor-svc0";

/// Whether `ip` lies in `cidr` (an IPv6 address never does: service ranges are IPv4).
pub fn in_cidr(cidr: &ServiceCidr, ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if cidr.contains(v4))
}

/// Where the cluster IPs live.
pub struct LocalAddresses {
    handle: Handle,
    index: u32,
    device: String,
    dummy: bool,
    cidrs: Vec<ServiceCidr>,
    connection: tokio::task::JoinHandle<()>,
}

fn netlink(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> ProxyError {
    let action = action.into();
    move |source| ProxyError::Netlink { action, source }
}

/// The errno a netlink request failed with, if the kernel refused it.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

impl LocalAddresses {
    /// Open netlink and pick the device: the dummy interface `dummy_name` (created if
    /// missing) when the kernel can make one, `lo` otherwise. Only addresses inside `cidrs`
    /// are this proxy's.
    pub async fn open(dummy_name: &str, cidrs: Vec<ServiceCidr>) -> Result<Self, ProxyError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| ProxyError::Io {
                action: "opening a netlink socket".into(),
                source,
            })?;
        let connection = tokio::spawn(connection);
        let mut this = LocalAddresses {
            handle,
            index: 0,
            device: String::new(),
            dummy: false,
            cidrs,
            connection,
        };
        match this.dummy_link(dummy_name).await {
            Ok(index) => {
                this.index = index;
                this.device = dummy_name.to_owned();
                this.dummy = true;
            }
            Err(e) => {
                tracing::debug!(error = %e, "no dummy interface; cluster IPs go on lo");
                this.index = this.link_index("lo").await?.ok_or_else(|| ProxyError::Io {
                    action: "finding the loopback interface".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })?;
                this.device = "lo".into();
            }
        }
        Ok(this)
    }

    /// The device the addresses are on (`lo` or the dummy interface).
    pub fn device(&self) -> &str {
        &self.device
    }

    async fn link_index(&self, name: &str) -> Result<Option<u32>, ProxyError> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            // ENODEV: no such link.
            Err(e) if errno(&e) == Some(19) => Ok(None),
            Err(e) => Err(netlink(format!("looking up link {name}"))(e)),
        }
    }

    async fn dummy_link(&self, name: &str) -> Result<u32, ProxyError> {
        let index = match self.link_index(name).await? {
            Some(index) => index,
            None => {
                self.handle
                    .link()
                    .add(LinkDummy::new(name).build())
                    .execute()
                    .await
                    .map_err(netlink(format!("creating dummy interface {name}")))?;
                self.link_index(name).await?.ok_or_else(|| ProxyError::Io {
                    action: format!("finding the new dummy interface {name}"),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })?
            }
        };
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(netlink(format!("setting {name} up")))?;
        Ok(index)
    }

    /// The addresses on the device that are this proxy's (inside its CIDRs).
    pub async fn list(&self) -> Result<Vec<IpAddr>, ProxyError> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .execute();
        let mut out = Vec::new();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(netlink(format!("listing addresses on {}", self.device)))?
        {
            // The filter is advisory on some kernels: check the index too.
            if msg.header.index != self.index {
                continue;
            }
            for attr in &msg.attributes {
                if let AddressAttribute::Local(ip) | AddressAttribute::Address(ip) = attr
                    && self.cidrs.iter().any(|c| in_cidr(c, *ip))
                    && !out.contains(ip)
                {
                    out.push(*ip);
                }
            }
        }
        Ok(out)
    }

    /// Make `ip` local (a /32). Adding one that is there already is fine.
    pub async fn add(&self, ip: Ipv4Addr) -> Result<(), ProxyError> {
        self.handle
            .address()
            .add(self.index, IpAddr::V4(ip), 32)
            .replace()
            .execute()
            .await
            .map_err(netlink(format!("adding {ip}/32 to {}", self.device)))
    }

    /// Remove `ip`; one already gone is fine.
    pub async fn remove(&self, ip: Ipv4Addr) -> Result<(), ProxyError> {
        let message = rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new()
            .index(self.index)
            .address(ip, 32)
            .build();
        match self.handle.address().del(message).execute().await {
            // EADDRNOTAVAIL / ENOENT: not there.
            Err(e) if matches!(errno(&e), Some(99) | Some(2)) => Ok(()),
            other => other.map_err(netlink(format!("removing {ip}/32 from {}", self.device))),
        }
    }

    /// Remove every address of this proxy: the whole dummy interface, or each of its
    /// addresses on `lo`.
    pub async fn clear(&self) -> Result<(), ProxyError> {
        if self.dummy {
            return match self.handle.link().del(self.index).execute().await {
                Err(e) if errno(&e) == Some(19) => Ok(()),
                other => other.map_err(netlink(format!("deleting {}", self.device))),
            };
        }
        for ip in self.list().await? {
            if let IpAddr::V4(ip) = ip {
                self.remove(ip).await?;
            }
        }
        Ok(())
    }
}

impl Drop for LocalAddresses {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_membership() {
        let cidr: ServiceCidr = "10.43.0.0/16".parse().unwrap();
        assert!(in_cidr(&cidr, "10.43.255.1".parse().unwrap()));
        assert!(!in_cidr(&cidr, "10.44.0.1".parse().unwrap()));
        assert!(!in_cidr(&cidr, "::1".parse().unwrap()));
    }
}
