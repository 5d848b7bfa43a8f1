//! A pod's /etc/resolv.conf as kubelet writes it: by `dnsPolicy` — `ClusterFirst` (the
//! default: the cluster DNS, search domains `<ns>.svc.<domain> svc.<domain> <domain>` and
//! the host's, `ndots:5`), `ClusterFirstWithHostNet`, `Default` (the host's resolv.conf)
//! and `None` (only `dnsConfig`) — then `dnsConfig` merged in. Pure text in, text out;
//! the caller reads the host's file and writes the pod's.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

pub use crate::dns::DEFAULT_CLUSTER_DOMAIN;
/// The resolver reads at most this many nameservers (glibc's MAXNS); kubelet cuts there.
const MAX_NAMESERVERS: usize = 3;
/// kubelet's limit on search domains.
const MAX_SEARCHES: usize = 32;

/// The node's DNS settings (kubelet's `clusterDNS` and `clusterDomain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// Nameservers for cluster-first pods; empty: pods get the host's resolv.conf.
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            cluster_dns: Vec::new(),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct ResolvConf {
    nameservers: Vec<String>,
    searches: Vec<String>,
    /// `name` or `name:value`, in order.
    options: Vec<String>,
}

fn parse(text: &str) -> ResolvConf {
    let mut out = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => out.nameservers.extend(words.next().map(str::to_owned)),
            // The last search (or domain) line wins, as in glibc.
            Some("search") | Some("domain") => out.searches = words.map(str::to_owned).collect(),
            Some("options") => out.options.extend(words.map(str::to_owned)),
            _ => {}
        }
    }
    out
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

fn option_name(option: &str) -> &str {
    option.split(':').next().unwrap_or(option)
}

/// The resolv.conf for `pod` on a node with `settings`, given the host's resolv.conf text.
pub fn resolv_conf(pod: &Pod, settings: &DnsSettings, host: &str) -> String {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        // kubelet: ClusterFirst on the host's network means the host's DNS.
        "ClusterFirst" => !host_network,
        _ => false,
    } && !settings.cluster_dns.is_empty();
    let host = parse(host);
    let mut conf = match policy {
        "None" => ResolvConf::default(),
        _ if cluster => {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let domain = settings.cluster_domain.trim_matches('.');
            let mut searches = vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_owned(),
            ];
            for s in host.searches {
                push_unique(&mut searches, s);
            }
            ResolvConf {
                nameservers: settings
                    .cluster_dns
                    .iter()
                    .map(|ip| ip.to_string())
                    .collect(),
                searches,
                options: vec!["ndots:5".to_owned()],
            }
        }
        _ => host,
    };
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        for ns in config.nameservers.iter().flatten() {
            push_unique(&mut conf.nameservers, ns.clone());
        }
        for s in config.searches.iter().flatten() {
            push_unique(&mut conf.searches, s.clone());
        }
        for option in config.options.iter().flatten() {
            let Some(name) = option.name.as_deref() else {
                continue;
            };
            let rendered = match &option.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_owned(),
            };
            conf.options.retain(|o| option_name(o) != name);
            conf.options.push(rendered);
        }
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    let mut out = String::new();
    for ns in &conf.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !conf.searches.is_empty() {
        out.push_str(&format!("search {}\n", conf.searches.join(" ")));
    }
    if !conf.options.is_empty() {
        out.push_str(&format!("options {}\n", conf.options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOST: &str = "# host\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example\noptions edns0\n";

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": "p"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn settings() -> DnsSettings {
        DnsSettings {
            cluster_dns: vec!["10.43.0.10".parse().unwrap()],
            cluster_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_with_search_domains_and_ndots() {
        let conf = resolv_conf(&pod(json!({"containers": []})), &settings(), HOST);
        assert_eq!(
            conf,
            "nameserver 10.43.0.10\n\
             search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn host_network_and_default_policy_get_the_hosts_file() {
        let host_net = pod(json!({"containers": [], "hostNetwork": true}));
        assert_eq!(
            resolv_conf(&host_net, &settings(), HOST),
            "nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example\noptions edns0\n"
        );
        let with_host_net = pod(
            json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
        );
        assert!(
            resolv_conf(&with_host_net, &settings(), HOST).starts_with("nameserver 10.43.0.10\n")
        );
        let default = pod(json!({"containers": [], "dnsPolicy": "Default"}));
        assert!(resolv_conf(&default, &settings(), HOST).starts_with("nameserver 192.0.2.53\n"));
        // A node without cluster DNS gives every pod the host's resolvers.
        let plain = pod(json!({"containers": []}));
        assert!(
            resolv_conf(&plain, &DnsSettings::default(), HOST)
                .starts_with("nameserver 192.0.2.53\n")
        );
    }

    #[test]
    fn dns_config_merges_and_none_takes_only_it() {
        let merged = pod(json!({"containers": [], "dnsConfig": {
            "nameservers": ["10.43.0.10", "1.1.1.1"],
            "searches": ["extra.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}],
        }}));
        assert_eq!(
            resolv_conf(&merged, &settings(), HOST),
            "nameserver 10.43.0.10\nnameserver 1.1.1.1\n\
             search shop.svc.cluster.local svc.cluster.local cluster.local corp.example extra.example\n\
             options ndots:2 single-request\n"
        );
        let none = pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["9.9.9.9"], "searches": ["a.example"],
        }}));
        assert_eq!(
            resolv_conf(&none, &settings(), HOST),
            "nameserver 9.9.9.9\nsearch a.example\n"
        );
    }

    #[test]
    fn nameservers_are_capped_at_three() {
        let many = pod(
            json!({"containers": [], "dnsPolicy": "Default", "dnsConfig": {
                "nameservers": ["1.1.1.1", "8.8.8.8"],
            }}),
        );
        let conf = resolv_conf(&many, &settings(), HOST);
        assert_eq!(conf.matches("nameserver").count(), 3, "{conf}");
    }
}
