//! The cluster zone: what a query for a name under the cluster domain (or for the reverse
//! name of one of the cluster's addresses) answers, computed from an [`Index`] — the
//! Kubernetes DNS specification as CoreDNS's `kubernetes` plugin implements it
//! (`pods insecure`, TTL 5 s).
//!
//! Names, relative to the domain (`cluster.local`):
//!
//! | name                            | records                                            |
//! |---------------------------------|----------------------------------------------------|
//! | (apex)                          | SOA, NS `ns.dns.<domain>`                          |
//! | `ns.dns`                        | A/AAAA: the addresses the server listens on        |
//! | `dns-version`                   | TXT `1.1.0` (the schema version of the spec)       |
//! | `<svc>.<ns>.svc`                | cluster IPs; headless: published endpoint addresses; ExternalName: CNAME |
//! | `<ep>.<svc>.<ns>.svc`           | the endpoint named by hostname or dashed address   |
//! | `_<port>._<proto>.<svc>.<ns>.svc` | SRV per port (headless: per endpoint address)    |
//! | `<a-b-c-d>.<ns>.pod`            | A a.b.c.d (AAAA for dashed IPv6)                   |
//!
//! `svc`, `pod`, `dns`, `<ns>.svc` (while the namespace has Services), `<ns>.pod` and
//! `_<proto>.<svc>.<ns>.svc` exist without records. Every other name under the domain is
//! NXDOMAIN; an existing name without records of the asked type is NODATA; both carry the
//! SOA. This module only computes answers: it never blocks, touches the network or changes
//! the index.

use std::collections::BTreeSet;
use std::net::IpAddr;

use hickory_proto::ProtoError;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::index::{Index, ServiceKind};

/// The TTL of every record answered here (CoreDNS's default), and the negative TTL.
pub(crate) const TTL: u32 = 5;

/// The version of the Kubernetes DNS specification these names follow.
const SCHEMA_VERSION: &str = "1.1.0";

/// How long a chain of CNAMEs inside the zone is followed (ExternalNames naming
/// ExternalNames); a loop stops here rather than spinning.
const MAX_CNAME_CHAIN: usize = 8;

/// What to do with a query.
#[derive(Debug)]
pub(crate) enum Resolution {
    /// Answered from the cluster's objects, authoritatively.
    Local(Answer),
    /// Not a cluster name: ask the upstream nameservers.
    Forward,
}

/// An authoritative answer.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) rcode: ResponseCode,
    pub(crate) answers: Vec<Record>,
    pub(crate) authorities: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
    /// The answers end in a CNAME to a name outside the zone: the caller resolves this name
    /// (same type) upstream and appends what it gets, as a recursive server would.
    pub(crate) chase: Option<Name>,
}

/// The cluster domain and the server's own addresses.
#[derive(Clone, Debug)]
pub(crate) struct Zone {
    origin: Name,
    nameserver: Name,
    hostmaster: Name,
    nameserver_addresses: Vec<IpAddr>,
}

impl Zone {
    /// The zone for `domain` (`cluster.local`), served from `nameserver_addresses`.
    pub(crate) fn new(domain: &str, nameserver_addresses: Vec<IpAddr>) -> Result<Self, ProtoError> {
        let mut origin = Name::from_ascii(domain.trim_end_matches('.'))?.to_lowercase();
        origin.set_fqdn(true);
        if origin.is_root() {
            return Err(ProtoError::from("the cluster domain may not be the root"));
        }
        let nameserver = Name::from_ascii("ns.dns")?.append_domain(&origin)?;
        let hostmaster = Name::from_ascii("hostmaster")?.append_domain(&origin)?;
        Ok(Zone {
            origin,
            nameserver,
            hostmaster,
            nameserver_addresses,
        })
    }

    /// Whether `name` is the cluster domain or below it.
    pub(crate) fn contains(&self, name: &Name) -> bool {
        self.origin.zone_of(name)
    }

    /// The answer to `qname`/`qtype`, or [`Resolution::Forward`] when the name is not the
    /// cluster's.
    pub(crate) fn resolve(&self, index: &Index, qname: &Name, qtype: RecordType) -> Resolution {
        if self.contains(qname) {
            return Resolution::Local(self.resolve_in_zone(index, qname, qtype));
        }
        match self.resolve_reverse(index, qname, qtype) {
            Some(answer) => Resolution::Local(answer),
            None => Resolution::Forward,
        }
    }

    fn resolve_in_zone(&self, index: &Index, qname: &Name, qtype: RecordType) -> Answer {
        let mut answer = Answer::default();
        // Answers carry the name as asked (its case too): some stub resolvers compare them
        // byte for byte.
        let mut owner = qname.clone();
        for _ in 0..MAX_CNAME_CHAIN {
            let Some(records) = self.node(index, &owner) else {
                answer.rcode = ResponseCode::NXDomain;
                answer.authorities.push(self.soa(index));
                break;
            };
            let cname = records.iter().find_map(|r| match r {
                RData::CNAME(CNAME(target)) => Some(target.clone()),
                _ => None,
            });
            if let Some(target) = cname
                && qtype != RecordType::CNAME
                && qtype != RecordType::ANY
            {
                answer
                    .answers
                    .push(record(&owner, RData::CNAME(CNAME(target.clone()))));
                if self.contains(&target) {
                    owner = target;
                    continue;
                }
                answer.chase = Some(target);
                break;
            }
            let matching: Vec<Record> = records
                .into_iter()
                .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                .map(|r| record(&owner, r))
                .collect();
            if matching.is_empty() {
                answer.authorities.push(self.soa(index));
            }
            answer.answers.extend(matching);
            break;
        }
        answer.additionals = self.additionals(index, &answer.answers);
        answer
    }

    /// PTR for the reverse name of a cluster IP or of a headless Service's endpoint; `None`
    /// for any other name (forwarded).
    fn resolve_reverse(&self, index: &Index, qname: &Name, qtype: RecordType) -> Option<Answer> {
        if qtype != RecordType::PTR && qtype != RecordType::ANY {
            return None;
        }
        let net = qname.parse_arpa_name().ok()?;
        if net.prefix_len() != net.max_prefix_len() {
            return None;
        }
        let ip = net.addr();
        let mut targets = BTreeSet::new();
        for (namespace, name) in index.services_with_ip(ip) {
            targets.extend(self.service_name(&[&name, &namespace]));
        }
        for (namespace, service, label) in index.headless_endpoints_with_ip(ip) {
            targets.extend(self.service_name(&[&label, &service, &namespace]));
        }
        if targets.is_empty() {
            return None;
        }
        Some(Answer {
            answers: targets
                .into_iter()
                .map(|target| record(qname, RData::PTR(PTR(target))))
                .collect(),
            ..Answer::default()
        })
    }

    /// Every record at `name`: `None` when the name does not exist, empty when it exists
    /// only as a parent of other names.
    fn node(&self, index: &Index, name: &Name) -> Option<Vec<RData>> {
        let labels = self.relative_labels(name)?;
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        match labels.as_slice() {
            [] => Some(vec![
                self.soa(index).data,
                RData::NS(NS(self.nameserver.clone())),
            ]),
            ["dns-version"] => Some(vec![RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_owned()]))]),
            ["ns", "dns"] => Some(
                self.nameserver_addresses
                    .iter()
                    .map(|ip| address(*ip))
                    .collect(),
            ),
            ["dns"] | ["svc"] | ["pod"] | [_, "pod"] => Some(Vec::new()),
            [namespace, "svc"] => index.has_namespace(namespace).then(Vec::new),
            [service, namespace, "svc"] => self.service_node(index, namespace, service),
            [protocol, service, namespace, "svc"] if protocol.starts_with('_') => {
                let svc = index.service(namespace, service)?;
                svc.ports
                    .iter()
                    .any(|p| p.protocol == protocol[1..])
                    .then(Vec::new)
            }
            [endpoint, service, namespace, "svc"] => {
                self.endpoint_node(index, namespace, service, endpoint)
            }
            [port, protocol, service, namespace, "svc"]
                if port.starts_with('_') && protocol.starts_with('_') =>
            {
                self.srv_node(index, namespace, service, &port[1..], &protocol[1..])
            }
            [ip, _, "pod"] => pod_address(ip).map(|ip| vec![address(ip)]),
            _ => None,
        }
    }

    fn service_node(&self, index: &Index, namespace: &str, name: &str) -> Option<Vec<RData>> {
        let svc = index.service(namespace, name)?;
        Some(match &svc.kind {
            ServiceKind::ClusterIps(ips) => ips.iter().map(|ip| address(*ip)).collect(),
            ServiceKind::Headless => index
                .published_endpoints(namespace, name)
                .iter()
                .flat_map(|(_, ep)| ep.addresses.iter().copied())
                .collect::<BTreeSet<IpAddr>>()
                .into_iter()
                .map(address)
                .collect(),
            ServiceKind::ExternalName(target) => external_name(target)
                .map(|target| vec![RData::CNAME(CNAME(target))])
                .unwrap_or_default(),
        })
    }

    /// `<ep>.<svc>.<ns>.svc`: CoreDNS serves these for every Service with endpoints, not only
    /// headless ones.
    fn endpoint_node(
        &self,
        index: &Index,
        namespace: &str,
        service: &str,
        endpoint: &str,
    ) -> Option<Vec<RData>> {
        let addresses: BTreeSet<IpAddr> = index
            .published_endpoints(namespace, service)
            .iter()
            .flat_map(|(_, ep)| {
                ep.addresses
                    .iter()
                    .copied()
                    .filter(|a| ep.label(*a) == endpoint)
                    .collect::<Vec<_>>()
            })
            .collect();
        if addresses.is_empty() {
            return None;
        }
        Some(addresses.into_iter().map(address).collect())
    }

    fn srv_node(
        &self,
        index: &Index,
        namespace: &str,
        service: &str,
        port: &str,
        protocol: &str,
    ) -> Option<Vec<RData>> {
        let svc = index.service(namespace, service)?;
        let declared = svc
            .ports
            .iter()
            .filter(|p| p.name == port && p.protocol == protocol);
        // (target, port), sorted so answers are stable.
        let mut targets: BTreeSet<(Name, u16)> = BTreeSet::new();
        match &svc.kind {
            ServiceKind::ClusterIps(_) => {
                let target = self.service_name(&[service, namespace])?;
                targets.extend(declared.clone().map(|p| (target.clone(), p.port)));
            }
            ServiceKind::ExternalName(name) => {
                let target = external_name(name)?;
                targets.extend(declared.clone().map(|p| (target.clone(), p.port)));
            }
            ServiceKind::Headless => {
                // A headless Service's ports are the endpoints' (target) ports, per slice.
                for (slice, ep) in index.published_endpoints(namespace, service) {
                    for p in slice
                        .ports
                        .iter()
                        .filter(|p| p.name == port && p.protocol == protocol)
                    {
                        for a in &ep.addresses {
                            if let Some(target) =
                                self.service_name(&[&ep.label(*a), service, namespace])
                            {
                                targets.insert((target, p.port));
                            }
                        }
                    }
                }
            }
        }
        if targets.is_empty() {
            // The port exists but nothing serves it yet: the name exists (NODATA).
            return (declared.count() > 0).then(Vec::new);
        }
        let weight = u16::try_from((100 / targets.len()).max(1)).unwrap_or(1);
        Some(
            targets
                .into_iter()
                .map(|(target, port)| RData::SRV(SRV::new(0, weight, port, target)))
                .collect(),
        )
    }

    /// Addresses of SRV and NS targets inside the zone, so clients need no second query.
    fn additionals(&self, index: &Index, answers: &[Record]) -> Vec<Record> {
        let targets: BTreeSet<Name> = answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some(srv.target.clone()),
                RData::NS(NS(target)) => Some(target.clone()),
                _ => None,
            })
            .filter(|target| self.contains(target))
            .collect();
        targets
            .into_iter()
            .flat_map(|target| {
                self.node(index, &target)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| matches!(r, RData::A(_) | RData::AAAA(_)))
                    .map(move |r| record(&target, r))
            })
            .collect()
    }

    fn soa(&self, index: &Index) -> Record {
        record(
            &self.origin,
            RData::SOA(SOA::new(
                self.nameserver.clone(),
                self.hostmaster.clone(),
                index.serial(),
                7200,
                1800,
                86400,
                TTL,
            )),
        )
    }

    /// `<labels…>.svc.<domain>.`
    fn service_name(&self, labels: &[&str]) -> Option<Name> {
        Name::from_labels(labels.iter().copied().chain(["svc"]))
            .ok()?
            .append_domain(&self.origin)
            .ok()
    }

    /// The lowercased labels of `name` left of the origin, leftmost first.
    fn relative_labels(&self, name: &Name) -> Option<Vec<String>> {
        if !self.contains(name) {
            return None;
        }
        let own = usize::from(name.num_labels()) - usize::from(self.origin.num_labels());
        Some(
            name.iter()
                .take(own)
                .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
                .collect(),
        )
    }
}

fn record(name: &Name, data: RData) -> Record {
    Record::from_rdata(name.clone(), TTL, data)
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// An ExternalName as an absolute name; `None` when it is not a valid name.
fn external_name(target: &str) -> Option<Name> {
    let target = target.trim_end_matches('.');
    if target.is_empty() {
        return None;
    }
    let mut name = Name::from_ascii(target).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// `10-42-0-5` → 10.42.0.5; `fd00--5` → fd00::5.
fn pod_address(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3
        && let Ok(ip) = label.replace('-', ".").parse::<std::net::Ipv4Addr>()
    {
        return Some(IpAddr::V4(ip));
    }
    label
        .replace('-', ":")
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::super::index::tests::{service, slice};
    use super::*;
    use serde_json::json;

    fn zone() -> Zone {
        Zone::new("cluster.local", vec!["10.43.0.10".parse().unwrap()]).unwrap()
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    /// A cluster with one of each kind of Service.
    fn cluster() -> Index {
        let mut index = Index::new();
        index.apply_service(&service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"],
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                             {"name": "dns", "port": 53, "protocol": "UDP"}]}),
        ));
        index.apply_slice(&slice(
            "default",
            "web-1",
            "web",
            json!([{"addresses": ["10.42.0.20"], "conditions": {"ready": true}}]),
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        ));
        index.apply_service(&service(
            "default",
            "v6",
            json!({"clusterIP": "fd00::5", "clusterIPs": ["fd00::5"]}),
        ));
        index.apply_service(&service(
            "default",
            "db",
            json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
        ));
        index.apply_slice(&slice(
            "default",
            "db-1",
            "db",
            json!([
                {"addresses": ["10.42.0.1"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.2"], "conditions": {"ready": true}},
                {"addresses": ["10.42.0.3"], "hostname": "db-2", "conditions": {"ready": false}},
            ]),
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        ));
        index.apply_service(&service(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "example.com"}),
        ));
        index.apply_service(&service(
            "default",
            "alias",
            json!({"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}),
        ));
        index
    }

    fn local(index: &Index, qname: &str, qtype: RecordType) -> Answer {
        match zone().resolve(index, &name(qname), qtype) {
            Resolution::Local(answer) => answer,
            Resolution::Forward => panic!("{qname} {qtype} was forwarded"),
        }
    }

    fn data(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.data.to_string()).collect()
    }

    fn is_soa(records: &[Record]) -> bool {
        records.len() == 1 && records[0].record_type() == RecordType::SOA
    }

    #[test]
    fn cluster_ip_service_answers_its_address() {
        let answer = local(&cluster(), "web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NoError);
        assert_eq!(data(&answer.answers), ["10.43.0.5"]);
        assert_eq!(answer.answers[0].ttl, TTL);
        assert!(answer.authorities.is_empty());
    }

    #[test]
    fn ipv6_cluster_ips_are_aaaa_and_a_is_nodata() {
        let index = cluster();
        let answer = local(&index, "v6.default.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(data(&answer.answers), ["fd00::5"]);
        let answer = local(&index, "v6.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NoError);
        assert!(answer.answers.is_empty());
        assert!(is_soa(&answer.authorities));
    }

    #[test]
    fn headless_service_answers_ready_endpoints() {
        let answer = local(&cluster(), "db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&answer.answers), ["10.42.0.1", "10.42.0.2"]);
    }

    #[test]
    fn publish_not_ready_addresses_publishes_all() {
        let mut index = cluster();
        index.apply_service(&service(
            "default",
            "db",
            json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
        ));
        let answer = local(&index, "db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(
            data(&answer.answers),
            ["10.42.0.1", "10.42.0.2", "10.42.0.3"]
        );
        let answer = local(&index, "db-2.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&answer.answers), ["10.42.0.3"]);
    }

    #[test]
    fn headless_endpoints_have_names() {
        let index = cluster();
        let answer = local(&index, "db-0.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&answer.answers), ["10.42.0.1"]);
        // Without a hostname the dashed address names the endpoint.
        let answer = local(
            &index,
            "10-42-0-2.db.default.svc.cluster.local.",
            RecordType::A,
        );
        assert_eq!(data(&answer.answers), ["10.42.0.2"]);
        // A not-ready endpoint has no name.
        let answer = local(&index, "db-2.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn external_name_is_a_cname_to_chase() {
        let index = cluster();
        let answer = local(&index, "ext.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&answer.answers), ["example.com."]);
        assert_eq!(answer.answers[0].record_type(), RecordType::CNAME);
        assert_eq!(answer.chase, Some(name("example.com.")));
        let answer = local(&index, "ext.default.svc.cluster.local.", RecordType::CNAME);
        assert_eq!(data(&answer.answers), ["example.com."]);
        assert_eq!(answer.chase, None);
    }

    #[test]
    fn external_name_inside_the_zone_is_followed() {
        let answer = local(
            &cluster(),
            "alias.default.svc.cluster.local.",
            RecordType::A,
        );
        assert_eq!(
            data(&answer.answers),
            ["web.default.svc.cluster.local.", "10.43.0.5"]
        );
        assert_eq!(answer.chase, None);
    }

    #[test]
    fn srv_for_a_normal_service_targets_the_service() {
        let answer = local(
            &cluster(),
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(
            data(&answer.answers),
            ["0 100 80 web.default.svc.cluster.local."]
        );
        assert_eq!(data(&answer.additionals), ["10.43.0.5"]);
        assert_eq!(
            answer.additionals[0].name,
            name("web.default.svc.cluster.local.")
        );
        let udp = local(
            &cluster(),
            "_dns._udp.web.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(
            data(&udp.answers),
            ["0 100 53 web.default.svc.cluster.local."]
        );
    }

    #[test]
    fn srv_for_a_headless_service_targets_each_endpoint() {
        let answer = local(
            &cluster(),
            "_pg._tcp.db.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(
            data(&answer.answers),
            [
                "0 50 5432 10-42-0-2.db.default.svc.cluster.local.",
                "0 50 5432 db-0.db.default.svc.cluster.local.",
            ]
        );
        assert_eq!(data(&answer.additionals), ["10.42.0.2", "10.42.0.1"]);
    }

    #[test]
    fn srv_for_unknown_ports_and_protocols() {
        let index = cluster();
        let answer = local(
            &index,
            "_nope._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
        let answer = local(
            &index,
            "_http._udp.web.default.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
        // `_tcp.<svc>` exists as the parent of the SRV names.
        let answer = local(&index, "_tcp.web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NoError);
        assert!(answer.answers.is_empty());
    }

    #[test]
    fn ptr_for_cluster_ips_and_headless_endpoints() {
        let index = cluster();
        let answer = local(&index, "5.0.43.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(data(&answer.answers), ["web.default.svc.cluster.local."]);
        let answer = local(&index, "1.0.42.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(
            data(&answer.answers),
            ["db-0.db.default.svc.cluster.local."]
        );
        let answer = local(&index, "2.0.42.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(
            data(&answer.answers),
            ["10-42-0-2.db.default.svc.cluster.local."]
        );
        let v6 = Name::from("fd00::5".parse::<IpAddr>().unwrap());
        let answer = local(&index, &v6.to_string(), RecordType::PTR);
        assert_eq!(data(&answer.answers), ["v6.default.svc.cluster.local."]);
    }

    #[test]
    fn reverse_names_of_other_addresses_are_forwarded() {
        let index = cluster();
        for (qname, qtype) in [
            ("9.9.9.9.in-addr.arpa.", RecordType::PTR),
            // A not-ready endpoint is not ours to name.
            ("3.0.42.10.in-addr.arpa.", RecordType::PTR),
            // Endpoints of a normal Service get no PTR (the spec names only headless ones).
            ("20.0.42.10.in-addr.arpa.", RecordType::PTR),
            ("0.42.10.in-addr.arpa.", RecordType::PTR),
            ("5.0.43.10.in-addr.arpa.", RecordType::A),
            ("example.com.", RecordType::A),
        ] {
            assert!(
                matches!(
                    zone().resolve(&index, &name(qname), qtype),
                    Resolution::Forward
                ),
                "{qname} {qtype}"
            );
        }
    }

    #[test]
    fn pod_names_are_their_addresses() {
        let index = Index::new();
        let answer = local(
            &index,
            "10-42-0-9.anything.pod.cluster.local.",
            RecordType::A,
        );
        assert_eq!(data(&answer.answers), ["10.42.0.9"]);
        let answer = local(
            &index,
            "fd00--9.default.pod.cluster.local.",
            RecordType::AAAA,
        );
        assert_eq!(data(&answer.answers), ["fd00::9"]);
        let answer = local(
            &index,
            "not-an-ip.default.pod.cluster.local.",
            RecordType::A,
        );
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn nxdomain_and_nodata_carry_the_soa() {
        let index = cluster();
        let answer = local(&index, "nope.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
        assert!(answer.answers.is_empty());
        assert!(is_soa(&answer.authorities));
        assert_eq!(answer.authorities[0].name, name("cluster.local."));
        let answer = local(&index, "web.nope.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
        let answer = local(&index, "a.b.c.d.e.f.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NXDomain);

        let answer = local(&index, "web.default.svc.cluster.local.", RecordType::MX);
        assert_eq!(answer.rcode, ResponseCode::NoError);
        assert!(answer.answers.is_empty());
        assert!(is_soa(&answer.authorities));
        for ent in [
            "default.svc.cluster.local.",
            "svc.cluster.local.",
            "pod.cluster.local.",
        ] {
            let answer = local(&index, ent, RecordType::A);
            assert_eq!(answer.rcode, ResponseCode::NoError, "{ent}");
            assert!(answer.answers.is_empty(), "{ent}");
        }
    }

    #[test]
    fn queries_are_case_insensitive_and_answer_as_asked() {
        let answer = local(&cluster(), "WEB.Default.SVC.Cluster.Local.", RecordType::A);
        assert_eq!(data(&answer.answers), ["10.43.0.5"]);
        assert_eq!(
            answer.answers[0].name.to_string(),
            "WEB.Default.SVC.Cluster.Local."
        );
        let upper = Zone::new("Cluster.LOCAL.", Vec::new()).unwrap();
        assert!(matches!(
            upper.resolve(
                &cluster(),
                &name("web.default.svc.cluster.local."),
                RecordType::A
            ),
            Resolution::Local(_)
        ));
    }

    #[test]
    fn the_apex_has_soa_ns_and_the_version() {
        let index = cluster();
        let answer = local(&index, "cluster.local.", RecordType::SOA);
        assert!(is_soa(&answer.answers));
        let answer = local(&index, "cluster.local.", RecordType::NS);
        assert_eq!(data(&answer.answers), ["ns.dns.cluster.local."]);
        assert_eq!(data(&answer.additionals), ["10.43.0.10"]);
        let answer = local(&index, "dns-version.cluster.local.", RecordType::TXT);
        assert_eq!(answer.answers.len(), 1);
    }

    #[test]
    fn changes_show_at_once() {
        let mut index = cluster();
        index.apply_slice(&slice(
            "default",
            "db-1",
            "db",
            json!([{"addresses": ["10.42.0.7"]}]),
            json!([]),
        ));
        let answer = local(&index, "db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&answer.answers), ["10.42.0.7"]);
        index.delete_service(&service("default", "db", json!({})));
        let answer = local(&index, "db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
    }
}
