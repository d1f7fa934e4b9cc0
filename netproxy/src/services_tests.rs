use super::*;

fn cfg() -> ProxyConfig {
    ProxyConfig {
        cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        egress: Some(("10.42.0.0/24".parse().unwrap(), "flotilla0".into())),
    }
}

fn ep(last: u8, port: u16) -> Endpoint {
    Endpoint {
        ip: Ipv4Addr::new(10, 42, 0, last),
        port,
    }
}

fn web(eps: Vec<Endpoint>, node_port: Option<u16>, affinity: Option<u32>) -> Service {
    Service {
        namespace: "default".into(),
        name: "web".into(),
        cluster_ip: Ipv4Addr::new(10, 43, 0, 5),
        affinity_timeout: affinity,
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port,
            endpoints: eps,
        }],
    }
}

#[test]
fn a_service_gets_one_map_element_and_a_chain_per_endpoint() {
    let r = render(&cfg(), &[web(vec![ep(3, 8080), ep(2, 8080)], None, None)]);
    assert_eq!(
        r.service_ips
            .get("10.43.0.5 . tcp . 80")
            .map(String::as_str),
        Some("goto svc/default/web/tcp/http")
    );
    assert_eq!(r.endpoint_chains(), 2);
    let svc = &r.chains["svc/default/web/tcp/http"];
    assert_eq!(
        svc.last().unwrap(),
        "numgen random mod 2 vmap { 0 : goto sep/default/web/tcp/http/10.42.0.2/8080, 1 : goto sep/default/web/tcp/http/10.42.0.3/8080 }"
    );
    let sep = &r.chains["sep/default/web/tcp/http/10.42.0.2/8080"];
    assert_eq!(
        sep[0], "ip saddr 10.42.0.2 jump mark-for-masquerade",
        "hairpin"
    );
    assert_eq!(sep[1], "meta l4proto tcp dnat ip to 10.42.0.2:8080");
    assert!(r.no_endpoint_ips.is_empty());
    assert!(r.service_nodeports.is_empty());
}

#[test]
fn no_endpoints_means_reject_not_a_chain() {
    let r = render(&cfg(), &[web(vec![], Some(30080), None)]);
    assert!(r.chains.is_empty());
    assert!(r.service_ips.is_empty());
    assert!(r.no_endpoint_ips.contains("10.43.0.5 . tcp . 80"));
    assert!(r.no_endpoint_nodeports.contains("tcp . 30080"));
}

#[test]
fn node_ports_masquerade_then_go_to_the_service_chain() {
    let r = render(&cfg(), &[web(vec![ep(2, 8080)], Some(30080), None)]);
    assert_eq!(
        r.service_nodeports.get("tcp . 30080").map(String::as_str),
        Some("goto ext/default/web/tcp/http")
    );
    assert_eq!(
        r.chains["ext/default/web/tcp/http"],
        vec!["jump mark-for-masquerade", "goto svc/default/web/tcp/http"]
    );
}

#[test]
fn affinity_adds_a_timed_set_per_endpoint() {
    let r = render(
        &cfg(),
        &[web(vec![ep(2, 8080), ep(3, 8080)], None, Some(60))],
    );
    assert_eq!(r.sets.len(), 2);
    let set = "aff/default/web/tcp/http/10.42.0.2/8080/60";
    assert_eq!(r.sets[set], 60);
    let svc = &r.chains["svc/default/web/tcp/http"];
    assert!(svc.contains(&format!(
        "ip saddr @{set} goto sep/default/web/tcp/http/10.42.0.2/8080"
    )));
    assert!(
        r.chains["sep/default/web/tcp/http/10.42.0.2/8080"]
            .contains(&format!("update @{set} {{ ip saddr }}"))
    );
}

#[test]
fn the_first_sync_rebuilds_the_table_and_an_unchanged_one_is_empty() {
    let r = render(&cfg(), &[web(vec![ep(2, 8080)], None, None)]);
    let full = transaction(&cfg(), None, &r);
    let lines: Vec<&str> = full.lines().collect();
    assert_eq!(
        &lines[..3],
        &[
            "add table inet flotilla",
            "delete table inet flotilla",
            "add table inet flotilla"
        ]
    );
    assert!(full.contains("oifname != \"flotilla0\" masquerade"));
    assert_eq!(transaction(&cfg(), Some(&r), &r), "");
}

#[test]
fn an_endpoint_leaving_touches_only_its_service() {
    let other = Service {
        name: "db".into(),
        cluster_ip: Ipv4Addr::new(10, 43, 0, 6),
        ..web(vec![ep(9, 5432)], None, None)
    };
    let before = render(
        &cfg(),
        &[
            web(vec![ep(2, 8080), ep(3, 8080)], None, None),
            other.clone(),
        ],
    );
    let after = render(&cfg(), &[web(vec![ep(2, 8080)], None, None), other]);
    let tx = transaction(&cfg(), Some(&before), &after);
    let lines: Vec<&str> = tx.lines().collect();
    assert_eq!(
        lines,
        vec![
            "flush chain inet flotilla svc/default/web/tcp/http",
            "add rule inet flotilla svc/default/web/tcp/http ip daddr 10.43.0.5 ip saddr != 10.42.0.0/16 jump mark-for-masquerade",
            "add rule inet flotilla svc/default/web/tcp/http numgen random mod 1 vmap { 0 : goto sep/default/web/tcp/http/10.42.0.2/8080 }",
            "flush chain inet flotilla sep/default/web/tcp/http/10.42.0.3/8080",
            "delete chain inet flotilla sep/default/web/tcp/http/10.42.0.3/8080",
        ]
    );
}

#[test]
fn the_last_endpoint_leaving_swaps_the_verdict_for_a_reject() {
    let before = render(&cfg(), &[web(vec![ep(2, 8080)], None, None)]);
    let after = render(&cfg(), &[web(vec![], None, None)]);
    let tx = transaction(&cfg(), Some(&before), &after);
    let at = |needle: &str| {
        tx.lines()
            .position(|l| l == needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from\n{tx}"))
    };
    let del = at("delete element inet flotilla service-ips { 10.43.0.5 . tcp . 80 }");
    let rej = at(
        "add element inet flotilla no-endpoint-services { 10.43.0.5 . tcp . 80 : goto reject-chain }",
    );
    let gone = at("delete chain inet flotilla svc/default/web/tcp/http");
    assert!(
        del < gone && rej < gone,
        "chains go after what points at them"
    );
}
