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

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_service_is_map_elements_and_a_shared_pick_chain() {
    let r = render(&cfg(), &[web(vec![ep(3, 8080), ep(2, 8080)], None, None)]);
    assert_eq!(
        r.elements_of("service-ips"),
        map(&[("10.43.0.5 . tcp . 80", "goto pick-tcp-2")])
    );
    assert_eq!(
        r.elements_of("endpoints-tcp"),
        map(&[
            ("10.43.0.5 . 80 . 0", "10.42.0.2 . 8080"),
            ("10.43.0.5 . 80 . 1", "10.42.0.3 . 8080"),
        ])
    );
    assert_eq!(
        r.chains.keys().collect::<Vec<_>>(),
        vec!["pick-tcp-2"],
        "no chain per service or endpoint"
    );
    assert!(r.chains["pick-tcp-2"][1].contains("numgen random mod 2 map @endpoints-tcp"));
    assert_eq!(
        r.elements_of("hairpin").keys().collect::<Vec<_>>(),
        vec!["10.42.0.2 . 10.42.0.2", "10.42.0.3 . 10.42.0.3"]
    );
    assert!(r.elements_of("no-endpoint-services").is_empty());
}

#[test]
fn services_with_as_many_endpoints_share_one_chain() {
    let other = Service {
        name: "db".into(),
        cluster_ip: Ipv4Addr::new(10, 43, 0, 6),
        ..web(vec![ep(7, 5432), ep(8, 5432)], None, None)
    };
    let r = render(
        &cfg(),
        &[web(vec![ep(2, 80), ep(3, 80)], None, None), other],
    );
    assert_eq!(r.chains.len(), 1);
    assert_eq!(r.elements_of("endpoints-tcp").len(), 4);
}

#[test]
fn no_endpoints_means_reject() {
    let r = render(&cfg(), &[web(vec![], Some(30080), None)]);
    assert!(r.chains.is_empty());
    assert!(r.elements_of("service-ips").is_empty());
    assert!(
        r.elements_of("no-endpoint-services")
            .contains_key("10.43.0.5 . tcp . 80")
    );
    assert!(
        r.elements_of("no-endpoint-nodeports")
            .contains_key("tcp . 30080")
    );
}

#[test]
fn node_ports_masquerade_and_pick_from_their_own_map() {
    let r = render(&cfg(), &[web(vec![ep(2, 8080)], Some(30080), None)]);
    assert_eq!(
        r.elements_of("service-nodeports"),
        map(&[("tcp . 30080", "goto nodeport-pick-tcp-1")])
    );
    assert_eq!(
        r.elements_of("nodeport-endpoints-tcp"),
        map(&[("30080 . 0", "10.42.0.2 . 8080")])
    );
    assert_eq!(
        r.chains["nodeport-pick-tcp-1"][0],
        "jump mark-for-masquerade"
    );
}

#[test]
fn affinity_adds_a_chain_and_a_timed_set_per_endpoint() {
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
    assert!(r.elements_of("endpoints-tcp").is_empty());
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
fn an_endpoint_leaving_changes_only_elements() {
    let other = Service {
        name: "db".into(),
        cluster_ip: Ipv4Addr::new(10, 43, 0, 6),
        ..web(vec![ep(9, 5432)], None, None)
    };
    let before = render(
        &cfg(),
        &[
            web(vec![ep(2, 8080), ep(3, 8080), ep(4, 8080)], None, None),
            other.clone(),
        ],
    );
    let after = render(
        &cfg(),
        &[web(vec![ep(2, 8080), ep(4, 8080)], None, None), other],
    );
    let tx = transaction(&cfg(), Some(&before), &after);
    let lines: Vec<&str> = tx.lines().collect();
    assert_eq!(
        lines,
        vec![
            "add chain inet flotilla pick-tcp-2",
            "add rule inet flotilla pick-tcp-2 ip saddr != 10.42.0.0/16 jump mark-for-masquerade",
            "add rule inet flotilla pick-tcp-2 meta l4proto tcp dnat ip to ip daddr . tcp dport . numgen random mod 2 map @endpoints-tcp",
            "delete element inet flotilla service-ips { 10.43.0.5 . tcp . 80 }",
            "delete element inet flotilla hairpin { 10.42.0.3 . 10.42.0.3 }",
            "delete element inet flotilla endpoints-tcp { 10.43.0.5 . 80 . 1, 10.43.0.5 . 80 . 2 }",
            "add element inet flotilla service-ips { 10.43.0.5 . tcp . 80 : goto pick-tcp-2 }",
            "add element inet flotilla endpoints-tcp { 10.43.0.5 . 80 . 1 : 10.42.0.4 . 8080 }",
            "flush chain inet flotilla pick-tcp-3",
            "delete chain inet flotilla pick-tcp-3",
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
    let gone = at("delete chain inet flotilla pick-tcp-1");
    assert!(
        del < gone && rej < gone,
        "chains go after what points at them"
    );
}

#[test]
fn incremental_plans_equal_the_diff_of_whole_renderings() {
    let svc = |name: &str, last: u8, eps: &[u8], np: Option<u16>, aff: Option<u32>| Service {
        name: name.into(),
        cluster_ip: Ipv4Addr::new(10, 43, 0, last),
        ..web(eps.iter().map(|e| ep(*e, 8080)).collect(), np, aff)
    };
    let steps: Vec<Vec<Service>> = vec![
        vec![
            svc("a", 1, &[2, 3], None, None),
            svc("b", 2, &[3, 4], Some(30001), None),
        ],
        // a loses an endpoint (pick-2 still used by b), b unchanged
        vec![
            svc("a", 1, &[2], None, None),
            svc("b", 2, &[3, 4], Some(30001), None),
        ],
        // a gone: endpoint 2's hairpin goes, 3's stays (b)
        vec![svc("b", 2, &[3, 4], Some(30001), None)],
        // c arrives with affinity; b loses its endpoints
        vec![
            svc("b", 2, &[], Some(30001), None),
            svc("c", 3, &[5, 6], None, Some(30)),
        ],
        vec![svc("c", 3, &[5], None, Some(60))],
        vec![],
    ];
    let mut proxy = ServiceProxy::new(cfg(), None);
    let mut prev: Option<Vec<Service>> = None;
    for step in steps {
        let Plan {
            script,
            full,
            next: applied,
            ..
        } = proxy.plan(&step);
        let expected = transaction(
            &cfg(),
            prev.as_ref().map(|p| render(&cfg(), p)).as_ref(),
            &render(&cfg(), &step),
        );
        assert_eq!(full, prev.is_none());
        assert_eq!(script, expected, "step {step:?}");
        proxy.applied = Some(applied);
        prev = Some(step);
    }
}
