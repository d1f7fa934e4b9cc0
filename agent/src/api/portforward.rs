//! `kubectl port-forward`: `GET .../pods/NAME/portforward` upgraded to a WebSocket with the
//! `SPDY/3.1+portforward.k8s.io` subprotocol, as kubectl 1.30+ speaks it. Inside is a SPDY/3.1
//! session ([`super::spdy`]); for each connection it forwards, kubectl opens an error stream
//! and a data stream that share a `requestID` and name the pod's `port`. This node connects to
//! that port inside the pod's network namespace (on its loopback too, as the kubelet does),
//! copies the data stream both ways with half-closes, and writes a failure to reach the port
//! on the error stream in kubelet's words.
//!
//! The session is served by the node that runs the pod; any other node passes the upgrade
//! through to it ([`super::pods::forward_upgrade`]).

use std::collections::HashMap;
use std::path::PathBuf;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{Instrument, debug};

use super::spdy::{self, Codec, Frame, Headers};
use super::{ApiError, ApiState};
use crate::manifest::lifecycle;
use crate::node::pods::probe::Dialer;

/// The one subprotocol served.
pub const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// How much of a pod's answer one data frame carries.
const CHUNK: usize = 32 * 1024;

/// Checks a port-forward request for a pod of this node, as the upgrade would: the pod exists
/// and runs. Returns its uid.
pub async fn check(s: &ApiState, ns: &str, name: &str) -> Result<String, ApiError> {
    let pod: Pod = s
        .store
        .get(&crate::store::Key::new("Pod", ns, name))
        .await?
        .and_then(|v| lifecycle::decode(v).ok())
        .ok_or_else(|| ApiError::NotFound(format!("pods {name:?} not found")))?;
    let phase = lifecycle::pod_phase(&pod);
    if phase != "Running" {
        return Err(ApiError::BadRequest(format!(
            "unable to forward port because pod is not running. Current status={}",
            if phase.is_empty() { "Pending" } else { phase }
        )));
    }
    Ok(lifecycle::uid(&pod.metadata).to_string())
}

/// Answers a port-forward request for a pod of this node: checks it, then upgrades.
pub async fn portforward(
    s: &ApiState,
    ns: &str,
    name: &str,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let uid = check(s, ns, name).await?;
    let ws = ws.protocols([PROTOCOL]);
    if ws.selected_protocol().is_none() {
        return Err(ApiError::BadRequest(format!(
            "port-forward is served as a WebSocket with the {PROTOCOL} subprotocol (kubectl 1.30 or later)"
        )));
    }
    let target = Target {
        netns: crate::node::pods::Node::runtime_root(&s.pods.data)
            .join("sandboxes")
            .join(&uid)
            .join("net"),
        pod: format!("{ns}/{name}"),
        uid,
    };
    let span = tracing::info_span!("portforward", pod = %name, namespace = %ns);
    Ok(ws.on_upgrade(move |socket| session(socket, target).instrument(span)))
}

/// The pod a session forwards to.
struct Target {
    netns: PathBuf,
    pod: String,
    uid: String,
}

/// What the client sent on a data stream, for the pod's connection.
enum Up {
    Data(Bytes),
    /// The client is done writing.
    Fin,
}

/// The streams of one forwarded connection as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
}

/// One port-forward session on an upgraded connection.
async fn session(socket: WebSocket, target: Target) {
    let (mut tx, mut rx) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(64);
    let mut codec = Codec::default();
    let mut inbox = BytesMut::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Each forwarded connection by its data stream: where the client's bytes go, and its task.
    let mut ups: HashMap<u32, (mpsc::Sender<Up>, AbortHandle)> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut dialer: Option<Dialer> = None;
    'session: loop {
        let frame = tokio::select! {
            m = rx.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    inbox.extend_from_slice(&b);
                    None
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
            Some(f) = out_rx.recv() => Some(f),
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(data) = done {
                    ups.remove(&data);
                }
                continue;
            }
        };
        let mut replies = Vec::new();
        if let Some(f) = frame {
            replies.push(f);
        }
        loop {
            let f = match codec.decode(&mut inbox) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    debug!(error = %e, "unreadable SPDY");
                    replies.push(Frame::GoAway {
                        last_stream: 0,
                        status: 1,
                    });
                    send(&mut tx, &mut codec, replies).await;
                    break 'session;
                }
            };
            match f {
                Frame::SynStream { id, headers, .. } => {
                    replies.push(Frame::SynReply {
                        id,
                        fin: false,
                        headers: Vec::new(),
                    });
                    match stream_of(&headers) {
                        Ok((request, kind, port)) => {
                            let p = pairs.entry(request.clone()).or_default();
                            p.port = port;
                            if kind == Kind::Error {
                                p.error = Some(id);
                            } else {
                                p.data = Some(id);
                            }
                            if let Pair {
                                error: Some(error),
                                data: Some(data),
                                port,
                            } = *p
                            {
                                pairs.remove(&request);
                                let d = match &dialer {
                                    Some(d) => Ok(d.clone()),
                                    None => Dialer::new(&target.netns)
                                        .map_err(|e| format!("the pod's network namespace: {e}")),
                                };
                                if let Ok(d) = &d {
                                    dialer = Some(d.clone());
                                }
                                let (up_tx, up_rx) = mpsc::channel(16);
                                let forward = Forward {
                                    data,
                                    error,
                                    port,
                                    pod: target.pod.clone(),
                                    uid: target.uid.clone(),
                                };
                                let out = out_tx.clone();
                                let h = tasks.spawn(
                                    async move {
                                        forward.run(d, up_rx, out).await;
                                        data
                                    }
                                    .instrument(tracing::debug_span!("forward", port)),
                                );
                                ups.insert(data, (up_tx, h));
                            }
                        }
                        Err(e) => {
                            debug!(error = %e, stream = id, "refused stream");
                            replies.push(Frame::RstStream {
                                id,
                                status: spdy::PROTOCOL_ERROR,
                            });
                        }
                    }
                }
                Frame::Data { id, fin, data } => {
                    if let Some((up, _)) = ups.get(&id) {
                        // The connection may have ended already: its bytes have nowhere to go.
                        if !data.is_empty() {
                            let _ = up.send(Up::Data(data)).await;
                        }
                        if fin {
                            let _ = up.send(Up::Fin).await;
                        }
                    }
                }
                Frame::RstStream { id, .. } => {
                    if let Some((_, h)) = ups.remove(&id) {
                        h.abort();
                    }
                }
                Frame::Ping { id } => replies.push(Frame::Ping { id }),
                Frame::GoAway { .. } => {
                    send(&mut tx, &mut codec, replies).await;
                    break 'session;
                }
                Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Ignored { .. } => {}
            }
        }
        if !send(&mut tx, &mut codec, replies).await {
            break;
        }
    }
    // Dropping the tasks ends every forwarded connection.
    tasks.abort_all();
}

/// Sends frames as one WebSocket message; `false` once the client is gone.
async fn send(
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    codec: &mut Codec,
    frames: Vec<Frame>,
) -> bool {
    if frames.is_empty() {
        return true;
    }
    let mut b = BytesMut::new();
    for f in &frames {
        codec.encode(f, &mut b);
    }
    tx.send(Message::Binary(b.freeze())).await.is_ok()
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Error,
    Data,
}

/// A stream's request, kind and port, from its headers (as the kubelet reads them).
fn stream_of(h: &Headers) -> Result<(String, Kind, u16), String> {
    let kind = match spdy::header(h, "streamType") {
        Some("error") => Kind::Error,
        Some("data") => Kind::Data,
        Some(other) => return Err(format!("invalid stream type {other:?}")),
        None => return Err("streamType header is missing".into()),
    };
    let port = spdy::header(h, "port").ok_or("port header is missing")?;
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("invalid port header {port:?}")),
    };
    let request = spdy::header(h, "requestID")
        .ok_or("requestID header is missing")?
        .to_string();
    Ok((request, kind, port))
}

/// One forwarded connection.
struct Forward {
    data: u32,
    error: u32,
    port: u16,
    pod: String,
    uid: String,
}

impl Forward {
    async fn run(
        self,
        dialer: Result<Dialer, String>,
        mut up: mpsc::Receiver<Up>,
        out: mpsc::Sender<Frame>,
    ) {
        let fin = |id| Frame::Data {
            id,
            fin: true,
            data: Bytes::new(),
        };
        let addr = format!("127.0.0.1:{}", self.port);
        let conn = match dialer {
            Ok(d) => d.connect(&addr).await,
            Err(e) => Err(e),
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                let msg = format!(
                    "error forwarding port {} to pod {}, uid {}: {e}",
                    self.port, self.pod, self.uid
                );
                debug!(error = %msg, "forward failed");
                for f in [
                    Frame::Data {
                        id: self.error,
                        fin: true,
                        data: Bytes::from(msg),
                    },
                    fin(self.data),
                ] {
                    let _ = out.send(f).await;
                }
                return;
            }
        };
        let (mut r, mut w) = conn.into_split();
        let upload = async {
            while let Some(m) = up.recv().await {
                match m {
                    Up::Data(b) => {
                        if w.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                    Up::Fin => break,
                }
            }
            let _ = w.shutdown().await;
        };
        let download = async {
            let mut b = vec![0; CHUNK];
            loop {
                match r.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let f = Frame::Data {
                            id: self.data,
                            fin: false,
                            data: Bytes::copy_from_slice(&b[..n]),
                        };
                        if out.send(f).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = out.send(fin(self.data)).await;
            let _ = out.send(fin(self.error)).await;
        };
        // The pod's side ending ends the connection, whatever the client still sends.
        tokio::pin!(download);
        tokio::select! {
            _ = &mut download => {}
            _ = async { upload.await; std::future::pending::<()>().await } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn streams_are_read_as_the_kubelet_reads_them() {
        let got = stream_of(&h(&[
            ("streamtype", "data"),
            ("port", "8080"),
            ("requestid", "4"),
        ]));
        assert_eq!(got, Ok(("4".into(), Kind::Data, 8080)));
        assert_eq!(
            stream_of(&h(&[
                ("streamtype", "data"),
                ("port", "0"),
                ("requestid", "1")
            ])),
            Err("invalid port header \"0\"".into())
        );
        assert_eq!(
            stream_of(&h(&[
                ("streamtype", "video"),
                ("port", "80"),
                ("requestid", "1")
            ])),
            Err("invalid stream type \"video\"".into())
        );
        assert!(stream_of(&h(&[("streamtype", "error"), ("port", "80")])).is_err());
    }
}
