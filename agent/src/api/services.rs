//! ClusterIP and NodePort allocation for Services, done when a Service is written so that a user
//! sees its address at once, as in Kubernetes.
//!
//! The service CIDR is 10.43.0.0/16. Its network and broadcast addresses, 10.43.0.1 (the API's
//! own service in Kubernetes) and 10.43.0.10 (cluster DNS) are never handed out. NodePorts come
//! from 30000-32767. Allocation is a pure function of the Services already stored; the API holds
//! a lock around read-allocate-commit so that two writes cannot take the same address.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service as KubeService, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;

use crate::manifest::FieldError;
use crate::manifest::lifecycle::items;

pub use crate::node::services::{DNS_IP, NODE_PORTS, SERVICE_CIDR};

/// Addresses and ports taken by Services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    pub ips: BTreeSet<Ipv4Addr>,
    pub node_ports: BTreeSet<u16>,
}

impl Taken {
    /// What the specs of `services` hold.
    pub fn from_services<'a>(services: impl IntoIterator<Item = &'a ServiceSpec>) -> Taken {
        let mut t = Taken::default();
        for s in services {
            t.add(s);
        }
        t
    }

    fn add(&mut self, spec: &ServiceSpec) {
        if let Some(ip) = spec.cluster_ip.as_deref().and_then(|s| s.parse().ok()) {
            self.ips.insert(ip);
        }
        for p in items(&spec.ports) {
            if let Some(np) = p.node_port {
                self.node_ports.insert(np as u16);
            }
        }
    }
}

fn in_cidr(ip: Ipv4Addr) -> bool {
    let (net, bits) = SERVICE_CIDR;
    let mask = u32::MAX << (32 - bits);
    u32::from(ip) & mask == u32::from(net)
}

fn reserved(ip: Ipv4Addr) -> bool {
    let (net, bits) = SERVICE_CIDR;
    let first = u32::from(net);
    let last = first | (u32::MAX >> bits);
    let n = u32::from(ip);
    n == first || n == last || n == first + 1 || ip == DNS_IP
}

/// The lowest free ClusterIP.
pub fn next_ip(taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let (net, bits) = SERVICE_CIDR;
    let first = u32::from(net);
    let last = first | (u32::MAX >> bits);
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|ip| !reserved(*ip) && !taken.contains(ip))
}

/// Fills in `spec.clusterIP`, `spec.clusterIPs` and NodePorts of a Service about to be written,
/// keeping what `existing` (the stored version's spec) already has; adds what it takes to
/// `taken`.
pub fn allocate(
    spec: &mut ServiceSpec,
    existing: Option<&ServiceSpec>,
    taken: &mut Taken,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let old_ip = existing.and_then(|e| e.cluster_ip.clone());
    let asked = spec.cluster_ip.clone().unwrap_or_default();
    let ip = match (old_ip, asked.as_str()) {
        (Some(old), "") => Some(old),
        (Some(old), new) if old == new => Some(old),
        (Some(old), new) => {
            errors.push(FieldError::new(
                "spec.clusterIP",
                format!("field is immutable: {old} cannot become {new}"),
            ));
            None
        }
        (None, "None") => Some("None".to_string()),
        (None, "") => match next_ip(&taken.ips) {
            Some(ip) => Some(ip.to_string()),
            None => {
                errors.push(FieldError::new(
                    "spec.clusterIP",
                    "the service CIDR 10.43.0.0/16 is full",
                ));
                None
            }
        },
        (None, new) => match new.parse::<Ipv4Addr>() {
            Ok(ip) if !in_cidr(ip) => {
                errors.push(FieldError::new(
                    "spec.clusterIP",
                    format!("{ip} is not in the service CIDR 10.43.0.0/16"),
                ));
                None
            }
            Ok(ip) if reserved(ip) || taken.ips.contains(&ip) => {
                errors.push(FieldError::new(
                    "spec.clusterIP",
                    format!("{ip} is already allocated"),
                ));
                None
            }
            Ok(ip) => Some(ip.to_string()),
            Err(_) => {
                errors.push(FieldError::new(
                    "spec.clusterIP",
                    format!("{new:?} is not an IPv4 address"),
                ));
                None
            }
        },
    };
    if let Some(ip) = ip {
        if let Ok(a) = ip.parse() {
            taken.ips.insert(a);
        }
        spec.cluster_ips = Some(vec![ip.clone()]);
        spec.cluster_ip = Some(ip);
    }
    if spec.type_.as_deref() == Some("NodePort") {
        let old_ports = existing.map(|e| items(&e.ports)).unwrap_or_default();
        for (i, p) in spec.ports.iter_mut().flatten().enumerate() {
            let kept = old_ports
                .iter()
                .find(|o| o.port == p.port && o.protocol == p.protocol)
                .and_then(|o| o.node_port);
            match (p.node_port, kept) {
                (None, Some(k)) => p.node_port = Some(k),
                (Some(n), Some(k)) if n == k => {}
                (Some(n), _) => {
                    if !taken.node_ports.insert(n as u16) {
                        errors.push(FieldError::new(
                            format!("spec.ports[{i}].nodePort"),
                            format!("{n} is already allocated"),
                        ));
                    }
                }
                (None, None) => {
                    match NODE_PORTS.clone().find(|np| !taken.node_ports.contains(np)) {
                        Some(np) => {
                            taken.node_ports.insert(np);
                            p.node_port = Some(i32::from(np));
                        }
                        None => errors.push(FieldError::new(
                            format!("spec.ports[{i}].nodePort"),
                            "no free NodePort in 30000-32767",
                        )),
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Allocates for every Service among `objects` (JSON on its way to the store: each is read
/// as k8s-openapi's `ServiceSpec` and its spec written back) against what is stored, returning
/// problems as `(index into objects, error)`. Call with the API's allocation lock held until
/// the commit.
pub async fn allocate_in(
    store: &crate::store::Store,
    objects: &mut [&mut Value],
) -> Result<Vec<(usize, FieldError)>, crate::store::StoreError> {
    if !objects.iter().any(|o| o["kind"] == "Service") {
        return Ok(Vec::new());
    }
    let stored: Vec<KubeService> = store.list_decodable("Service", None).await?;
    let key_of = |m: &ObjectMeta| {
        (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        )
    };
    let key = |o: &Value| {
        (
            o["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            o["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    };
    let writing: BTreeSet<(String, String)> = objects
        .iter()
        .filter(|o| o["kind"] == "Service")
        .map(|o| key(o))
        .collect();
    let mut taken = Taken::from_services(
        stored
            .iter()
            .filter(|s| !writing.contains(&key_of(&s.metadata)))
            .filter_map(|s| s.spec.as_ref()),
    );
    let mut problems = Vec::new();
    for (i, obj) in objects.iter_mut().enumerate() {
        if obj["kind"] != "Service" {
            continue;
        }
        let k = key(obj);
        let existing = stored
            .iter()
            .find(|s| key_of(&s.metadata) == k)
            .and_then(|s| s.spec.as_ref());
        // The object passed the schema: a spec that does not read is left to validation.
        let Ok(mut spec) = ServiceSpec::deserialize(&obj["spec"]) else {
            continue;
        };
        match allocate(&mut spec, existing, &mut taken) {
            Ok(()) => match serde_json::to_value(&spec) {
                Ok(v) => obj["spec"] = v,
                Err(e) => problems.push((i, FieldError::new("spec", e.to_string()))),
            },
            Err(es) => problems.extend(es.into_iter().map(|e| (i, e))),
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(name: &str, spec: Value) -> Value {
        json!({"kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
    }

    /// [`super::allocate`] on Services as JSON, as the API holds them.
    fn allocate(
        svc: &mut Value,
        existing: Option<&Value>,
        taken: &mut Taken,
    ) -> Result<(), Vec<FieldError>> {
        let spec_of = |v: &Value| ServiceSpec::deserialize(&v["spec"]).unwrap();
        let mut spec = spec_of(svc);
        let old = existing.map(spec_of);
        let r = super::allocate(&mut spec, old.as_ref(), taken);
        svc["spec"] = serde_json::to_value(&spec).unwrap();
        r
    }

    #[test]
    fn allocates_the_lowest_free_address_and_skips_reserved_ones() {
        let mut t = Taken::default();
        let mut a = svc("a", json!({"ports": [{"port": 80}]}));
        allocate(&mut a, None, &mut t).unwrap();
        assert_eq!(a["spec"]["clusterIP"], "10.43.0.2");
        assert_eq!(a["spec"]["clusterIPs"], json!(["10.43.0.2"]));
        t.ips.extend((3..=9).map(|i| Ipv4Addr::new(10, 43, 0, i)));
        let mut b = svc("b", json!({"ports": [{"port": 80}]}));
        allocate(&mut b, None, &mut t).unwrap();
        assert_eq!(b["spec"]["clusterIP"], "10.43.0.11", "10.43.0.10 is DNS");
    }

    #[test]
    fn keeps_addresses_on_update_and_refuses_changes() {
        let mut t = Taken::default();
        let old = svc(
            "a",
            json!({"clusterIP": "10.43.0.7", "ports": [{"port": 80}]}),
        );
        let mut new = svc("a", json!({"ports": [{"port": 80}]}));
        allocate(&mut new, Some(&old), &mut t).unwrap();
        assert_eq!(new["spec"]["clusterIP"], "10.43.0.7");
        let mut changed = svc(
            "a",
            json!({"clusterIP": "10.43.0.8", "ports": [{"port": 80}]}),
        );
        let e = allocate(&mut changed, Some(&old), &mut t).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "spec.clusterIP: field is immutable: 10.43.0.7 cannot become 10.43.0.8"
        );
    }

    #[test]
    fn explicit_addresses_must_be_free_and_in_range() {
        let mut t = Taken::default();
        t.ips.insert(Ipv4Addr::new(10, 43, 1, 1));
        for (ip, msg) in [
            (
                "10.43.1.1",
                "spec.clusterIP: 10.43.1.1 is already allocated",
            ),
            (
                "10.43.0.10",
                "spec.clusterIP: 10.43.0.10 is already allocated",
            ),
            (
                "192.168.1.1",
                "spec.clusterIP: 192.168.1.1 is not in the service CIDR 10.43.0.0/16",
            ),
        ] {
            let mut s = svc("a", json!({"clusterIP": ip, "ports": [{"port": 80}]}));
            assert_eq!(
                allocate(&mut s, None, &mut t).unwrap_err()[0].to_string(),
                msg
            );
        }
        let mut headless = svc("h", json!({"clusterIP": "None"}));
        allocate(&mut headless, None, &mut t).unwrap();
        assert_eq!(headless["spec"]["clusterIP"], "None");
    }

    #[test]
    fn node_ports_are_allocated_kept_and_checked() {
        let mut t = Taken::default();
        t.node_ports.insert(30000);
        let mut s = svc(
            "a",
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP", "nodePort": 30005}]}),
        );
        allocate(&mut s, None, &mut t).unwrap();
        assert_eq!(s["spec"]["ports"][0]["nodePort"], 30001);
        assert_eq!(s["spec"]["ports"][1]["nodePort"], 30005);
        let mut again = svc(
            "a",
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}),
        );
        let mut t2 = Taken::default();
        allocate(&mut again, Some(&s), &mut t2).unwrap();
        assert_eq!(
            again["spec"]["ports"][0]["nodePort"], 30001,
            "kept across applies"
        );
        let mut clash = svc(
            "b",
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30005}]}),
        );
        assert_eq!(
            allocate(&mut clash, None, &mut t).unwrap_err()[0].to_string(),
            "spec.ports[0].nodePort: 30005 is already allocated"
        );
    }
}
