//! Services: types, ports, cluster IPs and session affinity.

use super::*;

/// Validates a Service.
pub(super) fn service_object(e: &mut Errors, o: &Service) {
    meta(e, &o.metadata, NameRule::Label, true);
    let none = ServiceSpec::default();
    service(e, o.spec.as_ref().unwrap_or(&none));
}

pub(super) fn service(e: &mut Errors, s: &ServiceSpec) {
    let ty = s.type_.as_deref().unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort"].contains(&ty) {
        e.add(
            "spec.type",
            format!("{ty:?} is not supported; use ClusterIP or NodePort"),
        );
    }
    labels(e, "spec.selector", strings(&s.selector));
    if let Some(ip) = &s.cluster_ip {
        if !ip.is_empty() && ip != "None" && ip.parse::<std::net::Ipv4Addr>().is_err() {
            e.add(
                "spec.clusterIP",
                format!("{ip:?} must be empty, \"None\" or an IPv4 address"),
            );
        }
        if ip == "None" && ty == "NodePort" {
            e.add(
                "spec.clusterIP",
                "a headless service (None) cannot be of type NodePort",
            );
        }
    }
    let ports = items(&s.ports);
    if ports.is_empty() && s.cluster_ip.as_deref() != Some("None") {
        e.add("spec.ports", "required");
    }
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        port_number(e, &format!("{pp}.port"), port.port);
        let proto = protocol(e, &format!("{pp}.protocol"), port.protocol.as_deref());
        match &port.name {
            None if ports.len() > 1 => e.add(
                format!("{pp}.name"),
                "required when a service has more than one port",
            ),
            None => {}
            Some(n) => {
                if let Some(err) = dns_label_error(n) {
                    e.add(format!("{pp}.name"), format!("{n:?} {err}"));
                } else if !names.insert(n.clone()) {
                    e.add(format!("{pp}.name"), format!("duplicate port name {n:?}"));
                }
            }
        }
        if (1..=65535).contains(&port.port) && !seen.insert((port.port, proto.clone())) {
            e.add(
                format!("{pp}.port"),
                format!("duplicate port {}/{proto}", port.port),
            );
        }
        match &port.target_port {
            Some(IntOrString::Int(n)) => port_number(e, &format!("{pp}.targetPort"), *n),
            Some(IntOrString::String(n)) => {
                if let Some(err) = port_name_error(n) {
                    e.add(format!("{pp}.targetPort"), format!("{n:?} {err}"));
                }
            }
            None => {}
        }
        if let Some(np) = port.node_port {
            if ty != "NodePort" {
                e.add(
                    format!("{pp}.nodePort"),
                    "only allowed when spec.type is NodePort",
                );
            } else if !(30000..=32767).contains(&np) {
                e.add(
                    format!("{pp}.nodePort"),
                    format!("{np} is not in the NodePort range 30000-32767"),
                );
            } else if !node_ports.insert(np) {
                e.add(format!("{pp}.nodePort"), format!("duplicate nodePort {np}"));
            }
        }
    }
    let aff = s.session_affinity.as_deref().unwrap_or("None");
    if !["None", "ClientIP"].contains(&aff) {
        e.add(
            "spec.sessionAffinity",
            format!("{aff:?} is not one of None, ClientIP"),
        );
    }
    if let Some(t) = s
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
    {
        if aff != "ClientIP" {
            e.add(
                "spec.sessionAffinityConfig",
                "only allowed when sessionAffinity is ClientIP",
            );
        } else if !(1..=86400).contains(&t) {
            e.add(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                format!("{t} is not in 1-86400"),
            );
        }
    }
}
