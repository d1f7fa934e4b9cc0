//! Cluster DNS, answered by every agent for its own node's pods at 10.43.0.10 (an address on
//! the pod bridge), as NodeLocal DNSCache would, so a lookup never leaves the node:
//!
//! - `SVC.NS.svc.cluster.local` A: the ClusterIP, or for a headless Service its ready pods.
//! - `HOSTNAME.SVC.NS.svc.cluster.local` A: a ready pod of a headless Service whose
//!   `spec.hostname` is set and whose `spec.subdomain` names that Service (a StatefulSet's
//!   `web-0.nginx`, an Indexed Job's workers).
//! - `_PORT._PROTO.SVC.NS.svc.cluster.local` SRV for each named port, with the A record as an
//!   additional answer.
//! - Other names under `cluster.local`: NXDOMAIN (or an empty answer when the name exists but
//!   has no record of that type). Anything else is forwarded, unchanged, to the node's own
//!   resolvers (`/etc/resolv.conf`), and the answer relayed.
//!
//! Packets are read and written with hickory-proto; [`Zone`] and [`answer`] are pure.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tracing::{Instrument, debug, warn};

pub const DOMAIN: &str = "cluster.local";
/// Records change as pods come and go: keep caches short.
const TTL: u32 = 5;

/// The names this node answers, lower case, without the final dot.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Zone {
    pub a: HashMap<String, Vec<Ipv4Addr>>,
    /// name -> (port, target host name)
    pub srv: HashMap<String, Vec<(u16, String)>>,
}

/// The zone for `services` and the ready `pods` (see [`super::services::ready_members`]).
pub fn zone(services: &[Service], pods: &[Pod]) -> Zone {
    let mut z = Zone::default();
    let members = super::services::ready_members(services, pods);
    for (s, pods) in services.iter().zip(members) {
        let (Some(name), ns, Some(spec)) = (
            s.metadata.name.as_deref(),
            s.metadata.namespace.as_deref().unwrap_or("default"),
            s.spec.as_ref(),
        ) else {
            continue;
        };
        let host = format!("{name}.{ns}.svc.{DOMAIN}");
        let ips: Vec<Ipv4Addr> = match spec.cluster_ip.as_deref() {
            Some("None") => {
                for p in &pods {
                    let (Some(ps), Some(ip)) = (
                        p.spec.as_ref(),
                        p.status
                            .as_ref()
                            .and_then(|s| s.pod_ip.as_deref())
                            .and_then(|ip| ip.parse::<Ipv4Addr>().ok()),
                    ) else {
                        continue;
                    };
                    if let (Some(h), Some(sub)) = (ps.hostname.as_deref(), ps.subdomain.as_deref())
                        && sub == name
                        && !h.is_empty()
                    {
                        z.a.entry(format!("{}.{host}", h.to_ascii_lowercase()))
                            .or_default()
                            .push(ip);
                    }
                }
                let mut v: Vec<Ipv4Addr> = pods
                    .iter()
                    .filter_map(|p| p.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
                    .collect();
                v.sort();
                v
            }
            Some(ip) => ip.parse().ok().into_iter().collect(),
            None => continue,
        };
        for p in spec.ports.iter().flatten() {
            let (Some(pn), Ok(port)) = (
                p.name.as_deref().filter(|n| !n.is_empty()),
                u16::try_from(p.port),
            ) else {
                continue;
            };
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
            z.srv
                .entry(format!("_{pn}._{proto}.{host}"))
                .or_default()
                .push((port, host.clone()));
        }
        z.a.insert(host, ips);
    }
    // Namespaces with Services exist as names too (empty answers, not NXDOMAIN).
    let parents: Vec<String> =
        z.a.keys()
            .filter_map(|h| h.split_once('.').map(|(_, rest)| rest.to_string()))
            .collect();
    for p in parents {
        z.a.entry(p).or_default();
    }
    z
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer with these bytes.
    Answer(Vec<u8>),
    /// Not ours: forward the query to the node's resolvers.
    Forward,
    /// Not a query we can read: drop it.
    Drop,
}

fn key(name: &Name) -> String {
    let s = name.to_lowercase().to_ascii();
    s.trim_end_matches('.').to_string()
}

/// Answers a query from `zone`, or says to forward it. A pure function of bytes.
pub fn answer(query: &[u8], zone: &Zone) -> Reply {
    let Ok(q) = Message::from_vec(query) else {
        return Reply::Drop;
    };
    if q.metadata.message_type != MessageType::Query {
        return Reply::Drop;
    }
    let Some(question) = q.queries.first() else {
        return Reply::Drop;
    };
    let name = key(question.name());
    if name != DOMAIN && !name.ends_with(&format!(".{DOMAIN}")) {
        return Reply::Forward;
    }
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.authoritative = true;
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_query(question.clone());
    let qname = question.name().clone();
    let a_records = |n: &Name, host: &str| -> Vec<Record> {
        zone.a
            .get(host)
            .into_iter()
            .flatten()
            .map(|ip| Record::from_rdata(n.clone(), TTL, RData::A(A(*ip))))
            .collect()
    };
    let known = zone.a.contains_key(&name) || zone.srv.contains_key(&name);
    match question.query_type() {
        RecordType::A | RecordType::ANY => {
            r.add_answers(a_records(&qname, &name));
        }
        RecordType::SRV => {
            for (port, target) in zone.srv.get(&name).into_iter().flatten() {
                let Ok(t) = Name::from_ascii(format!("{target}.")) else {
                    continue;
                };
                r.add_answer(Record::from_rdata(
                    qname.clone(),
                    TTL,
                    RData::SRV(SRV::new(0, 100, *port, t.clone())),
                ));
                for rec in a_records(&t, target) {
                    r.add_additional(rec);
                }
            }
        }
        _ => {}
    }
    if !known {
        r.metadata.response_code = ResponseCode::NXDomain;
    }
    match r.to_vec() {
        Ok(b) => Reply::Answer(b),
        Err(_) => Reply::Drop,
    }
}

/// The nameservers in a resolv.conf, port 53.
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

async fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() {
            "0.0.0.0:0".parse().expect("address")
        } else {
            "[::]:0".parse().expect("address")
        };
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.connect(up).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

async fn reply(query: &[u8], zone: &Zone, upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    match answer(query, zone) {
        Reply::Answer(b) => Some(b),
        Reply::Drop => None,
        Reply::Forward => match forward(query, upstreams).await {
            Some(b) => Some(b),
            None => {
                let q = Message::from_vec(query).ok()?;
                let mut r =
                    Message::error_msg(q.metadata.id, q.metadata.op_code, ResponseCode::ServFail);
                r.queries = q.queries;
                r.to_vec().ok()
            }
        },
    }
}

/// Serves DNS on `addr` over UDP and TCP from the latest zone in `zones`, until aborted.
pub async fn serve(
    addr: SocketAddr,
    zones: watch::Receiver<Arc<Zone>>,
    upstreams: Vec<SocketAddr>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let udp = Arc::new(UdpSocket::bind(addr).await?);
    let tcp = TcpListener::bind(addr).await?;
    let upstreams = Arc::new(upstreams);
    let span = tracing::info_span!("dns", %addr);
    Ok(tokio::spawn(
        async move {
            let tcp_task = {
                let (zones, upstreams) = (zones.clone(), upstreams.clone());
                tokio::spawn(async move {
                    loop {
                        let Ok((mut conn, _)) = tcp.accept().await else {
                            continue;
                        };
                        let (zones, upstreams) = (zones.clone(), upstreams.clone());
                        tokio::spawn(async move {
                            use tokio::io::{AsyncReadExt, AsyncWriteExt};
                            loop {
                                let mut len = [0u8; 2];
                                if conn.read_exact(&mut len).await.is_err() {
                                    return;
                                }
                                let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                                if conn.read_exact(&mut q).await.is_err() {
                                    return;
                                }
                                let zone = zones.borrow().clone();
                                let Some(r) = reply(&q, &zone, &upstreams).await else {
                                    return;
                                };
                                let Ok(n) = u16::try_from(r.len()) else {
                                    return;
                                };
                                if conn.write_all(&n.to_be_bytes()).await.is_err()
                                    || conn.write_all(&r).await.is_err()
                                {
                                    return;
                                }
                            }
                        });
                    }
                })
            };
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, from) = match udp.recv_from(&mut buf).await {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "dns receive");
                        continue;
                    }
                };
                let q = buf[..n].to_vec();
                let zone = zones.borrow().clone();
                let (udp, upstreams) = (udp.clone(), upstreams.clone());
                tokio::spawn(async move {
                    if let Some(mut r) = reply(&q, &zone, &upstreams).await {
                        if r.len() > 512 {
                            // Over plain UDP's size: say truncated, the client retries on TCP.
                            if let Ok(m) = Message::from_vec(&r)
                                && let Ok(t) = m.truncate().to_vec()
                            {
                                r = t;
                            }
                        }
                        if let Err(e) = udp.send_to(&r, from).await {
                            debug!(error = %e, "dns reply");
                        }
                    }
                });
                if tcp_task.is_finished() {
                    return;
                }
            }
        }
        .instrument(span),
    ))
}

/// The resolv.conf of a pod whose dnsPolicy is ClusterFirst.
pub fn pod_resolv_conf(namespace: &str, server: Ipv4Addr) -> String {
    format!(
        "nameserver {server}\nsearch {namespace}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}\noptions ndots:5\n"
    )
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
