//! `kubectl exec` (and `kubectl cp`, which is tar over exec) as kubectl 1.30+ speaks it: a
//! WebSocket on `GET .../pods/NAME/exec` with the `v5.channel.k8s.io` subprotocol (or
//! `v4.channel.k8s.io`). Every binary message starts with its channel: 0 stdin, 1 stdout,
//! 2 stderr, 3 the error channel (one `Status` when the command ends, with the exit code),
//! 4 terminal resizes (`{"Width":W,"Height":H}`), and in v5 255 `[255, channel]` closes the
//! client's side of a channel (stdin's end of file). With `tty=true` the command gets a
//! pseudo-terminal of its own, sized by the resize channel.
//!
//! The session is served by the node that runs the pod; any other node passes the upgrade
//! through to it byte for byte ([`super::pods::forward_upgrade`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, warn};

use super::ApiState;
use super::error::ApiError;

/// The subprotocols served, most preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What an exec asks for (the query of the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecOptions {
    /// From the query pairs, with kube-apiserver's rules and wording for a streamed exec.
    pub fn parse(pairs: &[(String, String)]) -> Result<ExecOptions, ApiError> {
        let o = Self::from_query(pairs)?;
        if !(o.stdin || o.stdout || o.stderr) {
            return Err(ApiError::BadRequest(
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        if o.tty && o.stderr {
            return Err(ApiError::BadRequest(
                "tty and stderr cannot both be true".into(),
            ));
        }
        Ok(o)
    }

    /// The command, container and flags of the query (a command is required).
    pub fn from_query(pairs: &[(String, String)]) -> Result<ExecOptions, ApiError> {
        let flag = |k: &str| super::options::flag(pairs, k);
        let o = ExecOptions {
            command: pairs
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect(),
            container: pairs
                .iter()
                .find(|(k, _)| k == "container")
                .map(|(_, v)| v.clone()),
            stdin: flag("stdin")?,
            stdout: flag("stdout")?,
            stderr: flag("stderr")?,
            tty: flag("tty")?,
        };
        if o.command.is_empty() {
            return Err(ApiError::BadRequest(
                "command: at least one is required".into(),
            ));
        }
        Ok(o)
    }
}

/// Whether a request asks for a WebSocket (`Upgrade: websocket`).
pub fn is_websocket(headers: &axum::http::HeaderMap) -> bool {
    upgrade_is(headers, "websocket")
}

/// Whether a request asks for a SPDY/3.1 upgrade: what kubectl falls back to when a WebSocket
/// was refused.
pub fn is_spdy(headers: &axum::http::HeaderMap) -> bool {
    upgrade_is(headers, "SPDY/3.1")
}

fn upgrade_is(headers: &axum::http::HeaderMap, protocol: &str) -> bool {
    headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(protocol))
}

/// The error channel's `Status` for a command that ended with `code`, as the kubelet writes
/// it: kubectl exits with the code of a `NonZeroExitCode` failure.
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The error channel's `Status` for an exec that could not run at all.
fn failure(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
}

/// One message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    Stdin(&'a [u8]),
    /// The client closed its side of a channel (v5).
    Closed(u8),
    Resize {
        width: u16,
        height: u16,
    },
    /// A channel the client has no business writing, or a malformed message.
    Ignored,
}

/// The client's next binary message; `None` once it closed the connection or went away.
pub(super) async fn next_binary(
    stream: &mut futures::stream::SplitStream<WebSocket>,
) -> Option<axum::body::Bytes> {
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Binary(d)) => return Some(d),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    None
}

/// Reads one binary message of the channel protocol.
pub fn incoming(data: &[u8], v5: bool) -> Incoming<'_> {
    match data.split_first() {
        Some((&STDIN, rest)) => Incoming::Stdin(rest),
        Some((&CLOSE, [ch])) if v5 => Incoming::Closed(*ch),
        Some((&RESIZE, rest)) => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Size {
                width: u16,
                height: u16,
            }
            match serde_json::from_slice::<Size>(rest) {
                Ok(s) => Incoming::Resize {
                    width: s.width,
                    height: s.height,
                },
                Err(_) => Incoming::Ignored,
            }
        }
        _ => Incoming::Ignored,
    }
}

pub(super) fn frame(channel: u8, data: &[u8]) -> Message {
    let mut b = Vec::with_capacity(data.len() + 1);
    b.push(channel);
    b.extend_from_slice(data);
    Message::Binary(b.into())
}

/// The upgrade with the channel protocol chosen among those the client offers, and whether it
/// is v5 (which has the close signal).
pub(super) fn channel_protocol(ws: WebSocketUpgrade) -> Result<(WebSocketUpgrade, bool), ApiError> {
    let ws = ws.protocols(PROTOCOLS);
    let v5 = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some(p) => p == PROTOCOLS[0],
        None => {
            return Err(ApiError::BadRequest(format!(
                "none of the WebSocket subprotocols offered is served; served: {}",
                PROTOCOLS.join(", ")
            )));
        }
    };
    Ok((ws, v5))
}

/// Checks an exec request for a pod of this node, as the upgrade would: its options, and the
/// container's running instance.
pub async fn check(
    s: &ApiState,
    ns: &str,
    name: &str,
    pairs: &[(String, String)],
) -> Result<(ExecOptions, String, String), ApiError> {
    let opts = ExecOptions::parse(pairs)?;
    let (c, id) = super::pods::running_instance(s, ns, name, opts.container.as_deref()).await?;
    Ok((opts, c, id))
}

/// Answers a WebSocket exec request for a pod of this node: checks it, then upgrades.
pub async fn exec(
    s: &ApiState,
    ns: &str,
    name: &str,
    pairs: &[(String, String)],
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let (opts, c, id) = check(s, ns, name, pairs).await?;
    let (ws, v5) = channel_protocol(ws)?;
    let cmd = s
        .pods
        .runtime
        .exec_command(&id, &opts.command)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let span = tracing::info_span!("exec", pod = %name, namespace = %ns, container = %c);
    Ok(ws.on_upgrade(move |socket| session(socket, cmd, opts, v5).instrument(span)))
}

/// Where the command's input goes and its output comes from.
enum Io {
    Pipes {
        stdin: Option<tokio::process::ChildStdin>,
        stdout: Option<tokio::process::ChildStdout>,
        stderr: Option<tokio::process::ChildStderr>,
    },
    /// The master side of the command's pseudo-terminal (output and input), and its fd for
    /// resizes.
    Tty {
        read: tokio::fs::File,
        write: Option<tokio::fs::File>,
        master: OwnedFd,
    },
}

/// Starts the command with its stdio as asked: pipes, or a new pseudo-terminal.
fn start(
    cmd: std::process::Command,
    opts: &ExecOptions,
) -> Result<(tokio::process::Child, Io), String> {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(false);
    if opts.tty {
        let pty =
            nix::pty::openpty(None, None).map_err(|e| format!("allocating a terminal: {e}"))?;
        let slave = std::fs::File::from(pty.slave);
        let dup = |f: &std::fs::File| f.try_clone().map_err(|e| format!("terminal: {e}"));
        cmd.stdin(Stdio::from(dup(&slave)?))
            .stdout(Stdio::from(dup(&slave)?))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().map_err(|e| format!("starting exec: {e}"))?;
        // The slave's copies were moved into the command; ours went with `cmd`.
        drop(cmd);
        let master = std::fs::File::from(pty.master);
        let read = master.try_clone().map_err(|e| format!("terminal: {e}"))?;
        let write = master.try_clone().map_err(|e| format!("terminal: {e}"))?;
        return Ok((
            child,
            Io::Tty {
                read: tokio::fs::File::from_std(read),
                write: opts.stdin.then(|| tokio::fs::File::from_std(write)),
                master: master.into(),
            },
        ));
    }
    let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    cmd.stdin(pipe(opts.stdin))
        .stdout(pipe(opts.stdout))
        .stderr(pipe(opts.stderr));
    let mut child = cmd.spawn().map_err(|e| format!("starting exec: {e}"))?;
    let io = Io::Pipes {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
    };
    Ok((child, io))
}

/// Copies a stream of the command onto a channel until it ends.
async fn pump(mut from: impl AsyncRead + Unpin, channel: u8, to: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            // A terminal whose last slave closed reads EIO: the end, as EOF is for a pipe.
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(frame(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn resize(master: &OwnedFd, width: u16, height: u16) {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// SIGTERM to the helper (it kills the command's group and reaps it), SIGKILL to the group
/// after two seconds.
async fn stop(child: &mut tokio::process::Child) {
    let Some(pid) = child.id() else { return };
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

/// One exec session on an upgraded connection.
async fn session(socket: WebSocket, cmd: std::process::Command, opts: ExecOptions, v5: bool) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
    });
    let end = |status: Value| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(frame(ERROR, status.to_string().as_bytes())).await;
            let _ = tx
                .send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "".into(),
                })))
                .await;
        }
    };
    let (mut child, io) = match start(cmd, &opts) {
        Ok(x) => x,
        Err(e) => {
            warn!(error = %e, "exec could not start");
            end(failure(&e)).await;
            drop(tx);
            let _ = writer.await;
            return;
        }
    };
    let mut outputs = Vec::new();
    let (mut input, master): (Option<Box<dyn AsyncWrite + Unpin + Send>>, Option<OwnedFd>) =
        match io {
            Io::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                if let Some(o) = stdout {
                    outputs.push(tokio::spawn(pump(o, STDOUT, tx.clone())));
                }
                if let Some(e) = stderr {
                    outputs.push(tokio::spawn(pump(e, STDERR, tx.clone())));
                }
                (stdin.map(|w| Box::new(w) as _), None)
            }
            Io::Tty {
                read,
                write,
                master,
            } => {
                outputs.push(tokio::spawn(pump(read, STDOUT, tx.clone())));
                (write.map(|w| Box::new(w) as _), Some(master))
            }
        };
    // The client's messages, until it goes away: stdin, its end, resizes.
    let from_client = async {
        while let Some(data) = next_binary(&mut stream).await {
            match incoming(&data, v5) {
                Incoming::Stdin(bytes) => {
                    if let Some(w) = input.as_mut()
                        && (w.write_all(bytes).await.is_err() || w.flush().await.is_err())
                    {
                        input = None;
                    }
                }
                Incoming::Closed(STDIN) => {
                    if let Some(mut w) = input.take() {
                        let _ = w.shutdown().await;
                    }
                }
                Incoming::Resize { width, height } => {
                    if let Some(m) = &master {
                        resize(m, width, height);
                    }
                }
                Incoming::Closed(_) | Incoming::Ignored => {}
            }
        }
    };
    tokio::select! {
        status = child.wait() => {
            let code = match status {
                Ok(st) => {
                    use std::os::unix::process::ExitStatusExt;
                    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
                }
                Err(e) => {
                    warn!(error = %e, "waiting for exec");
                    255
                }
            };
            // Everything the command wrote goes out before its status.
            for o in outputs {
                let _ = o.await;
            }
            debug!(code, "exec ended");
            end(exit_status(&opts.command, code)).await;
        }
        () = from_client => {
            debug!("the client left; stopping the command");
            stop(&mut child).await;
            for o in outputs {
                o.abort();
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    #[test]
    fn options_follow_kube_apiserver() {
        let o = ExecOptions::parse(&pairs(
            "command=sh&command=-c&command=echo+hi&container=c&stdin=true&stdout=true&tty=true",
        ))
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert_eq!(o.container.as_deref(), Some("c"));
        assert!(o.stdin && o.stdout && o.tty && !o.stderr);
        let err = |q: &str| ExecOptions::parse(&pairs(q)).unwrap_err().to_string();
        assert!(err("stdout=true").contains("command"));
        assert!(err("command=ls").contains("at least 1 of stdin, stdout, stderr"));
        assert!(err("command=ls&stdout=true&stderr=true&tty=true").contains("tty and stderr"));
    }

    #[test]
    fn the_exit_code_travels_as_kubectl_reads_it() {
        assert_eq!(exit_status(&["true".into()], 0)["status"], "Success");
        let s = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert!(
            s["message"]
                .as_str()
                .unwrap()
                .ends_with("[sh -c exit 3], exit code 3")
        );
    }

    #[test]
    fn client_messages_by_channel() {
        assert_eq!(incoming(&[0, b'h', b'i'], true), Incoming::Stdin(b"hi"));
        assert_eq!(incoming(&[255, 0], true), Incoming::Closed(0));
        assert_eq!(
            incoming(&[255, 0], false),
            Incoming::Ignored,
            "v4 has no close signal"
        );
        let mut r = vec![4];
        r.extend_from_slice(br#"{"Width":120,"Height":40}"#);
        assert_eq!(
            incoming(&r, true),
            Incoming::Resize {
                width: 120,
                height: 40
            }
        );
        assert_eq!(incoming(&[4, b'{'], true), Incoming::Ignored);
        assert_eq!(incoming(&[1, 2], true), Incoming::Ignored);
        assert_eq!(incoming(&[], true), Incoming::Ignored);
    }
}
