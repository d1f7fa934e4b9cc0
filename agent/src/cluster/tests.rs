//! Real QUIC over UDP on 127.0.0.1 between endpoints in this process.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use super::join::{self, Admission, JoinToken};
use super::transport::{Credentials, Transport};
use super::*;

struct Ca {
    pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca() -> Ca {
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

fn node_creds(ca: &Ca, name: &str) -> Credentials {
    let key = KeyPair::generate().unwrap();
    let cert = join::node_cert_params(name, &[])
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    Credentials::from_pem(&ca.pem, &cert.pem(), &key.serialize_pem()).unwrap()
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn ping() -> Vec<u8> {
    serde_json::to_vec(&Request::Ping).unwrap()
}

fn answer(body: Vec<u8>) -> Response {
    serde_json::from_slice(&body).unwrap()
}

fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::test]
async fn nodes_of_one_ca_talk_and_know_who_asks() {
    install_provider();
    let ca = ca();
    let a = Transport::bind(any_port(), &node_creds(&ca, "node-a")).unwrap();
    a.serve(handler("node-a".into(), None));
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
    a.serve(handler("node-a".into(), None));
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
    let admission = Arc::new(Admission {
        ca_cert_pem: ca.pem.clone(),
        ca_key_pem: ca.key_pem.clone(),
        secrets: vec!["s3cret".into()],
        api_token: "api".into(),
    });
    let member = Transport::bind(any_port(), &node_creds(&ca, "node-1")).unwrap();
    member.serve(handler("node-1".into(), Some(admission)));
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
