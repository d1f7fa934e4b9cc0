//! Services on this node: every node computes endpoints itself from the pods it knows (ready
//! pods matching a Service's selector) and programs its own nftables through the `netproxy`
//! crate. There is no endpoints controller and no Endpoints object to replicate.
//!
//! [`table`] and [`service_env`] are pure functions of the stored objects (k8s-openapi's types); [`spawn`] runs the
//! loop that keeps the kernel's table equal to [`table`] of the store, one transaction per
//! change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_netproxy::NetError;
use flotilla_netproxy::services::{
    Endpoint, Protocol, ProxyConfig, Service, ServicePort, ServiceProxy, SyncReport,
};
use k8s_openapi::api::core::v1::{Pod, Service as KubeService, ServicePort as KubePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::dns::Zone;
use tracing::{Instrument, debug, info, warn};

use crate::manifest::lifecycle::{is_terminating, labels, pod_phase, pod_ready};
use crate::manifest::selector::Selector;
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
fn is_ready(pod: &Pod) -> bool {
    pod_ready(pod)
        && pod_ip(pod).is_some()
        && !is_terminating(&pod.metadata)
        && pod_phase(pod) == "Running"
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()?
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
}

/// The pod port a service port's `targetPort` names (a number, or a container port's name),
/// defaulting to the service port itself.
fn target_port(port: &KubePort, protocol: &str, pod: &Pod) -> Option<u16> {
    match &port.target_port {
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| {
                p.name.as_deref() == Some(name.as_str())
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .and_then(|p| u16::try_from(p.container_port).ok()),
        None => u16::try_from(port.port).ok(),
    }
}

fn ns_of(m: &ObjectMeta) -> &str {
    m.namespace.as_deref().unwrap_or("default")
}

/// For each Service (same order), the ready pods of its namespace its selector matches. A
/// Service without a selector has none of ours.
pub fn ready_members<'a>(services: &[KubeService], pods: &'a [Pod]) -> Vec<Vec<&'a Pod>> {
    let mut by_ns: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for p in pods.iter().filter(|p| is_ready(p)) {
        by_ns.entry(ns_of(&p.metadata)).or_default().push(p);
    }
    services
        .iter()
        .map(|s| {
            let Some(selector) = s
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .filter(|m| !m.is_empty())
            else {
                return vec![];
            };
            let sel = Selector::from_map(selector);
            by_ns
                .get(ns_of(&s.metadata))
                .into_iter()
                .flatten()
                .filter(|p| sel.matches(labels(&p.metadata)))
                .copied()
                .collect()
        })
        .collect()
}

/// The proxy's table: each Service with a ClusterIP and, for each of its ports, the ready pods
/// of its namespace that its selector matches.
pub fn table(services: &[KubeService], pods: &[Pod]) -> Vec<Service> {
    let mut out = Vec::new();
    for (s, members) in services.iter().zip(ready_members(services, pods)) {
        let Some(spec) = s.spec.as_ref() else {
            continue;
        };
        let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()) else {
            continue; // headless, or not allocated
        };
        let node_port_type = spec.type_.as_deref() == Some("NodePort");
        let mut ports = Vec::new();
        for p in spec.ports.iter().flatten() {
            let proto_name = p.protocol.as_deref().unwrap_or("TCP");
            let (Ok(protocol), Ok(port)) = (proto_name.parse::<Protocol>(), u16::try_from(p.port))
            else {
                continue;
            };
            let endpoints = members
                .iter()
                .filter_map(|pod| {
                    Some(Endpoint {
                        ip: pod_ip(pod)?.parse().ok()?,
                        port: target_port(p, proto_name, pod)?,
                    })
                })
                .collect();
            ports.push(ServicePort {
                name: p
                    .name
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| port.to_string()),
                protocol,
                port,
                node_port: p
                    .node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|_| node_port_type),
                endpoints,
            });
        }
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        out.push(Service {
            namespace: ns_of(&s.metadata).to_string(),
            name: s.metadata.name.clone().unwrap_or_default(),
            cluster_ip: ip,
            affinity_timeout,
            ports,
        });
    }
    out
}

/// The Docker-links-style variables Kubernetes gives a pod for each Service of its namespace
/// with a ClusterIP (`WEB_SERVICE_HOST`, `WEB_SERVICE_PORT`, `WEB_PORT_80_TCP_ADDR`, ...).
pub fn service_env(services: &[KubeService]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in services {
        let Some(spec) = s.spec.as_ref() else {
            continue;
        };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        else {
            continue;
        };
        let name = s
            .metadata
            .name
            .as_deref()
            .unwrap_or("")
            .to_uppercase()
            .replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let proto = |p: &KubePort| p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        out.push((
            format!("{name}_PORT"),
            format!("{}://{ip}:{}", proto(first), first.port),
        ));
        for p in ports {
            let (num, pr) = (p.port, proto(p));
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
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
    let proxy = Box::new(ServiceProxy::new(cfg, None));
    spawn_with(store, node, proxy, zones, CHECK_EVERY)
}

/// What the loop programs: the kernel's table ([`ServiceProxy`]); in the loop's unit tests,
/// a record of the tables it was given.
pub trait Proxy: Send + 'static {
    /// Makes the programmed table equal to `services` (rebuilding it when it is not known).
    fn sync(&mut self, services: &[Service]) -> Result<SyncReport, NetError>;
    /// Whether the programmed table is still there.
    fn intact(&mut self) -> bool;
}

impl Proxy for ServiceProxy {
    fn sync(&mut self, services: &[Service]) -> Result<SyncReport, NetError> {
        ServiceProxy::sync(self, services)
    }
    fn intact(&mut self) -> bool {
        ServiceProxy::intact(self)
    }
}

/// [`spawn`] on any [`Proxy`], checking that its table is intact every `check_every`.
pub fn spawn_with(
    store: Store,
    node: String,
    proxy: Box<dyn Proxy>,
    zones: watch::Sender<Arc<Zone>>,
    check_every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(
        async move {
            let mut proxy = Some(proxy);
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
                    _ = tokio::time::sleep(check_every), if !failed => {
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
    let services: Vec<KubeService> = store.list_decodable("Service", None).await?;
    let pods: Vec<Pod> = store.list_decodable("Pod", None).await?;
    Ok((table(&services, &pods), super::dns::zone(&services, &pods)))
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
