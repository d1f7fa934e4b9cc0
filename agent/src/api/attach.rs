//! `kubectl attach`: a WebSocket on `GET .../pods/NAME/attach` with the channel protocol of
//! exec (`v5.channel.k8s.io` or `v4`, see [`super::exec`]), joined to the container's own
//! process instead of a new one: what it writes from now on comes on the stdout and stderr
//! channels (read from its log as it grows, so attaching takes nothing from `kubectl logs`),
//! and with `stdin=true` the client's input reaches its stdin through the socket its shim
//! holds for a container started with `stdin: true`. The session ends, with a `Success`
//! status, when the container ends; a client that leaves leaves the container running and its
//! stdin open (Kubernetes' `stdinOnce: false`).
//!
//! The session is served by the node that runs the pod; any other node passes the upgrade
//! through to it byte for byte ([`super::pods::forward_upgrade`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use flotilla_runtime::container::{ContainerStatus, Runtime};
use flotilla_runtime::logs::Follower;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tracing::{Instrument, debug};

use super::exec::{Incoming, channel_protocol, frame, incoming, next_binary};
use super::{ApiError, ApiState};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;

/// How often the container's log is read for new output.
const POLL: Duration = Duration::from_millis(100);

/// What an attach asks for (the query of the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOptions {
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl AttachOptions {
    /// From the query pairs, with kube-apiserver's rules and wording.
    pub fn parse(pairs: &[(String, String)]) -> Result<AttachOptions, ApiError> {
        let flag = |k: &str| super::options::flag(pairs, k);
        let o = AttachOptions {
            container: pairs
                .iter()
                .find(|(k, _)| k == "container")
                .map(|(_, v)| v.clone()),
            stdin: flag("stdin")?,
            stdout: flag("stdout")?,
            stderr: flag("stderr")?,
        };
        if !(o.stdin || o.stdout || o.stderr) {
            return Err(ApiError::BadRequest(
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        if flag("tty")? {
            return Err(ApiError::BadRequest(
                "tty: the container has no terminal (tty: true is not supported)".into(),
            ));
        }
        Ok(o)
    }
}

/// An attach request found good: its options, the container, its running instance and the
/// socket to its stdin (when asked for).
pub struct Checked {
    opts: AttachOptions,
    container: String,
    id: String,
    stdin: Option<std::path::PathBuf>,
}

/// Checks an attach request for a pod of this node, as the upgrade would.
pub async fn check(
    s: &ApiState,
    ns: &str,
    name: &str,
    pairs: &[(String, String)],
) -> Result<Checked, ApiError> {
    let opts = AttachOptions::parse(pairs)?;
    let (container, id) =
        super::pods::running_instance(s, ns, name, opts.container.as_deref()).await?;
    let stdin = if opts.stdin {
        Some(s.pods.runtime.attach_socket(&id).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "container {container} in pod {name} was not started with stdin: true, so it has no stdin to attach to"
            ))
        })?)
    } else {
        None
    };
    Ok(Checked {
        opts,
        container,
        id,
        stdin,
    })
}

/// Answers a WebSocket attach request for a pod of this node: checks it, then upgrades.
pub async fn attach(
    s: &ApiState,
    ns: &str,
    name: &str,
    pairs: &[(String, String)],
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Checked {
        opts,
        container: c,
        id,
        stdin,
    } = check(s, ns, name, pairs).await?;
    let rt = s.pods.runtime.clone();
    let (ws, v5) = channel_protocol(ws)?;
    // Output from the moment of the request on.
    let follower = rt
        .follow_logs(&id)
        .map_err(|e| ApiError::Internal(format!("following the container's output: {e}")))?;
    let span = tracing::info_span!("attach", pod = %name, namespace = %ns, container = %c);
    Ok(ws.on_upgrade(move |socket| {
        session(socket, rt, id, follower, stdin, opts, v5).instrument(span)
    }))
}

/// One attach session on an upgraded connection.
async fn session(
    socket: WebSocket,
    rt: Arc<Runtime>,
    id: String,
    mut follower: Follower,
    stdin: Option<std::path::PathBuf>,
    opts: AttachOptions,
    v5: bool,
) {
    let (mut sink, mut stream) = socket.split();
    let mut input = match &stdin {
        Some(p) => match tokio::net::UnixStream::connect(p).await {
            Ok(c) => Some(c),
            Err(e) => {
                debug!(error = %e, "the container's stdin is gone");
                None
            }
        },
        None => None,
    };
    // The container's output as it is written, until it ends.
    let output = async {
        loop {
            let running = matches!(
                rt.status(&id),
                Ok(ContainerStatus::Running { .. } | ContainerStatus::Starting)
            );
            for r in follower.poll().unwrap_or_default() {
                let channel = if r.stream == "stderr" { STDERR } else { STDOUT };
                if (channel == STDOUT && !opts.stdout) || (channel == STDERR && !opts.stderr) {
                    continue;
                }
                let mut b = r.content.into_bytes();
                if !r.partial {
                    b.push(b'\n');
                }
                if sink.send(frame(channel, &b)).await.is_err() {
                    return false;
                }
            }
            if !running {
                return true;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    // The client's messages, until it goes away: stdin and its end.
    let from_client = async {
        while let Some(data) = next_binary(&mut stream).await {
            match incoming(&data, v5) {
                Incoming::Stdin(bytes) => {
                    if let Some(w) = input.as_mut()
                        && w.write_all(bytes).await.is_err()
                    {
                        input = None;
                    }
                }
                // The client's input ended: this client hangs up on stdin, which stays open
                // for the container.
                Incoming::Closed(STDIN) => input = None,
                Incoming::Resize { .. } | Incoming::Closed(_) | Incoming::Ignored => {}
            }
        }
    };
    let ended = tokio::select! {
        ended = output => ended,
        () = from_client => false,
    };
    if ended {
        debug!("the container ended");
        let status = json!({"metadata": {}, "status": "Success"});
        let _ = sink.send(frame(ERROR, status.to_string().as_bytes())).await;
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    #[test]
    fn options_follow_kube_apiserver() {
        let o = AttachOptions::parse(&pairs("container=app&stdin=true&stdout=true")).unwrap();
        assert_eq!(
            o,
            AttachOptions {
                container: Some("app".into()),
                stdin: true,
                stdout: true,
                stderr: false
            }
        );
        let e = AttachOptions::parse(&pairs("container=app")).unwrap_err();
        assert!(
            e.to_string()
                .contains("at least 1 of stdin, stdout, stderr"),
            "{e}"
        );
        let e = AttachOptions::parse(&pairs("stdout=true&tty=true")).unwrap_err();
        assert!(e.to_string().contains("no terminal"), "{e}");
    }
}
