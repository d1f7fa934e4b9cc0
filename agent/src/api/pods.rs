//! A pod's logs and exec, at Kubernetes' paths: `GET .../pods/NAME/log` (text, streamed with
//! `follow=true`) and `POST .../pods/NAME/exec?command=...` (buffered: the answer carries the
//! exit code and both streams, base64; stdin is the request body when `stdin=true`). Only the
//! node running the pod answers them until the cluster issue forwards them.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;

use super::error::ApiError;
use super::{ApiState, read_body};
use crate::manifest::lifecycle;
use crate::node::pods::pick_instance;
use k8s_openapi::api::core::v1::{Node, Pod};

/// A stored pod, typed.
async fn pod_of(s: &ApiState, ns: &str, name: &str) -> Result<Option<Pod>, ApiError> {
    match s
        .store
        .get(&crate::store::Key::new("Pod", ns, name))
        .await?
    {
        Some(v) => lifecycle::decode(v)
            .map(Some)
            .map_err(|e| ApiError::Internal(format!("stored pod {ns}/{name} unreadable: {e}"))),
        None => Ok(None),
    }
}

/// The node a pod is bound to, when it is another node than this one.
pub async fn elsewhere(s: &ApiState, ns: &str, name: &str) -> Result<Option<String>, ApiError> {
    Ok(pod_of(s, ns, name)
        .await?
        .and_then(|p| lifecycle::pod_node(&p).map(String::from))
        .filter(|n| !n.is_empty() && n != &*s.node))
}

/// The URL of `uri` on the API of `node` (its InternalIP and the port it publishes).
pub(crate) async fn peer_url(
    s: &ApiState,
    node: &str,
    uri: &axum::http::Uri,
) -> Result<String, ApiError> {
    let n: Node = s
        .store
        .get(&crate::store::Key::new("Node", "", node))
        .await?
        .and_then(|v| lifecycle::decode(v).ok())
        .ok_or_else(|| ApiError::NotFound(format!("node {node:?} not found")))?;
    let status = n.status.unwrap_or_default();
    let ip = status
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .ok_or_else(|| ApiError::Internal(format!("node {node:?} has no InternalIP")))?;
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .ok_or_else(|| {
            ApiError::Internal(format!("node {node:?} has not published its API port"))
        })?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Ok(format!("https://{ip}:{port}{path}"))
}

pub(crate) fn peers(s: &ApiState) -> Result<&reqwest::Client, ApiError> {
    s.peers
        .as_ref()
        .ok_or_else(|| ApiError::Internal("this node cannot reach other nodes' APIs".into()))
}

/// Sends a logs or exec request on to the API of the node that runs the pod, and streams its
/// answer back (the CLI can talk to any node).
pub async fn forward(
    s: &ApiState,
    node: &str,
    method: axum::http::Method,
    uri: &axum::http::Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let url = peer_url(s, node, uri).await?;
    let resp = peers(s)?
        .request(method, &url)
        .bearer_auth(&*s.token)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await
        .map_err(|e| ApiError::Internal(format!("node {node:?} ({url}) is unreachable: {e}")))?;
    Ok(passed_back(resp))
}

/// An answer of another node, as this node's answer.
fn passed_back(resp: reqwest::Response) -> Response {
    let status = axum::http::StatusCode::from_u16(resp.status().as_u16())
        .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    (
        status,
        [(axum::http::header::CONTENT_TYPE, ctype)],
        Body::from_stream(resp.bytes_stream()),
    )
        .into_response()
}

/// Passes a connection upgrade (a WebSocket exec) through to the node that runs the pod: the
/// request goes there with its handshake headers, that node's `101 Switching Protocols`
/// comes back to the client, and the two upgraded connections are joined byte for byte. The
/// session itself is the other node's; this one only carries it.
pub async fn forward_upgrade(
    s: &ApiState,
    node: &str,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    client: hyper::upgrade::OnUpgrade,
) -> Result<Response, ApiError> {
    use axum::http::header;
    let url = peer_url(s, node, uri).await?;
    let mut req = peers(s)?.get(&url).bearer_auth(&*s.token);
    for h in [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_PROTOCOL,
    ] {
        if let Some(v) = headers.get(&h) {
            req = req.header(h.as_str(), v.as_bytes());
        }
    }
    let resp = req
        .send()
        .await
        .map_err(|e| ApiError::Internal(format!("node {node:?} ({url}) is unreachable: {e}")))?;
    if resp.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
        return Ok(passed_back(resp));
    }
    let mut answer = Response::builder().status(axum::http::StatusCode::SWITCHING_PROTOCOLS);
    for h in [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_ACCEPT,
        header::SEC_WEBSOCKET_PROTOCOL,
    ] {
        if let Some(v) = resp.headers().get(h.as_str()) {
            answer = answer.header(h, v.as_bytes());
        }
    }
    let node = node.to_string();
    tokio::spawn(
        async move {
            let theirs = resp.upgrade().await;
            let ours = client.await;
            match (theirs, ours) {
                (Ok(mut theirs), Ok(ours)) => {
                    let mut ours = hyper_util::rt::TokioIo::new(ours);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut ours, &mut theirs).await {
                        tracing::debug!(error = %e, "forwarded stream ended");
                    }
                }
                (Err(e), _) => tracing::warn!(error = %e, "the pod's node did not upgrade"),
                (_, Err(e)) => tracing::warn!(error = %e, "the client did not upgrade"),
            }
        }
        .instrument(tracing::info_span!("forward_upgrade", to = %node)),
    );
    answer
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(format!("building the upgrade answer: {e}")))
}

/// The container asked for (or the pod's only one) and the id of its running instance, for an
/// exec.
pub(super) async fn running_instance(
    s: &ApiState,
    ns: &str,
    name: &str,
    container: Option<&str>,
) -> Result<(String, String), ApiError> {
    let (_, uid, c) = locate(s, ns, name, container).await?;
    let id = pick_instance(&s.pods.instances(&uid, &c), false).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "container {c:?} in pod {name:?} is waiting to start"
        ))
    })?;
    Ok((c, id))
}

/// The pod, its uid and the container asked for (or its only one).
async fn locate(
    s: &ApiState,
    ns: &str,
    name: &str,
    container: Option<&str>,
) -> Result<(Pod, String, String), ApiError> {
    let pod = pod_of(s, ns, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("pods {name:?} not found")))?;
    let node = lifecycle::pod_node(&pod).unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {name:?} is not scheduled to a node yet"
        )));
    }
    if node != &*s.node {
        return Err(ApiError::BadRequest(format!(
            "pod {name:?} runs on node {node:?}"
        )));
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let apps: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
    let inits = spec.init_containers.iter().flatten().map(|c| &c.name);
    let c = match container {
        Some(c) if apps.iter().chain(inits).any(|n| n == c) => c.to_string(),
        Some(c) => {
            return Err(ApiError::BadRequest(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if apps.len() == 1 => apps[0].clone(),
        None => {
            return Err(ApiError::BadRequest(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                apps.join(" ")
            )));
        }
    };
    let uid = lifecycle::uid(&pod.metadata).to_string();
    Ok((pod, uid, c))
}

fn flag(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k)
        .is_some_and(|v| super::options::parse_bool(v) == Some(true))
}

pub async fn logs(
    s: &ApiState,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let (_, uid, c) = locate(s, ns, name, q.get("container").map(String::as_str)).await?;
    let previous = flag(q, "previous");
    let instances = s.pods.instances(&uid, &c);
    let id = pick_instance(&instances, previous).ok_or_else(|| {
        ApiError::BadRequest(if previous {
            format!("previous terminated container {c:?} in pod {name:?} not found")
        } else {
            format!("container {c:?} in pod {name:?} is waiting to start")
        })
    })?;
    let tail = match q.get("tailLines") {
        Some(t) => Some(t.parse::<usize>().map_err(|_| {
            ApiError::BadRequest(format!("tailLines: {t:?} is not a non-negative number"))
        })?),
        None => None,
    };
    let since = log_since(q)?;
    let mut budget = match q.get("limitBytes") {
        Some(n) => Some(n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::BadRequest(format!("limitBytes: {n:?} must be a number above 0"))
        })?),
        None => None,
    };
    let timestamps = flag(q, "timestamps");
    let render = move |recs: Vec<flotilla_runtime::logs::Record>| -> Vec<u8> {
        let mut out = Vec::new();
        for r in recs {
            if timestamps {
                out.extend_from_slice(r.time.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(r.content.as_bytes());
            if !r.partial {
                out.push(b'\n');
            }
        }
        out
    };
    let rt = s.pods.runtime.clone();
    let (rt2, id2) = (rt.clone(), id.clone());
    let (first, follower) = tokio::task::spawn_blocking(move || {
        // The follower starts where the read ends, so no line is lost or shown twice.
        let follower = rt2.follow_logs(&id2);
        // With a start time every record is read, and the tail taken of those after it.
        let read_tail = if since.is_some() { None } else { tail };
        (rt2.logs(&id2, read_tail), follower)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let first = first.map_err(|e| ApiError::Internal(e.to_string()))?;
    let head = limit_bytes(render(select_records(first, since, tail)), &mut budget);
    if !flag(q, "follow") || previous || budget == Some(0) {
        return Ok(([("content-type", "text/plain")], head).into_response());
    }
    let mut follower = follower.map_err(|e| ApiError::Internal(e.to_string()))?;
    let stream = async_stream(head, move || {
        let recs = follower.poll().unwrap_or_default();
        let running = matches!(
            rt.status(&id),
            Ok(flotilla_runtime::container::ContainerStatus::Running { .. }
                | flotilla_runtime::container::ContainerStatus::Starting)
        );
        let out = limit_bytes(render(recs), &mut budget);
        // The limit reached ends the stream, as the container's end does.
        (out, running && budget != Some(0))
    });
    Ok(([("content-type", "text/plain")], Body::from_stream(stream)).into_response())
}

/// Where a log starts: `sinceSeconds` before now, or `sinceTime` (at most one of them).
fn log_since(
    q: &HashMap<String, String>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    match (q.get("sinceSeconds"), q.get("sinceTime")) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "at most one of sinceTime or sinceSeconds may be specified".into(),
        )),
        (Some(s), None) => {
            let n = s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::BadRequest(format!("sinceSeconds: {s:?} must be a number above 0"))
            })?;
            Ok(Some(chrono::Utc::now() - chrono::Duration::seconds(n)))
        }
        (None, Some(t)) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| Some(t.with_timezone(&chrono::Utc)))
            .map_err(|_| ApiError::BadRequest(format!("sinceTime: {t:?} is not an RFC 3339 time"))),
        (None, None) => Ok(None),
    }
}

/// The records at or after `since`, then the last `tail` of them (as the kubelet: the start
/// time first, then the tail). A record whose time cannot be read is kept.
pub fn select_records(
    recs: Vec<flotilla_runtime::logs::Record>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    tail: Option<usize>,
) -> Vec<flotilla_runtime::logs::Record> {
    let mut recs: Vec<_> = match since {
        Some(t) => recs
            .into_iter()
            .filter(|r| chrono::DateTime::parse_from_rfc3339(&r.time).map_or(true, |rt| rt >= t))
            .collect(),
        None => recs,
    };
    if let Some(n) = tail
        && recs.len() > n
    {
        recs.drain(..recs.len() - n);
    }
    recs
}

/// `bytes` cut to what is left of `budget` (`limitBytes`), which it uses up.
fn limit_bytes(mut bytes: Vec<u8>, budget: &mut Option<usize>) -> Vec<u8> {
    if let Some(left) = budget {
        bytes.truncate(*left);
        *left -= bytes.len();
    }
    bytes
}

/// A body that sends `head`, then whatever `poll` returns every 200 ms until it says the
/// container stopped (and one last poll found nothing new).
fn async_stream(
    head: Vec<u8>,
    mut poll: impl FnMut() -> (Vec<u8>, bool) + Send + 'static,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    tokio::spawn(async move {
        if !head.is_empty() && tx.send(Ok(head)).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (bytes, running) = poll();
            if !bytes.is_empty() && tx.send(Ok(bytes)).await.is_err() {
                return;
            }
            if tx.is_closed() {
                return;
            }
            if !running {
                let (last, _) = poll();
                if !last.is_empty() {
                    let _ = tx.send(Ok(last)).await;
                }
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

pub async fn exec(
    s: &ApiState,
    ns: &str,
    name: &str,
    raw_query: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw_query)
        .map_err(|e| ApiError::BadRequest(format!("query: {e}")))?;
    let opts = super::exec::ExecOptions::from_query(&pairs)?;
    let command = opts.command;
    if opts.tty {
        return Err(ApiError::BadRequest(
            "tty: a terminal needs the streaming protocol (a WebSocket with v5.channel.k8s.io, as kubectl exec -t speaks it)".into(),
        ));
    }
    let (c, id) = running_instance(s, ns, name, opts.container.as_deref()).await?;
    let stdin = if opts.stdin {
        Some(read_body(body).await?)
    } else {
        None
    };
    let cmd = s
        .pods
        .runtime
        .exec_command(&id, &command)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(if stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    })
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| ApiError::Internal(format!("starting exec: {e}")))?;
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = w.write_all(&data).await;
        });
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut so, mut se) = (child.stdout.take(), child.stderr.take());
    let read_out = async {
        if let Some(s) = so.as_mut() {
            let _ = s.read_to_end(&mut out).await;
        }
    };
    let read_err = async {
        if let Some(s) = se.as_mut() {
            let _ = s.read_to_end(&mut err).await;
        }
    };
    tokio::join!(read_out, read_err);
    let status = child
        .wait()
        .await
        .map_err(|e| ApiError::Internal(format!("waiting for exec: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(Json(json!({
        "kind": "ExecResult",
        "apiVersion": "flotilla.io/v1",
        "container": c,
        "exitCode": code,
        "stdout": b64.encode(&out),
        "stderr": b64.encode(&err),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_runtime::logs::Record;

    fn rec(time: &str, content: &str) -> Record {
        Record {
            time: time.into(),
            stream: "stdout".into(),
            partial: false,
            content: content.into(),
        }
    }

    #[test]
    fn since_then_tail_then_bytes() {
        let recs = vec![
            rec("2026-12-01T10:00:00.000000001Z", "a"),
            rec("2026-12-01T10:00:05.5Z", "b"),
            rec("2026-12-01T10:00:09Z", "c"),
            rec("2026-12-01T10:00:10Z", "d"),
        ];
        let t = |s: &str| Some(chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc());
        let names = |v: Vec<Record>| v.into_iter().map(|r| r.content).collect::<Vec<_>>();
        assert_eq!(
            names(select_records(
                recs.clone(),
                t("2026-12-01T10:00:05Z"),
                None
            )),
            ["b", "c", "d"]
        );
        assert_eq!(
            names(select_records(
                recs.clone(),
                t("2026-12-01T10:00:05Z"),
                Some(2)
            )),
            ["c", "d"]
        );
        assert_eq!(names(select_records(recs.clone(), None, Some(1))), ["d"]);
        assert_eq!(names(select_records(recs, None, None)).len(), 4);
        let mut budget = Some(5);
        assert_eq!(limit_bytes(b"abc\n".to_vec(), &mut budget), b"abc\n");
        assert_eq!(limit_bytes(b"def\n".to_vec(), &mut budget), b"d");
        assert_eq!(budget, Some(0));
        assert_eq!(limit_bytes(b"more".to_vec(), &mut budget), b"");
        let q = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert!(log_since(&q("sinceSeconds", "0")).is_err());
        assert!(log_since(&q("sinceTime", "yesterday")).is_err());
        assert!(log_since(&q("sinceSeconds", "60")).unwrap().is_some());
    }
}
