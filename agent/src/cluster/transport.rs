//! Node-to-node traffic: QUIC (quinn) with mutual TLS against the cluster CA, on one UDP port
//! (7946). Every message is a request and a response on a bidirectional stream of its own, so
//! a large message never waits behind another and a slow handler blocks nobody.
//!
//! - A peer is trusted when its certificate chains to the cluster CA. Every node certificate
//!   carries the name `flotilla` (besides its own), which is the name clients check, so nodes
//!   reach each other by address without a certificate per address.
//! - A client without a certificate may connect (it is how a new node joins, see
//!   [`super::join`]); the handler sees `Peer::node == None` and answers nothing but a join.
//! - Connections are cached per address and made again when they break.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tracing::{debug, warn};

pub const ALPN: &[u8] = b"flotilla/1";
/// The name every node certificate carries, and that clients verify.
pub const SERVER_NAME: &str = "flotilla";
/// Largest message (a snapshot goes in pieces).
pub const MAX_MESSAGE: usize = 16 << 20;

/// This node's TLS material.
#[derive(Debug)]
pub struct Credentials {
    pub ca: CertificateDer<'static>,
    /// The node's certificate, then the CA's.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Credentials {
    fn clone(&self) -> Credentials {
        Credentials {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Credentials {
    /// From PEM texts: the CA certificate, the node certificate and its key.
    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Result<Credentials> {
        let ca = super::pem::certs(ca)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no CA certificate"))?;
        let mut chain = super::pem::certs(cert)?;
        if chain.is_empty() {
            bail!("no node certificate");
        }
        chain.push(ca.clone());
        let key = super::pem::private_key(key).context("reading the node key")?;
        Ok(Credentials { ca, chain, key })
    }

    /// A data dir's `pki/ca.crt`, `pki/node.crt` and `pki/node.key`.
    pub fn load(dir: &Path) -> Result<Credentials> {
        let read = |p: &str| {
            std::fs::read_to_string(dir.join(p))
                .with_context(|| format!("reading {}", dir.join(p).display()))
        };
        Credentials::from_pem(
            &read("pki/ca.crt")?,
            &read("pki/node.crt")?,
            &read("pki/node.key")?,
        )
    }

    fn roots(&self) -> Result<Arc<RootCertStore>> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .context("adding the cluster CA")?;
        Ok(Arc::new(roots))
    }
}

/// A failed request: `sent` is false when it surely never reached the peer (so it can be
/// sent again without doing anything twice).
#[derive(Debug)]
pub struct RequestError {
    pub sent: bool,
    pub error: anyhow::Error,
}

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The node name in a client certificate the cluster CA signed; `None` for a client
    /// without one (a node asking to join).
    pub node: Option<String>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;
/// Answers one request.
pub type Handler = Arc<dyn Fn(Peer, Vec<u8>) -> BoxFuture + Send + Sync>;

/// Transport settings that make QUIC notice a dead peer in seconds, not the default 30 s.
fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(10)).expect("small timeout"),
    ));
    Arc::new(t)
}

/// The endpoint's server and client configurations for `creds`.
fn configs(creds: &Credentials) -> Result<(quinn::ServerConfig, quinn::ClientConfig)> {
    let verifier = WebPkiClientVerifier::builder(creds.roots()?)
        .allow_unauthenticated()
        .build()
        .context("client certificate verifier")?;
    let mut server = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(creds.chain.clone(), creds.key.clone_key())
        .context("the node certificate")?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server).context("QUIC server config")?,
    ));
    server.transport_config(transport_config());
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(creds.roots()?)
        .with_client_auth_cert(creds.chain.clone(), creds.key.clone_key())
        .context("client certificate")?;
    Ok((server, client_config(client)?))
}

/// A client configuration from a rustls one.
pub fn client_config(mut tls: rustls::ClientConfig) -> Result<quinn::ClientConfig> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut c = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls).context("QUIC client config")?,
    ));
    c.transport_config(transport_config());
    Ok(c)
}

/// This node's QUIC endpoint: it serves requests and sends them.
#[derive(Clone)]
pub struct Transport {
    endpoint: quinn::Endpoint,
    conns: Arc<Mutex<HashMap<SocketAddr, quinn::Connection>>>,
}

impl Transport {
    /// Binds `addr` (UDP) with the node's credentials.
    pub fn bind(addr: SocketAddr, creds: &Credentials) -> Result<Transport> {
        let (server, client) = configs(creds)?;
        let mut endpoint = quinn::Endpoint::server(server, addr)
            .with_context(|| format!("binding the cluster port {addr} (UDP)"))?;
        endpoint.set_default_client_config(client);
        Ok(Transport {
            endpoint,
            conns: Arc::default(),
        })
    }

    /// Uses new credentials (a renewed certificate) for every connection from now on;
    /// connections already open keep theirs until they close.
    pub fn reload(&self, creds: &Credentials) -> Result<()> {
        let (server, client) = configs(creds)?;
        self.endpoint.set_server_config(Some(server));
        let mut endpoint = self.endpoint.clone();
        endpoint.set_default_client_config(client);
        self.conns.lock().expect("conns").clear();
        Ok(())
    }

    /// A client-only endpoint with its own client configuration (a node joining).
    pub fn client(config: quinn::ClientConfig) -> Result<Transport> {
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
            .context("binding a UDP socket")?;
        endpoint.set_default_client_config(config);
        Ok(Transport {
            endpoint,
            conns: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    async fn connection(&self, to: SocketAddr) -> Result<quinn::Connection> {
        if let Some(c) = self.conns.lock().expect("conns").get(&to)
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            self.endpoint
                .connect(to, SERVER_NAME)
                .with_context(|| format!("connecting to {to}"))?,
        )
        .await
        .map_err(|_| anyhow!("{to}: no answer within 5 s"))?
        .with_context(|| format!("TLS with {to}"))?;
        self.conns.lock().expect("conns").insert(to, conn.clone());
        Ok(conn)
    }

    /// Sends `body` to the node at `to` and returns its answer.
    pub async fn request(&self, to: SocketAddr, body: &[u8]) -> Result<Vec<u8>> {
        self.try_request(to, body).await.map_err(|e| e.error)
    }

    /// Like [`Transport::request`], telling apart a request that never left this node from one
    /// that may have reached the peer.
    pub async fn try_request(&self, to: SocketAddr, body: &[u8]) -> Result<Vec<u8>, RequestError> {
        let conn = self
            .connection(to)
            .await
            .map_err(|error| RequestError { sent: false, error })?;
        let r = async {
            let (mut send, mut recv) = conn
                .open_bi()
                .await
                .map_err(|e| (false, anyhow::Error::from(e)))?;
            send.write_all(body)
                .await
                .map_err(|e| (false, anyhow::Error::from(e)))?;
            send.finish().map_err(|e| (false, anyhow::Error::from(e)))?;
            recv.read_to_end(MAX_MESSAGE)
                .await
                .map_err(|e| (true, anyhow::Error::from(e)))
        }
        .await;
        r.map_err(|(sent, e)| {
            self.conns.lock().expect("conns").remove(&to);
            RequestError {
                sent,
                error: e.context(format!("request to {to}")),
            }
        })
    }

    /// Serves requests with `handler` until the endpoint closes.
    pub fn serve(&self, handler: Handler) -> tokio::task::JoinHandle<()> {
        let endpoint = self.endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let handler = handler.clone();
                tokio::spawn(async move {
                    let addr = incoming.remote_address();
                    let conn = match incoming.await {
                        Ok(c) => c,
                        Err(e) => {
                            debug!(%addr, error = %e, "refused a connection");
                            return;
                        }
                    };
                    let peer = Peer {
                        addr,
                        node: peer_node(&conn),
                    };
                    loop {
                        let (mut send, mut recv) = match conn.accept_bi().await {
                            Ok(s) => s,
                            Err(_) => return,
                        };
                        let (handler, peer) = (handler.clone(), peer.clone());
                        tokio::spawn(async move {
                            let Ok(req) = recv.read_to_end(MAX_MESSAGE).await else {
                                return;
                            };
                            let resp = handler(peer, req).await;
                            if send.write_all(&resp).await.is_err() || send.finish().is_err() {
                                warn!("a peer left before its answer");
                            }
                        });
                    }
                });
            }
        })
    }

    /// Closes the endpoint: connections end, [`serve`](Self::serve) returns.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"bye");
    }
}

/// The node name (common name) of a verified client certificate.
fn peer_node(conn: &quinn::Connection) -> Option<String> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    common_name(certs.first()?)
}

/// A certificate's common name.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    c.subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()
        .map(str::to_string)
}
