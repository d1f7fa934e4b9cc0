//! The node's pod network: a Linux bridge holding the gateway address of the node's pod CIDR,
//! and for each pod a veth pair whose host end is on the bridge and whose pod end is `eth0` in
//! the pod's network namespace, with an address from the CIDR and a default route via the
//! bridge. Addresses come from a small IPAM table kept in a file, so an agent restart never
//! hands out an address twice. Everything is done over netlink (rtnetlink), never by running
//! `ip`.
//!
//! Netlink sockets belong to the namespace they were made in, so work inside a pod's namespace
//! runs on a short-lived thread that entered it, with its own single-threaded tokio runtime.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::NetError;

/// An IPv4 network: its address and prefix length (`10.42.0.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("prefix {p:?} must be 8 to 30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// The first host address: the bridge's, the pods' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.addr);
        let size = 1u32 << (32 - self.prefix);
        // Skip the network, the gateway and the broadcast address.
        (base + 2..base + size - 1).map(Ipv4Addr::from)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.addr)
    }
}

/// The lowest address of `cidr` not in `used`: pure, so it is tested on its own.
pub fn allocate(cidr: &Cidr, used: &BTreeMap<String, Ipv4Addr>) -> Option<Ipv4Addr> {
    let taken: std::collections::BTreeSet<&Ipv4Addr> = used.values().collect();
    cidr.hosts().find(|ip| !taken.contains(ip))
}

/// The host-side veth name of a pod (at most 15 bytes, as the kernel wants).
pub fn host_ifname(pod: &str) -> String {
    let id: String = pod
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("vf{id}")
}

/// Turns on what the node needs to route pods' and services' traffic in the caller's network
/// namespace: IPv4 forwarding, and nftables seeing bridged traffic (br_netfilter), which a pod
/// reaching a service backed by a pod on the same bridge needs. Returns false when
/// br_netfilter is missing (its sysctl is absent and `modprobe` could not load it).
pub fn enable_forwarding() -> Result<bool, NetError> {
    let write = |f: &str| {
        std::fs::write(f, "1").map_err(|e| NetError::Io {
            what: format!("writing 1 to {f}"),
            source: e,
        })
    };
    write("/proc/sys/net/ipv4/ip_forward")?;
    let bridge_nf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if !Path::new(bridge_nf).exists() {
        let _ = std::process::Command::new("modprobe")
            .arg("br_netfilter")
            .stderr(std::process::Stdio::null())
            .status();
    }
    if !Path::new(bridge_nf).exists() {
        return Ok(false);
    }
    write(bridge_nf)?;
    Ok(true)
}

/// The node's pod network.
pub struct PodNetwork {
    pub bridge: String,
    pub cidr: Cidr,
    /// `ipam.json`: pod id -> address.
    state: PathBuf,
    lock: Mutex<()>,
    /// The pods' MTU (the kernel's 1500 when `None`); lower under an overlay that adds
    /// headers, so pods never send what the tunnel cannot carry.
    mtu: Option<u32>,
}

/// Runs `f` with a netlink handle made inside the namespace at `netns` (the caller's own
/// namespace when `None`), on a thread of its own.
pub(crate) fn netlink<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, NetError>>,
{
    let netns = netns.map(Path::to_owned);
    std::thread::spawn(move || -> Result<T, NetError> {
        if let Some(ns) = &netns {
            let file = std::fs::File::open(ns).map_err(|e| NetError::Io {
                what: format!("opening {}", ns.display()),
                source: e,
            })?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                NetError::Io {
                    what: format!("entering {}", ns.display()),
                    source: e.into(),
                }
            })?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| NetError::Io {
                what: "starting a netlink runtime".into(),
                source: e,
            })?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| NetError::Io {
                what: "opening a netlink socket".into(),
                source: e,
            })?;
            let task = tokio::spawn(conn);
            let out = f(handle).await;
            task.abort();
            out
        })
    })
    .join()
    .map_err(|_| NetError::Netlink {
        what: "netlink thread".into(),
        message: "panicked".into(),
    })?
}

pub(crate) fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |e| NetError::Netlink {
        what,
        message: e.to_string(),
    }
}

pub(crate) async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("looking up {name}"))(e)),
    }
}

/// The index of the link `name`, which must exist.
pub(crate) async fn require_index(h: &Handle, name: &str) -> Result<u32, NetError> {
    index_of(h, name).await?.ok_or_else(|| NetError::Netlink {
        what: name.to_string(),
        message: "no such link".into(),
    })
}

impl PodNetwork {
    pub fn new(bridge: &str, cidr: Cidr, state_dir: &Path) -> PodNetwork {
        PodNetwork {
            bridge: bridge.to_string(),
            cidr,
            state: state_dir.join("ipam.json"),
            lock: Mutex::new(()),
            mtu: None,
        }
    }

    /// Gives the pods' interfaces (both ends of each veth) this MTU.
    pub fn with_mtu(mut self, mtu: Option<u32>) -> PodNetwork {
        self.mtu = mtu;
        self
    }

    fn read_ipam(&self) -> BTreeMap<String, Ipv4Addr> {
        std::fs::read(&self.state)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn write_ipam(&self, m: &BTreeMap<String, Ipv4Addr>) -> Result<(), NetError> {
        let tmp = self.state.with_extension("tmp");
        let io = |e| NetError::Io {
            what: format!("writing {}", self.state.display()),
            source: e,
        };
        if let Some(d) = self.state.parent() {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        std::fs::write(&tmp, serde_json::to_vec(m).expect("serialises")).map_err(io)?;
        std::fs::rename(&tmp, &self.state).map_err(io)
    }

    /// The address a pod holds, if any.
    pub fn address_of(&self, pod: &str) -> Option<Ipv4Addr> {
        self.read_ipam().get(pod).copied()
    }

    /// Makes the bridge (if missing) with the gateway address, up. Idempotent.
    pub fn ensure_bridge(&self) -> Result<(), NetError> {
        let (bridge, gw, prefix) = (self.bridge.clone(), self.cidr.gateway(), self.cidr.prefix);
        netlink(None, move |h| async move {
            let index = match index_of(&h, &bridge).await? {
                Some(i) => i,
                None => {
                    h.link()
                        .add(LinkBridge::new(&bridge).up().build())
                        .execute()
                        .await
                        .map_err(nl(format!("creating bridge {bridge}")))?;
                    require_index(&h, &bridge).await?
                }
            };
            let mut addrs = h.address().get().set_link_index_filter(index).execute();
            let mut has = false;
            while let Some(a) = addrs.try_next().await.map_err(nl("listing addresses"))? {
                for attr in a.attributes {
                    if let rtnetlink::packet_route::address::AddressAttribute::Address(ip) = attr
                        && ip == std::net::IpAddr::V4(gw)
                    {
                        has = true;
                    }
                }
            }
            if !has {
                h.address()
                    .add(index, gw.into(), prefix)
                    .execute()
                    .await
                    .map_err(nl(format!("adding {gw}/{prefix} to {bridge}")))?;
            }
            h.link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(nl(format!("bringing {bridge} up")))?;
            Ok(())
        })
    }

    /// Gives the pod `pod` an address and wires its namespace at `netns` to the bridge.
    /// Called again for the same pod, it rewires it with the same address.
    pub fn attach(&self, pod: &str, netns: &Path) -> Result<Ipv4Addr, NetError> {
        let ip = {
            let _g = self.lock.lock().expect("ipam lock");
            let mut m = self.read_ipam();
            match m.get(pod) {
                Some(ip) => *ip,
                None => {
                    let ip = allocate(&self.cidr, &m).ok_or(NetError::PoolExhausted {
                        cidr: self.cidr.to_string(),
                    })?;
                    m.insert(pod.to_string(), ip);
                    self.write_ipam(&m)?;
                    ip
                }
            }
        };
        let host = host_ifname(pod);
        let peer = format!("vp{}", &host[2..]);
        let bridge = self.bridge.clone();
        let mtu = self.mtu;
        let ns_file = std::fs::File::open(netns).map_err(|e| NetError::Io {
            what: format!("opening {}", netns.display()),
            source: e,
        })?;
        let fd = ns_file.as_raw_fd();
        netlink(None, move |h| async move {
            if let Some(old) = index_of(&h, &host).await? {
                h.link()
                    .del(old)
                    .execute()
                    .await
                    .map_err(nl(format!("removing stale {host}")))?;
            }
            let mut veth = LinkVeth::new(&host, &peer);
            if let Some(m) = mtu {
                veth = veth.mtu(m);
            }
            h.link()
                .add(veth.build())
                .execute()
                .await
                .map_err(nl(format!("creating veth {host}")))?;
            let bridge_index = require_index(&h, &bridge).await?;
            let host_index = index_of(&h, &host).await?.unwrap_or(0);
            h.link()
                .set(
                    LinkUnspec::new_with_index(host_index)
                        .controller(bridge_index)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(nl(format!("attaching {host} to {bridge}")))?;
            // Hairpin: a pod reaching itself through a service address comes back out of the
            // port it went in by (bridged traffic passes the nftables DNAT via br_netfilter).
            h.link()
                .set_port(LinkBridgePort::new(host_index).hairpin(true).build())
                .execute()
                .await
                .map_err(nl(format!("turning hairpin on for {host}")))?;
            let peer_index = index_of(&h, &peer).await?.unwrap_or(0);
            h.link()
                .set(
                    LinkUnspec::new_with_index(peer_index)
                        .setns_by_fd(fd)
                        .build(),
                )
                .execute()
                .await
                .map_err(nl(format!("moving {peer} into the pod")))?;
            Ok(())
        })?;
        drop(ns_file);
        let (gw, prefix, mtu) = (self.cidr.gateway(), self.cidr.prefix, self.mtu);
        let peer = format!("vp{}", &host_ifname(pod)[2..]);
        netlink(Some(netns), move |h| async move {
            // The node forwards service traffic back out of the bridge it came in by, and
            // would tell the pod by ICMP redirect to reach the service address directly on
            // the link, where nothing answers. Pods ignore redirects (this runs inside the
            // pod's namespace, so /proc/sys/net is the pod's).
            let index = require_index(&h, &peer).await?;
            let mut eth0 = LinkUnspec::new_with_index(index).name("eth0").up();
            if let Some(m) = mtu {
                eth0 = eth0.mtu(m);
            }
            h.link()
                .set(eth0.build())
                .execute()
                .await
                .map_err(nl("naming eth0"))?;
            for conf in ["all", "eth0"] {
                let f = format!("/proc/sys/net/ipv4/conf/{conf}/accept_redirects");
                std::fs::write(&f, "0").map_err(|e| NetError::Io {
                    what: format!("writing {f} in the pod"),
                    source: e,
                })?;
            }
            h.address()
                .add(index, ip.into(), prefix)
                .execute()
                .await
                .map_err(nl(format!("adding {ip}/{prefix} to eth0")))?;
            h.route()
                .add(RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build())
                .execute()
                .await
                .map_err(nl(format!("adding the default route via {gw}")))?;
            Ok(())
        })?;
        Ok(ip)
    }

    /// The pods that hold an address.
    pub fn holders(&self) -> Vec<String> {
        let _g = self.lock.lock().expect("ipam lock");
        self.read_ipam().into_keys().collect()
    }

    /// Unwires a pod and frees its address. Missing pieces are fine (already gone).
    pub fn detach(&self, pod: &str) -> Result<(), NetError> {
        let host = host_ifname(pod);
        netlink(None, move |h| async move {
            if let Some(i) = index_of(&h, &host).await? {
                h.link()
                    .del(i)
                    .execute()
                    .await
                    .map_err(nl(format!("removing {host}")))?;
            }
            Ok(())
        })?;
        let _g = self.lock.lock().expect("ipam lock");
        let mut m = self.read_ipam();
        if m.remove(pod).is_some() {
            self.write_ipam(&m)?;
        }
        Ok(())
    }

    /// Routes `cidr` (the service CIDR) to the bridge, so that a node with no default route (an
    /// air-gapped site, a test namespace) still sends service traffic where the proxy's rules
    /// see it; with a default route it changes nothing but the path's first hop. Idempotent.
    pub fn route_to_bridge(&self, cidr: Cidr) -> Result<(), NetError> {
        let bridge = self.bridge.clone();
        netlink(None, move |h| async move {
            let index = require_index(&h, &bridge).await?;
            h.route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(cidr.addr, cidr.prefix)
                        .output_interface(index)
                        .build(),
                )
                .replace()
                .execute()
                .await
                .map_err(nl(format!("routing {cidr} to {bridge}")))
        })
    }

    /// Puts `ip`/32 on the bridge, as a local address of the node that pods reach through
    /// their gateway (the cluster DNS address). Idempotent.
    pub fn add_bridge_address(&self, ip: Ipv4Addr) -> Result<(), NetError> {
        let bridge = self.bridge.clone();
        netlink(None, move |h| async move {
            let index = require_index(&h, &bridge).await?;
            h.address()
                .add(index, ip.into(), 32)
                .replace()
                .execute()
                .await
                .map_err(nl(format!("adding {ip}/32 to {bridge}")))
        })
    }

    /// Removes the bridge (uninstall, tests).
    pub fn remove_bridge(&self) -> Result<(), NetError> {
        let bridge = self.bridge.clone();
        netlink(None, move |h| async move {
            if let Some(i) = index_of(&h, &bridge).await? {
                h.link()
                    .del(i)
                    .execute()
                    .await
                    .map_err(nl(format!("removing {bridge}")))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_allocate_lowest_free() {
        let c: Cidr = "10.42.0.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.42.0.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 42, 0, 1));
        assert!("10.42.0.0".parse::<Cidr>().is_err());
        assert!("10.42.0.0/31".parse::<Cidr>().is_err());
        let mut used = BTreeMap::new();
        assert_eq!(allocate(&c, &used), Some(Ipv4Addr::new(10, 42, 0, 2)));
        used.insert("a".to_string(), Ipv4Addr::new(10, 42, 0, 2));
        used.insert("b".to_string(), Ipv4Addr::new(10, 42, 0, 4));
        assert_eq!(allocate(&c, &used), Some(Ipv4Addr::new(10, 42, 0, 3)));
        let small: Cidr = "10.0.0.0/30".parse().unwrap();
        let full: BTreeMap<String, Ipv4Addr> =
            [("x".to_string(), Ipv4Addr::new(10, 0, 0, 2))].into();
        assert_eq!(allocate(&small, &full), None, "a /30 holds one pod");
        assert!(c.contains(Ipv4Addr::new(10, 42, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 42, 1, 2)));
    }

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        let n = host_ifname("3f2b9c1e-7a4d-4e0b-9c61-2f1d5b7a9e00");
        assert!(n.len() <= 15, "{n}");
        assert_eq!(n, "vf3f2b9c1e7a4d");
    }
}
