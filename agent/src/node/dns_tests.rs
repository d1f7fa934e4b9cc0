use hickory_proto::op::Query;
use serde_json::json;

use super::*;

fn ask(name: &str, ty: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    m.to_vec().unwrap()
}

fn resolve(z: &Zone, name: &str, ty: RecordType) -> Message {
    match answer(&ask(name, ty), z) {
        Reply::Answer(b) => Message::from_vec(&b).unwrap(),
        other => panic!("{name}: {other:?}"),
    }
}

fn zone_fixture() -> Zone {
    let services = vec![
        json!({"metadata": {"name": "web", "namespace": "default"},
               "spec": {"clusterIP": "10.43.0.5", "selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 80}, {"port": 81}]}}),
        json!({"metadata": {"name": "db", "namespace": "prod"},
               "spec": {"clusterIP": "None", "selector": {"app": "db"},
                        "ports": [{"name": "pg", "port": 5432}]}}),
    ];
    let pod = |ip: &str, ready: &str| -> Pod {
        serde_json::from_value(
            json!({"metadata": {"namespace": "prod", "labels": {"app": "db"}},
               "status": {"phase": "Running", "podIP": ip,
                          "conditions": [{"type": "Ready", "status": ready}]}}),
        )
        .unwrap()
    };
    let services: Vec<Service> = services
        .into_iter()
        .map(|s| serde_json::from_value(s).unwrap())
        .collect();
    zone(
        &services,
        &[
            pod("10.42.0.9", "True"),
            pod("10.42.0.7", "True"),
            pod("10.42.0.8", "False"),
        ],
    )
}

fn a_of(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[test]
fn a_service_name_resolves_to_its_cluster_ip_case_insensitively() {
    let z = zone_fixture();
    let m = resolve(&z, "Web.Default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(a_of(&m), vec![Ipv4Addr::new(10, 43, 0, 5)]);
}

#[test]
fn a_headless_service_resolves_to_its_ready_pods() {
    let z = zone_fixture();
    let m = resolve(&z, "db.prod.svc.cluster.local.", RecordType::A);
    assert_eq!(
        a_of(&m),
        vec![Ipv4Addr::new(10, 42, 0, 7), Ipv4Addr::new(10, 42, 0, 9)]
    );
}

#[test]
fn named_ports_have_srv_records_with_the_address_alongside() {
    let z = zone_fixture();
    let m = resolve(
        &z,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let srv: Vec<(u16, String)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    assert_eq!(
        srv,
        vec![(80, "web.default.svc.cluster.local.".to_string())]
    );
    assert_eq!(m.additionals.len(), 1);
}

#[test]
fn unknown_cluster_names_are_nxdomain_and_known_names_without_the_type_are_empty() {
    let z = zone_fixture();
    let m = resolve(&z, "nope.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = resolve(&z, "web.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let m = resolve(&z, "default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

#[test]
fn other_names_are_forwarded_and_garbage_dropped() {
    let z = zone_fixture();
    assert_eq!(
        answer(&ask("example.org.", RecordType::A), &z),
        Reply::Forward
    );
    assert_eq!(answer(b"\x01\x02junk", &z), Reply::Drop);
    assert_eq!(
        upstreams("# x\nnameserver 10.0.0.2\nnameserver ::1\nsearch lan\n"),
        vec![
            "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
}

#[test]
fn pods_search_their_namespace_first() {
    assert_eq!(
        pod_resolv_conf("prod", Ipv4Addr::new(10, 43, 0, 10)),
        "nameserver 10.43.0.10\nsearch prod.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    );
}

/// A resolver on loopback that answers every A question with 203.0.113.7, as the node's own
/// resolver would answer a name outside the cluster.
async fn fake_upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            let name = q.queries[0].name().clone();
            r.queries = q.queries;
            r.add_answer(Record::from_rdata(
                name,
                60,
                RData::A(A(Ipv4Addr::new(203, 0, 113, 7))),
            ));
            let _ = sock.send_to(&r.to_vec().unwrap(), from).await;
        }
    });
    addr
}

#[tokio::test]
async fn other_names_are_relayed_to_the_upstream_and_answered_servfail_without_one() {
    let z = zone_fixture();
    let up = fake_upstream().await;
    // The first upstream is gone (nothing listens there): the next one answers.
    let gone = {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.local_addr().unwrap()
    };
    let b = reply(&ask("example.org.", RecordType::A), &z, &[gone, up])
        .await
        .expect("an answer");
    let m = Message::from_vec(&b).unwrap();
    assert_eq!(m.metadata.id, 4242, "the client's query id comes back");
    assert_eq!(a_of(&m), [Ipv4Addr::new(203, 0, 113, 7)]);
    // Cluster names never leave the node.
    let b = reply(
        &ask("web.default.svc.cluster.local.", RecordType::A),
        &z,
        &[gone],
    )
    .await
    .unwrap();
    assert!(!a_of(&Message::from_vec(&b).unwrap()).is_empty());
    // No upstream answers: SERVFAIL, not silence.
    let b = reply(&ask("example.org.", RecordType::A), &z, &[gone])
        .await
        .unwrap();
    let m = Message::from_vec(&b).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn a_pod_with_a_hostname_in_a_headless_services_subdomain_has_its_own_name() {
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "nginx", "namespace": "default"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"}}}),
    )
    .unwrap();
    let pod = |host: &str, sub: &str, ip: &str| -> Pod {
        serde_json::from_value(json!({"metadata": {"namespace": "default", "labels": {"app": "web"}},
            "spec": {"hostname": host, "subdomain": sub, "containers": []},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap()
    };
    let z = zone(
        &[svc],
        &[
            pod("web-0", "nginx", "10.42.0.7"),
            pod("web-1", "nginx", "10.42.0.8"),
            pod("other", "elsewhere", "10.42.0.9"),
        ],
    );
    let m = resolve(&z, "web-0.nginx.default.svc.cluster.local.", RecordType::A);
    assert_eq!(a_of(&m), ["10.42.0.7".parse::<Ipv4Addr>().unwrap()]);
    let m = resolve(&z, "WEB-1.nginx.default.svc.cluster.local.", RecordType::A);
    assert_eq!(a_of(&m), ["10.42.0.8".parse::<Ipv4Addr>().unwrap()]);
    let m = resolve(&z, "other.nginx.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "not in that subdomain"
    );
    assert_eq!(
        a_of(&resolve(
            &z,
            "nginx.default.svc.cluster.local.",
            RecordType::A
        ))
        .len(),
        3,
        "the Service itself: every ready pod"
    );
}
