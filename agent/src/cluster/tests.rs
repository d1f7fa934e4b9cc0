//! Real QUIC over UDP on 127.0.0.1 between endpoints in this process.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use super::join::{self, Admission, JoinToken};
use super::transport::{Credentials, Transport};
use super::*;

pub(crate) struct Ca {
    pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub(crate) fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let key_pem = key.serialize_pem();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "flotilla-ca");
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        key_pem,
        issuer: Issuer::new(p, key),
    }
}

pub(crate) fn node_creds(ca: &Ca, name: &str) -> Credentials {
    let key = KeyPair::generate().unwrap();
    let cert = join::node_cert_params(name, None, &[])
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    Credentials::from_pem(&ca.pem, &cert.pem(), &key.serialize_pem()).unwrap()
}

pub(crate) fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn ping() -> Vec<u8> {
    serde_json::to_vec(&Request::Ping).unwrap()
}

fn answer(body: Vec<u8>) -> Response {
    serde_json::from_slice(&body).unwrap()
}

pub(crate) fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::test]
async fn nodes_of_one_ca_talk_and_know_who_asks() {
    install_provider();
    let ca = ca();
    let a = Transport::bind(any_port(), &node_creds(&ca, "node-a")).unwrap();
    a.serve(handler("node-a".into(), None, None, Default::default()));
    let b = Transport::bind(any_port(), &node_creds(&ca, "node-b")).unwrap();
    for _ in 0..3 {
        let r = answer(b.request(a.local_addr().unwrap(), &ping()).await.unwrap());
        match r {
            Response::Pong { node, peer } => {
                assert_eq!((node.as_str(), peer.as_str()), ("node-a", "node-b"))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_certificate_from_another_ca_gets_nothing_and_no_certificate_gets_only_a_join() {
    install_provider();
    let ca1 = ca();
    let a = Transport::bind(any_port(), &node_creds(&ca1, "node-a")).unwrap();
    a.serve(handler("node-a".into(), None, None, Default::default()));
    let to = a.local_addr().unwrap();

    // Another cluster's node: neither side trusts the other.
    let stranger = Transport::bind(any_port(), &node_creds(&ca(), "evil")).unwrap();
    assert!(stranger.request(to, &ping()).await.is_err());

    // No certificate at all (trusting the member): a ping is refused.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(node_creds(&ca1, "x").ca).unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let anon = Transport::client(transport::client_config(tls).unwrap()).unwrap();
    match answer(anon.request(to, &ping()).await.unwrap()) {
        Response::Error { message } => assert!(message.contains("join first"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_node_joins_by_token_and_then_talks_as_a_member() {
    install_provider();
    let ca = ca();
    let admission = Arc::new(Admit::Fixed(Admission {
        ca_cert_pem: ca.pem.clone(),
        ca_key_pem: ca.key_pem.clone(),
        secrets: vec!["s3cret".into()],
        api_token: "api".into(),
        cluster_id: "c1".into(),
    }));
    let member = Transport::bind(any_port(), &node_creds(&ca, "node-1")).unwrap();
    member.serve(handler(
        "node-1".into(),
        Some(admission),
        None,
        Default::default(),
    ));
    let to = member.local_addr().unwrap();
    let ca_der = node_creds(&ca, "x").ca;
    let hash = hex::encode(join::ca_hash(&ca_der));

    let good: JoinToken = format!("K10{hash}::s3cret").parse().unwrap();
    let joined = join::join(to, &good, "node-2", &["10.0.0.2".parse().unwrap()])
        .await
        .unwrap();
    assert_eq!(joined.response.api_token, "api");
    let creds =
        Credentials::from_pem(&joined.response.ca, &joined.response.cert, &joined.key_pem).unwrap();
    assert_eq!(
        transport::common_name(&creds.chain[0]).as_deref(),
        Some("node-2")
    );
    let me = Transport::bind(any_port(), &creds).unwrap();
    match answer(me.request(to, &ping()).await.unwrap()) {
        Response::Pong { peer, .. } => assert_eq!(peer, "node-2"),
        other => panic!("{other:?}"),
    }

    // A wrong secret is refused by the member; a wrong CA hash by the joiner.
    let bad_secret: JoinToken = format!("K10{hash}::nope").parse().unwrap();
    let e = join::join(to, &bad_secret, "node-3", &[])
        .await
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("secret is not valid"), "{e:#}");
    let other_ca = hex::encode([7u8; 32]);
    let bad_ca: JoinToken = format!("K10{other_ca}::s3cret").parse().unwrap();
    let e = join::join(to, &bad_ca, "node-3", &[]).await.err().unwrap();
    assert!(format!("{e:#}").contains("TLS"), "{e:#}");
    assert!("K10abc::x".parse::<JoinToken>().is_err());
    assert!(format!("K10{hash}::").parse::<JoinToken>().is_err());
}

#[tokio::test]
async fn members_see_each_other_by_gossip_and_a_dead_one_goes_dead() {
    install_provider();
    let ca = ca();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let name = format!("node-{i}");
        let t = Transport::bind(any_port(), &node_creds(&ca, &name)).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        t.serve(handler(name.clone(), None, Some(tx), Default::default()));
        let addr = t.local_addr().unwrap();
        let seeds: Vec<SocketAddr> = nodes
            .iter()
            .map(|(_, a, _): &(Transport, SocketAddr, _)| *a)
            .take(1)
            .collect();
        let mut cfg = GossipConfig::new(&name, "c1", addr);
        cfg.seeds = seeds;
        cfg.interval = std::time::Duration::from_millis(100);
        let h = start_gossip(&t, rx, &cfg, vec![("role".into(), format!("r{i}"))])
            .await
            .unwrap();
        nodes.push((t, addr, h));
    }
    let live = |h: &chitchat::ChitchatHandle| {
        let h = h.chitchat();
        async move {
            let c = h.lock().await;
            let mut v: Vec<String> = c.live_nodes().map(|id| id.node_id.to_string()).collect();
            v.sort();
            v
        }
    };
    let all = vec!["node-0", "node-1", "node-2"];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut ok = true;
        for (_, _, h) in &nodes {
            ok &= live(h).await == all;
        }
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "membership did not converge"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Key-values travel too.
    {
        let c = nodes[0].2.chitchat();
        let c = c.lock().await;
        let n2 = c
            .live_nodes()
            .find(|id| &*id.node_id == "node-2")
            .unwrap()
            .clone();
        assert_eq!(c.node_state(&n2).unwrap().get("role"), Some("r2"));
    }
    // node-2 stops: the others see it dead within seconds.
    let (t2, _, h2) = nodes.pop().unwrap();
    h2.shutdown().await.ok();
    t2.close();
    let t0 = std::time::Instant::now();
    loop {
        let mut ok = true;
        for (_, _, h) in &nodes {
            ok &= live(h).await == vec!["node-0", "node-1"];
        }
        if ok {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "node-2 never went dead"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!("node-2 seen dead after {:?}", t0.elapsed());
}

#[test]
fn a_nodes_gossiped_state_reads_as_one_line() {
    let kv: std::collections::BTreeMap<String, String> = [
        ("next".to_string(), "42".to_string()),
        (
            "pods".to_string(),
            r#"[["default/a","Running","10.42.0.2",true],["default/b","Running","10.42.0.3",false],["default/c","Pending","",false]]"#.to_string(),
        ),
    ]
    .into();
    assert_eq!(
        super::observed_summary(&kv),
        "next=42 pods=3 running=2 ready=1"
    );
    assert_eq!(super::observed_summary(&Default::default()), "");
}

#[test]
fn node_certificates_name_the_host_when_it_differs_from_the_node() {
    let dns = |p: &rcgen::CertificateParams| -> Vec<String> {
        p.subject_alt_names
            .iter()
            .filter_map(|s| match s {
                rcgen::SanType::DnsName(n) => Some(n.as_str().to_string()),
                _ => None,
            })
            .collect()
    };
    let p =
        join::node_cert_params("n1", Some("pi-kitchen"), &["10.0.0.5".parse().unwrap()]).unwrap();
    assert_eq!(dns(&p), ["n1", "pi-kitchen", "flotilla", "localhost"]);
    assert!(
        p.subject_alt_names
            .contains(&rcgen::SanType::IpAddress("10.0.0.5".parse().unwrap()))
    );
    let same = join::node_cert_params("n1", Some("n1"), &[]).unwrap();
    assert_eq!(dns(&same), ["n1", "flotilla", "localhost"]);
}
