//! One DNS question from a test, without a resolver library's caching or search rules.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Resolve `name` (A records) with the DNS server at `dns`:53, over UDP.
pub async fn resolve(dns: IpAddr, name: &str) -> Result<Vec<IpAddr>, String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii(name).map_err(|e| e.to_string())?,
        RecordType::A,
    ));
    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| e.to_string())?;
    let bytes = query.to_vec().map_err(|e| e.to_string())?;
    socket
        .send_to(&bytes, SocketAddr::new(dns, 53))
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
        .await
        .map_err(|_| "no answer within 2 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let answer = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    let ips: Vec<IpAddr> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    if ips.is_empty() {
        Err(format!("no A records: {answer:?}"))
    } else {
        Ok(ips)
    }
}
