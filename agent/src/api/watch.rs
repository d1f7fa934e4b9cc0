//! Watches: a stream of `{"type": ADDED|MODIFIED|DELETED, "object": ...}` lines, replayed from
//! the store's log after a revision, then live.
//!
//! Without `resourceVersion` (or with `0`), the watch starts with an ADDED event for every
//! current object, as Kubernetes does. A revision that has been compacted ends the stream with
//! an `ERROR` event carrying a 410 `Expired` status, and the client lists again.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::objects::{selected, selectors};
use super::path::ResourcePath;
use super::{ApiError, ApiState};
use crate::store::{EventType, StoreError};

const PAGE: i64 = 500;

pub async fn watch(
    s: std::sync::Arc<ApiState>,
    rp: ResourcePath,
    q: &HashMap<String, String>,
    view: Option<super::table::View>,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(q)?;
    let from: Option<i64> =
        match q.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(v) => Some(v.parse().map_err(|_| {
                ApiError::BadRequest(format!("resourceVersion {v:?} is not a number"))
            })?),
        };
    let timeout = Duration::from_secs(
        q.get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1800),
    );
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let kind = rp.info.kind;
    let ns = if rp.info.namespaced {
        rp.namespace.clone()
    } else {
        None
    };

    // Fail early (as a proper error status) when the start is already compacted.
    if let Some(rev) = from {
        let oldest = s.store.compacted().await?;
        if rev < oldest {
            return Err(StoreError::Compacted {
                requested: rev,
                oldest: oldest + 1,
            }
            .into());
        }
    }

    let span = tracing::info_span!("watch", kind, namespace = ns.as_deref().unwrap_or(""));
    tokio::spawn(
        async move {
            let send = |ev: &str, obj: &Value| {
                // For kubectl get -w: each event's object as a Table of one row (or its
                // metadata, for a metadata client).
                let obj = match view {
                    Some(v) if ev != "ERROR" => v.of_one(kind, obj.clone()),
                    _ => obj.clone(),
                };
                let mut line =
                    serde_json::to_vec(&json!({"type": ev, "object": obj})).unwrap_or_default();
                line.push(b'\n');
                tx.send(Ok(Bytes::from(line)))
            };
            let in_scope = |o: &Value| {
                ns.as_deref()
                    .is_none_or(|n| o["metadata"]["namespace"].as_str() == Some(n))
                    && selected(o, &labels, &fields)
            };
            let mut rx_rev = s.store.subscribe();
            let mut rev = match from {
                Some(r) => r,
                None => {
                    let Ok((items, r)) = s.store.list(kind, ns.as_deref()).await else {
                        return;
                    };
                    for o in items.iter().filter(|o| in_scope(o)) {
                        if send("ADDED", o).await.is_err() {
                            return;
                        }
                    }
                    r
                }
            };
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            loop {
                rx_rev.mark_unchanged();
                let changes = match s.store.changes_since(rev, Some(kind), PAGE).await {
                    Ok(c) => c,
                    Err(e) => {
                        let status = ApiError::from(e).to_status();
                        let _ = send("ERROR", &status).await;
                        return;
                    }
                };
                let full_page = changes.len() as i64 == PAGE;
                for c in changes {
                    rev = c.revision;
                    if in_scope(&c.object) {
                        let ev = match c.event {
                            EventType::Added => "ADDED",
                            EventType::Modified => "MODIFIED",
                            EventType::Deleted => "DELETED",
                        };
                        if send(ev, &c.object).await.is_err() {
                            return;
                        }
                    }
                }
                if full_page {
                    continue;
                }
                if *rx_rev.borrow() > rev {
                    continue;
                }
                tokio::select! {
                    r = rx_rev.changed() => if r.is_err() { return },
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                }
            }
        }
        .instrument(span),
    );
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("static headers are valid"))
}
