//! Routes to the other nodes' pod networks (VXLAN or host-gw), following the Node objects of
//! the store: a node that joins gets a route when its Node appears, one that is deleted loses
//! it. Each Node carries its pod CIDR (`spec.podCIDR`) and address (`InternalIP`).

use std::net::Ipv4Addr;
use std::time::Duration;

use flotilla_netproxy::overlay::{Overlay, Peer};
use serde_json::Value;
use tracing::{Instrument, debug, warn};

use crate::store::Store;

/// The peers in a list of Node objects: every node but `me` with a pod CIDR and an IPv4
/// InternalIP.
pub fn peers(nodes: &[Value], me: &str) -> Vec<Peer> {
    nodes
        .iter()
        .filter(|n| n["metadata"]["name"] != me)
        .filter_map(|n| {
            let pod_cidr = n["spec"]["podCIDR"].as_str()?.parse().ok()?;
            let node_ip: Ipv4Addr = n["status"]["addresses"]
                .as_array()?
                .iter()
                .find(|a| a["type"] == "InternalIP")?["address"]
                .as_str()?
                .parse()
                .ok()?;
            Some(Peer { node_ip, pod_cidr })
        })
        .collect()
}

/// Each node's share of the cluster CIDR: a /24 (254 pods), or the whole cluster CIDR when it
/// is smaller than that.
pub const NODE_PREFIX: u8 = 24;

/// The lowest node-sized subnet of `cluster` that overlaps none of `taken` (other nodes' pod
/// CIDRs), or None when every one is taken.
pub fn free_pod_cidr(
    cluster: flotilla_netproxy::podnet::Cidr,
    taken: &[flotilla_netproxy::podnet::Cidr],
) -> Option<flotilla_netproxy::podnet::Cidr> {
    let prefix = NODE_PREFIX.max(cluster.prefix);
    let base = u32::from(cluster.addr);
    let count = 1u64 << (prefix - cluster.prefix);
    (0..count)
        .map(|i| flotilla_netproxy::podnet::Cidr {
            addr: Ipv4Addr::from(base + ((i as u32) << (32 - prefix))),
            prefix,
        })
        .find(|c| {
            !taken
                .iter()
                .any(|t| t.contains(c.addr) || c.contains(t.addr))
        })
}

/// The pod CIDRs the Node objects hold, but `me`'s.
pub fn pod_cidrs(nodes: &[Value], me: &str) -> Vec<flotilla_netproxy::podnet::Cidr> {
    nodes
        .iter()
        .filter(|n| n["metadata"]["name"] != me)
        .filter_map(|n| n["spec"]["podCIDR"].as_str()?.parse().ok())
        .collect()
}

/// Keeps the overlay in step with the store; on every change and every 30 s.
pub fn spawn(store: Store, node: String, overlay: Overlay) -> tokio::task::JoinHandle<()> {
    let span = tracing::info_span!("overlay", node = %node);
    tokio::spawn(
        async move {
            let mut changes = store.changes(&["Node"]);
            let mut applied: Option<Vec<Peer>> = None;
            loop {
                match store.list("Node", Some("")).await {
                    Ok((nodes, _)) => {
                        let mut p = peers(&nodes, &node);
                        p.sort();
                        if applied.as_ref() != Some(&p) {
                            let (o, q) = (overlay.clone(), p.clone());
                            match tokio::task::spawn_blocking(move || o.sync(&q)).await {
                                Ok(Ok(())) => {
                                    debug!(peers = p.len(), "overlay in sync");
                                    applied = Some(p);
                                }
                                Ok(Err(e)) => warn!(error = %e, "overlay sync failed"),
                                Err(e) => warn!(error = %e, "overlay sync panicked"),
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "reading the nodes"),
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(Duration::from_secs(30)) => applied = None,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        .instrument(span),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"podCIDR": cidr},
            "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}})
    }

    #[test]
    fn a_new_node_gets_the_lowest_free_subnet_of_the_cluster_cidr() {
        let c = |s: &str| s.parse::<flotilla_netproxy::podnet::Cidr>().unwrap();
        let cluster = c("10.42.0.0/16");
        assert_eq!(free_pod_cidr(cluster, &[]), Some(c("10.42.0.0/24")));
        assert_eq!(
            free_pod_cidr(cluster, &[c("10.42.0.0/24"), c("10.42.2.0/24")]),
            Some(c("10.42.1.0/24"))
        );
        // A node given a bigger block by hand covers every /24 inside it.
        assert_eq!(
            free_pod_cidr(cluster, &[c("10.42.0.0/23")]),
            Some(c("10.42.2.0/24"))
        );
        // Full: every /24 of a /23 taken.
        assert_eq!(
            free_pod_cidr(c("10.42.0.0/23"), &[c("10.42.0.0/24"), c("10.42.1.0/24")]),
            None
        );
        // A cluster CIDR smaller than a /24 is one node's whole.
        assert_eq!(
            free_pod_cidr(c("10.42.0.0/25"), &[]),
            Some(c("10.42.0.0/25"))
        );
        let nodes = vec![
            json!({"metadata": {"name": "a"}, "spec": {"podCIDR": "10.42.0.0/24"}}),
            json!({"metadata": {"name": "b"}, "spec": {}}),
            json!({"metadata": {"name": "me"}, "spec": {"podCIDR": "10.42.5.0/24"}}),
        ];
        assert_eq!(pod_cidrs(&nodes, "me"), vec![c("10.42.0.0/24")]);
    }

    #[test]
    fn peers_are_the_other_nodes_with_a_pod_cidr_and_an_ipv4_address() {
        let nodes = [
            node("a", Some("10.42.0.0/24"), "10.99.0.1"),
            node("b", Some("10.42.1.0/24"), "10.99.0.2"),
            node("c", None, "10.99.0.3"),
            node("d", Some("10.42.3.0/24"), "fd00::4"),
        ];
        let p = peers(&nodes, "a");
        assert_eq!(
            p,
            vec![Peer {
                node_ip: "10.99.0.2".parse().unwrap(),
                pod_cidr: "10.42.1.0/24".parse().unwrap()
            }]
        );
    }
}
