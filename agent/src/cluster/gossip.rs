//! Membership: chitchat (scuttlebutt gossip, phi-accrual failure detection) carried over the
//! cluster's QUIC endpoint instead of plain UDP.
//!
//! chitchat ships UDP and in-process transports behind its `Transport`/`Socket` traits; this
//! is a third. A gossip message is one request on the [`Transport`] (a stream of its own, so
//! messages larger than a datagram are fine), framed as [`GOSSIP_TAG`], the sender's
//! advertised address, then chitchat's own encoding of the envelope. Sending never waits and
//! never fails for one peer (chitchat's server loop stops on any send error): each send is a
//! task of its own, and an unreachable peer just misses that round, which the failure
//! detector is there to notice. Received messages go through a channel to `recv`. Only peers
//! with a cluster certificate are heard.
//!
//! chitchat 0.13 keeps its wire encoding private (`ChitchatEnvelope::serialize` is
//! `pub(crate)`, and so are the digest's fields), so the envelope is encoded and decoded by
//! chitchat's own public `UdpSocket`, bound to 127.0.0.1, talking to a second loopback socket
//! of ours: `send` has it encode to us, `recv` hands it the bytes to decode. Both run on the
//! gossip loop one at a time, so each datagram is the one just asked for.

use std::net::SocketAddr;
use std::sync::Mutex;

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use std::time::Duration;

use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, UdpSocket};
use tokio::sync::mpsc;

use super::transport::Transport;

/// First byte of a gossip frame (JSON requests start with `{`).
pub const GOSSIP_TAG: u8 = 0x01;

/// Gossip frames received by the endpoint's handler, with their sender's address.
pub type Inbox = mpsc::Receiver<(SocketAddr, Vec<u8>)>;

/// A gossip frame: tag, address length, address, envelope.
pub fn frame(from: SocketAddr, envelope: &[u8]) -> Vec<u8> {
    let addr = from.to_string();
    let mut out = Vec::with_capacity(2 + addr.len() + envelope.len());
    out.push(GOSSIP_TAG);
    out.push(addr.len() as u8);
    out.extend_from_slice(addr.as_bytes());
    out.extend_from_slice(envelope);
    out
}

/// The sender's address and the envelope bytes of a gossip frame.
pub fn unframe(body: &[u8]) -> Option<(SocketAddr, &[u8])> {
    let (&tag, rest) = body.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if tag != GOSSIP_TAG || rest.len() < len as usize {
        return None;
    }
    let (addr, envelope) = rest.split_at(len as usize);
    let addr = std::str::from_utf8(addr).ok()?.parse().ok()?;
    Some((addr, envelope))
}

/// chitchat's transport over the node's QUIC endpoint.
pub struct QuicGossip {
    transport: Transport,
    advertise: SocketAddr,
    inbox: Mutex<Option<Inbox>>,
}

impl QuicGossip {
    /// `inbox` is fed by the endpoint's handler; `advertise` is the address peers reach this
    /// node's endpoint at.
    pub fn new(transport: Transport, advertise: SocketAddr, inbox: Inbox) -> QuicGossip {
        QuicGossip {
            transport,
            advertise,
            inbox: Mutex::new(Some(inbox)),
        }
    }
}

#[async_trait]
impl chitchat::transport::Transport for QuicGossip {
    async fn open(&self, _listen_addr: SocketAddr) -> Result<Box<dyn Socket>> {
        let inbox = self
            .inbox
            .lock()
            .expect("inbox")
            .take()
            .ok_or_else(|| anyhow!("the gossip transport is already open"))?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let codec = UdpSocket::open(loopback).await?;
        let codec_addr = codec.local_addr()?;
        let tap = tokio::net::UdpSocket::bind(loopback).await?;
        let tap_addr = tap.local_addr()?;
        Ok(Box::new(QuicSocket {
            transport: self.transport.clone(),
            advertise: self.advertise,
            inbox,
            codec: Box::new(codec),
            codec_addr,
            tap,
            tap_addr,
            buf: vec![0; 65_536],
        }))
    }
}

struct QuicSocket {
    transport: Transport,
    advertise: SocketAddr,
    inbox: Inbox,
    /// chitchat's own UDP socket on loopback: the envelope codec.
    codec: Box<dyn Socket>,
    codec_addr: SocketAddr,
    /// Our loopback socket on the other side of the codec.
    tap: tokio::net::UdpSocket,
    tap_addr: SocketAddr,
    buf: Vec<u8>,
}

#[async_trait]
impl Socket for QuicSocket {
    fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.advertise)
    }

    async fn send(&mut self, to: SocketAddr, envelope: ChitchatEnvelope) -> Result<SendOutcome> {
        self.codec.send(self.tap_addr, envelope).await?;
        let n = tokio::time::timeout(Duration::from_secs(1), self.tap.recv(&mut self.buf))
            .await
            .map_err(|_| anyhow!("the gossip codec did not answer"))??;
        let body = frame(self.advertise, &self.buf[..n]);
        let num_bytes_sent = body.len();
        let transport = self.transport.clone();
        tokio::spawn(async move {
            if let Err(e) = transport.request(to, &body).await {
                tracing::debug!(%to, error = %format!("{e:#}"), "gossip not delivered");
            }
        });
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> Result<RecvOutcome> {
        loop {
            let (from_addr, body) = self
                .inbox
                .recv()
                .await
                .ok_or_else(|| anyhow!("the cluster endpoint closed"))?;
            let Some((_, bytes)) = unframe(&body) else {
                continue;
            };
            self.tap.send_to(bytes, self.codec_addr).await?;
            // A payload chitchat cannot decode is dropped by its socket, which then waits for
            // the next: do not wait for it.
            match tokio::time::timeout(Duration::from_millis(200), self.codec.recv()).await {
                Ok(Ok(mut out)) => {
                    out.from_addr = from_addr;
                    return Ok(out);
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => tracing::debug!(%from_addr, "unreadable gossip"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_junk_is_refused() {
        let a: SocketAddr = "10.0.0.7:7946".parse().unwrap();
        let f = frame(a, b"envelope");
        assert_eq!(unframe(&f), Some((a, &b"envelope"[..])));
        assert_eq!(unframe(b"{\"type\":\"Ping\"}"), None);
        assert_eq!(unframe(&[GOSSIP_TAG, 200, b'x']), None);
    }
}
