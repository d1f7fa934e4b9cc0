//! Services on this node: every node computes endpoints itself from the pods it knows (ready
//! pods matching a Service's selector) and programs its own nftables through the `netproxy`
//! crate. There is no endpoints controller and no Endpoints object to replicate.
//!
//! [`table`] and [`service_env`] are pure functions of the stored objects; [`spawn`] runs the
//! loop that keeps the kernel's table equal to [`table`] of the store, one transaction per
//! change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_netproxy::services::{
    Endpoint, Protocol, ProxyConfig, Service, ServicePort, ServiceProxy,
};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::dns::Zone;
use tracing::{Instrument, debug, info, warn};

use crate::manifest::selector::{Selector, string_map};
use crate::store::Store;

/// The cluster's Service addresses (k3s's default service CIDR).
pub const SERVICE_CIDR: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(10, 43, 0, 0), 16);
/// The cluster DNS address every node answers on, on its pod bridge.
pub const DNS_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 43, 0, 10);
/// The NodePort range, as Kubernetes' default.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Kubernetes' default ClientIP affinity: three hours.
const DEFAULT_AFFINITY_SECONDS: u32 = 10_800;

/// A pod serves traffic when it is Ready, has an address and is not being deleted.
fn is_ready(pod: &Value) -> bool {
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    ready
        && pod["status"]["podIP"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        && pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["phase"] == "Running"
}

/// The pod port a service port's `targetPort` names (a number, or a container port's name),
/// defaulting to the service port itself.
fn target_port(port: &Value, protocol: &str, pod: &Value) -> Option<u16> {
    match &port["targetPort"] {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(name) => pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| {
                p["name"] == name.as_str() && p["protocol"].as_str().unwrap_or("TCP") == protocol
            })
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|n| u16::try_from(n).ok()),
        _ => port["port"].as_u64().and_then(|n| u16::try_from(n).ok()),
    }
}

/// For each Service (same order), the ready pods of its namespace its selector matches. A
/// Service without a selector has none of ours.
pub fn ready_members<'a>(services: &[Value], pods: &'a [Value]) -> Vec<Vec<&'a Value>> {
    let mut by_ns: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for p in pods.iter().filter(|p| is_ready(p)) {
        by_ns
            .entry(p["metadata"]["namespace"].as_str().unwrap_or("default"))
            .or_default()
            .push(p);
    }
    services
        .iter()
        .map(|s| {
            let ns = s["metadata"]["namespace"].as_str().unwrap_or("default");
            let selector = string_map(&s["spec"]["selector"]);
            if selector.is_empty() {
                return vec![];
            }
            let sel = Selector::from_map(&selector);
            by_ns
                .get(ns)
                .into_iter()
                .flatten()
                .filter(|p| sel.matches(&string_map(&p["metadata"]["labels"])))
                .copied()
                .collect()
        })
        .collect()
}

/// The proxy's table: each Service with a ClusterIP and, for each of its ports, the ready pods
/// of its namespace that its selector matches.
pub fn table(services: &[Value], pods: &[Value]) -> Vec<Service> {
    let mut out = Vec::new();
    for (s, members) in services.iter().zip(ready_members(services, pods)) {
        let Some(ip) = s["spec"]["clusterIP"]
            .as_str()
            .and_then(|ip| ip.parse().ok())
        else {
            continue; // headless, or not allocated
        };
        let ns = s["metadata"]["namespace"].as_str().unwrap_or("default");
        let node_port_type = s["spec"]["type"] == "NodePort";
        let mut ports = Vec::new();
        for p in s["spec"]["ports"].as_array().into_iter().flatten() {
            let proto_name = p["protocol"].as_str().unwrap_or("TCP");
            let (Ok(protocol), Some(port)) = (
                proto_name.parse::<Protocol>(),
                p["port"].as_u64().and_then(|n| u16::try_from(n).ok()),
            ) else {
                continue;
            };
            let endpoints = members
                .iter()
                .filter_map(|pod| {
                    Some(Endpoint {
                        ip: pod["status"]["podIP"].as_str()?.parse().ok()?,
                        port: target_port(p, proto_name, pod)?,
                    })
                })
                .collect();
            ports.push(ServicePort {
                name: p["name"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| port.to_string()),
                protocol,
                port,
                node_port: p["nodePort"]
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|_| node_port_type),
                endpoints,
            });
        }
        let affinity_timeout = (s["spec"]["sessionAffinity"] == "ClientIP").then(|| {
            s["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        out.push(Service {
            namespace: ns.to_string(),
            name: s["metadata"]["name"].as_str().unwrap_or("").to_string(),
            cluster_ip: ip,
            affinity_timeout,
            ports,
        });
    }
    out
}

/// The Docker-links-style variables Kubernetes gives a pod for each Service of its namespace
/// with a ClusterIP (`WEB_SERVICE_HOST`, `WEB_SERVICE_PORT`, `WEB_PORT_80_TCP_ADDR`, ...).
pub fn service_env(services: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in services {
        let Some(ip) = s["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        else {
            continue;
        };
        let name = s["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_uppercase()
            .replace('-', "_");
        let ports: Vec<&Value> = s["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let Some(first) = ports.first() else { continue };
        let port_of = |p: &Value| p["port"].as_u64().unwrap_or(0);
        out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{name}_SERVICE_PORT"), port_of(first).to_string()));
        let proto = |p: &Value| p["protocol"].as_str().unwrap_or("TCP").to_lowercase();
        out.push((
            format!("{name}_PORT"),
            format!("{}://{ip}:{}", proto(first), port_of(first)),
        ));
        for p in ports {
            let (num, pr) = (port_of(p), proto(p));
            if let Some(pn) = p["name"].as_str().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{name}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    num.to_string(),
                ));
            }
            let base = format!("{name}_PORT_{num}_{}", pr.to_uppercase());
            out.push((base.clone(), format!("{pr}://{ip}:{num}")));
            out.push((format!("{base}_PROTO"), pr));
            out.push((format!("{base}_PORT"), num.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// How often the service loop checks that its table is still in the kernel.
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// Keeps the node's `inet flotilla` table equal to [`table`] of the store: a full rebuild at
/// start (removing whatever a previous run left), then one small transaction per change. A
/// failed sync is retried, as a full rebuild, a second later; a table that disappeared (found
/// every [`CHECK_EVERY`]) is rebuilt.
/// Each read's cluster DNS zone goes to `zones`.
pub fn spawn(
    store: Store,
    node: String,
    cfg: ProxyConfig,
    zones: watch::Sender<Arc<Zone>>,
) -> JoinHandle<()> {
    tokio::spawn(
        async move {
            let mut proxy = Some(ServiceProxy::new(cfg, None));
            let mut changes = store.changes(&["Service", "Pod"]);
            let mut last_rev = -1;
            let mut failed = false;
            loop {
                let rev = changes.revision();
                if rev != last_rev || failed {
                    match read(&store).await {
                        Ok((t, zone)) => {
                            zones.send_if_modified(|z| {
                                let changed = **z != zone;
                                if changed {
                                    *z = Arc::new(zone);
                                }
                                changed
                            });
                            let mut p = proxy.take().expect("proxy is back after each sync");
                            let (p, r) = tokio::task::spawn_blocking(move || {
                                let r = p.sync(&t);
                                (p, r)
                            })
                            .await
                            .expect("sync task");
                            proxy = Some(p);
                            match &r {
                                Ok(r) if r.full => {
                                    info!(commands = r.commands, "service rules rebuilt")
                                }
                                Ok(r) => debug!(commands = r.commands, "service rules synced"),
                                Err(e) => warn!(error = %e, "cannot sync the service rules"),
                            }
                            failed = r.is_err();
                            if !failed {
                                last_rev = rev;
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "cannot read services and pods");
                            failed = true;
                        }
                    }
                }
                tokio::select! {
                    c = changes.changed() => if c.is_err() { return },
                    _ = tokio::time::sleep(Duration::from_secs(1)), if failed => {}
                    // Whether the table is still there (a firewall restart flushes the whole
                    // ruleset); if not, rebuild it.
                    _ = tokio::time::sleep(CHECK_EVERY), if !failed => {
                        let mut p = proxy.take().expect("proxy is back after each sync");
                        let (p, intact) = tokio::task::spawn_blocking(move || {
                            let ok = p.intact();
                            (p, ok)
                        })
                        .await
                        .expect("check task");
                        proxy = Some(p);
                        if !intact {
                            warn!("the service rules' table is gone (someone flushed the ruleset): rebuilding it");
                            failed = true;
                        }
                    }
                }
                // Let a burst of writes (a rollout) land before the next sync.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        .instrument(tracing::info_span!("service-proxy", node = %node)),
    )
}

async fn read(store: &Store) -> anyhow::Result<(Vec<Service>, Zone)> {
    let (services, _) = store.list("Service", None).await?;
    let (pods, _) = store.list("Pod", None).await?;
    Ok((table(&services, &pods), super::dns::zone(&services, &pods)))
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
