//! Pods across nodes: every node's pod CIDR reaches the others, driven by a table of peers
//! (node address, pod CIDR) that membership provides; routes come as peers join and go as
//! they leave.
//!
//! - **VXLAN** (default), as flannel's vxlan backend: a kernel vxlan device `flotilla.1` (VNI 1,
//!   UDP 8472, no learning) holding the network address of this node's pod CIDR; for each peer
//!   a route `PEER_CIDR via PEER_CIDR.0 dev flotilla.1 onlink`, a permanent neighbour entry for
//!   that gateway and a forwarding entry sending its MAC to the peer's node address. A node's
//!   VTEP MAC is derived from its address (`02:66:a:b:c:d`), so peers need to exchange nothing
//!   but their address and CIDR.
//! - **host-gw**: a route `PEER_CIDR via PEER_NODE_IP`, for nodes on one L2 segment.
//!
//! Everything is over netlink, in the caller's network namespace.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{LinkUnspec, LinkVxlan, RouteMessageBuilder};

use crate::NetError;
use crate::podnet::{Cidr, index_of, netlink, nl, require_index};

pub const VXLAN_DEV: &str = "flotilla.1";
pub const VXLAN_VNI: u32 = 1;
pub const VXLAN_PORT: u16 = 8472;
/// VXLAN's outer headers: 50 bytes on IPv4.
pub const VXLAN_OVERHEAD: u32 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Vxlan,
    HostGw,
}

impl Backend {
    /// The MTU pods should use over this backend (VXLAN's headers take 50 bytes of the
    /// 1500 a link carries; host-gw routes add none).
    pub fn pod_mtu(self) -> Option<u32> {
        match self {
            Backend::Vxlan => Some(1500 - VXLAN_OVERHEAD),
            Backend::HostGw => None,
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            _ => Err(format!("{s:?} is not vxlan or host-gw")),
        }
    }
}

/// Another node: where it is, and its pods' addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub node_ip: Ipv4Addr,
    pub pod_cidr: Cidr,
}

/// The VTEP MAC of the node at `ip`: locally administered, unicast, unique per address.
pub fn vtep_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x66, o[0], o[1], o[2], o[3]]
}

/// This node's side of the overlay.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub backend: Backend,
    /// This node's address, which peers send to.
    pub node_ip: Ipv4Addr,
    pub pod_cidr: Cidr,
    /// The cluster's pod range (`--cluster-cidr`): host-gw routes inside it that no peer holds
    /// are removed as stale.
    pub cluster: Cidr,
}

impl Overlay {
    /// Makes the routes (and for VXLAN the device, neighbour and forwarding entries) match
    /// `peers`, removing routes to CIDRs no peer holds any more. Idempotent.
    pub fn sync(&self, peers: &[Peer]) -> Result<(), NetError> {
        let peers: Vec<Peer> = peers
            .iter()
            .filter(|p| p.node_ip != self.node_ip && p.pod_cidr != self.pod_cidr)
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let this = self.clone();
        netlink(None, move |h| async move {
            let vxlan = match this.backend {
                Backend::Vxlan => Some(this.ensure_vxlan(&h).await?),
                Backend::HostGw => None,
            };
            let wanted: BTreeSet<(Ipv4Addr, u8)> = peers
                .iter()
                .map(|p| (p.pod_cidr.addr, p.pod_cidr.prefix))
                .collect();
            for p in &peers {
                let (net, prefix) = (p.pod_cidr.addr, p.pod_cidr.prefix);
                let route = match vxlan {
                    Some(index) => {
                        let mac = vtep_mac(p.node_ip);
                        h.neighbours()
                            .add(index, IpAddr::V4(net))
                            .link_layer_address(&mac)
                            .state(NeighbourState::Permanent)
                            .replace()
                            .execute()
                            .await
                            .map_err(nl(format!("neighbour {net} on {VXLAN_DEV}")))?;
                        h.neighbours()
                            .add_bridge(index, &mac)
                            .destination(IpAddr::V4(p.node_ip))
                            .flags(NeighbourFlags::Own)
                            .state(NeighbourState::Permanent)
                            .replace()
                            .execute()
                            .await
                            .map_err(nl(format!("forwarding entry for {}", p.node_ip)))?;
                        RouteMessageBuilder::<Ipv4Addr>::new()
                            .destination_prefix(net, prefix)
                            .gateway(net)
                            .output_interface(index)
                            .onlink()
                            .build()
                    }
                    None => RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(net, prefix)
                        .gateway(p.node_ip)
                        .build(),
                };
                h.route()
                    .add(route)
                    .replace()
                    .execute()
                    .await
                    .map_err(nl(format!("route to {}", p.pod_cidr)))?;
            }
            // Routes to pod CIDRs of nodes that left: ours are those via the vxlan device, or
            // (host-gw) those inside the cluster's pod range that are not this node's.
            let mut routes = h
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute();
            let mut stale = Vec::new();
            while let Some(r) = routes.try_next().await.map_err(nl("listing routes"))? {
                let dst = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                    _ => None,
                });
                let oif = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                let gw = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
                    _ => None,
                });
                let Some(dst) = dst else { continue };
                let key = (dst, r.header.destination_prefix_length);
                let ours = match vxlan {
                    Some(index) => oif == Some(index) && gw.is_some(),
                    None => gw.is_some() && this.is_pod_route(dst),
                };
                if ours && !wanted.contains(&key) {
                    stale.push(r);
                }
            }
            for r in stale {
                h.route()
                    .del(r)
                    .execute()
                    .await
                    .map_err(nl("removing a route to a node that left"))?;
            }
            if let Some(index) = vxlan {
                this.remove_stale_entries(&h, index, &peers).await?;
            }
            Ok(())
        })
    }

    /// host-gw only removes routes inside the cluster's pod range, never this node's own.
    fn is_pod_route(&self, dst: Ipv4Addr) -> bool {
        self.cluster.contains(dst) && dst != self.pod_cidr.addr
    }

    /// On the vxlan device, the permanent neighbour entries (pod CIDR -> VTEP MAC) and
    /// forwarding entries (VTEP MAC -> node address) of nodes that left.
    async fn remove_stale_entries(
        &self,
        h: &rtnetlink::Handle,
        index: u32,
        peers: &[Peer],
    ) -> Result<(), NetError> {
        let nets: BTreeSet<Ipv4Addr> = peers.iter().map(|p| p.pod_cidr.addr).collect();
        let macs: BTreeSet<Vec<u8>> = peers.iter().map(|p| vtep_mac(p.node_ip).to_vec()).collect();
        for family in [AddressFamily::Inet, AddressFamily::Bridge] {
            let mut list = h.neighbours().get().set_address_family(family).execute();
            let mut stale = Vec::new();
            while let Some(n) = list.try_next().await.map_err(nl("listing neighbours"))? {
                if n.header.ifindex != index || n.header.state != NeighbourState::Permanent {
                    continue;
                }
                let keep = n.attributes.iter().any(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip))
                        if family == AddressFamily::Inet =>
                    {
                        nets.contains(ip)
                    }
                    NeighbourAttribute::LinkLayerAddress(mac)
                        if family == AddressFamily::Bridge =>
                    {
                        macs.contains(mac)
                    }
                    _ => false,
                });
                if !keep {
                    stale.push(n);
                }
            }
            for n in stale {
                h.neighbours().del(n).execute().await.map_err(nl(format!(
                    "removing a {VXLAN_DEV} entry of a node that left"
                )))?;
            }
        }
        Ok(())
    }

    async fn ensure_vxlan(&self, h: &rtnetlink::Handle) -> Result<u32, NetError> {
        if index_of(h, VXLAN_DEV).await?.is_none() {
            let mut msg = LinkVxlan::new(VXLAN_DEV, VXLAN_VNI)
                .port(VXLAN_PORT)
                .local(self.node_ip)
                .learning(false)
                .build();
            msg.attributes
                .push(rtnetlink::packet_route::link::LinkAttribute::Address(
                    vtep_mac(self.node_ip).to_vec(),
                ));
            h.link()
                .add(msg)
                .execute()
                .await
                .map_err(nl(format!("creating {VXLAN_DEV}")))?;
        }
        let index = require_index(h, VXLAN_DEV).await?;
        h.address()
            .add(index, self.pod_cidr.addr.into(), 32)
            .replace()
            .execute()
            .await
            .map_err(nl(format!(
                "adding {}/32 to {VXLAN_DEV}",
                self.pod_cidr.addr
            )))?;
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl(format!("bringing {VXLAN_DEV} up")))?;
        Ok(index)
    }

    /// Removes the vxlan device (and with it its routes and entries); host-gw routes go with
    /// an empty [`sync`](Self::sync).
    pub fn remove(&self) -> Result<(), NetError> {
        if self.backend == Backend::HostGw {
            return self.sync(&[]);
        }
        remove_device()
    }
}

/// Removes the vxlan device `flotilla.1` if there is one.
pub fn remove_device() -> Result<(), NetError> {
    netlink(None, move |h| async move {
        if let Some(i) = index_of(&h, VXLAN_DEV).await? {
            h.link()
                .del(i)
                .execute()
                .await
                .map_err(nl(format!("removing {VXLAN_DEV}")))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_macs_are_local_unicast_and_follow_the_address() {
        let m = vtep_mac(Ipv4Addr::new(192, 168, 80, 2));
        assert_eq!(m, [0x02, 0x66, 192, 168, 80, 2]);
        assert_eq!(m[0] & 0x01, 0, "unicast");
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        assert_eq!("host-gw".parse::<Backend>(), Ok(Backend::HostGw));
        assert!("flannel".parse::<Backend>().is_err());
    }
}
