//! The cluster endpoint of a real agent process: a node joins through it by token over QUIC
//! with the real join token; a wrong secret and a wrong CA hash get nothing.

use flotilla::cluster::join::{self, JoinToken};
use flotilla::cluster::transport::{Credentials, Transport};
use flotilla::cluster::{Request, Response};

use crate::harness::Agent;

#[test]
fn a_node_joins_a_running_agent_by_token_over_quic() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = Agent::start();
    let dir = a.data_dir();
    let addr: std::net::SocketAddr = std::fs::read_to_string(dir.join("cluster-addr"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let token: JoinToken = std::fs::read_to_string(dir.join("join-token"))
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let joined = join::join(addr, &token, "node-2", &[]).await.unwrap();
        let creds =
            Credentials::from_pem(&joined.response.ca, &joined.response.cert, &joined.key_pem)
                .unwrap();
        // The new certificate makes the joiner a member the agent recognises by name.
        let me = Transport::bind("127.0.0.1:0".parse().unwrap(), &creds).unwrap();
        let pong = me
            .request(addr, &serde_json::to_vec(&Request::Ping).unwrap())
            .await
            .unwrap();
        match serde_json::from_slice(&pong).unwrap() {
            Response::Pong { node, peer } => {
                assert_eq!((node.as_str(), peer.as_str()), ("node-1", "node-2"))
            }
            other => panic!("{other:?}"),
        }

        let wrong_secret = JoinToken {
            secret: "not-the-secret".into(),
            ..token.clone()
        };
        let e = join::join(addr, &wrong_secret, "node-3", &[])
            .await
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("secret is not valid"), "{e:#}");
        let wrong_ca = JoinToken {
            ca_hash: [9; 32],
            ..token
        };
        assert!(join::join(addr, &wrong_ca, "node-3", &[]).await.is_err());
    });
    assert!(a.log().contains("admitted a node"), "{}", a.log());
}
