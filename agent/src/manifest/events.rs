//! Events: short records of what controllers, the scheduler and nodes did to an object, shown by
//! `describe` and `get events`, and removed after [`EVENT_TTL_SECS`].

use serde_json::{Value, json};

/// An event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// How long events are kept (Kubernetes keeps them one hour by default).
pub const EVENT_TTL_SECS: i64 = 3600;

/// An Event object about `about`, to be created with a generated name.
pub fn event(
    about: &Value,
    kind: EventKind,
    reason: &str,
    message: &str,
    now: &str,
    component: &str,
) -> Value {
    let ns = about["metadata"]["namespace"].as_str().unwrap_or("default");
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": format!("{}.", about["metadata"]["name"].as_str().unwrap_or("object")),
            "namespace": ns,
        },
        "involvedObject": {
            "apiVersion": about["apiVersion"],
            "kind": about["kind"],
            "name": about["metadata"]["name"],
            "namespace": ns,
            "uid": about["metadata"]["uid"],
        },
        "reason": reason,
        "message": message,
        "type": match kind { EventKind::Normal => "Normal", EventKind::Warning => "Warning" },
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    })
}

/// Whether an event is older than the TTL at `now`.
pub fn expired(ev: &Value, now: chrono::DateTime<chrono::Utc>) -> bool {
    let ts = ev["lastTimestamp"]
        .as_str()
        .or(ev["metadata"]["creationTimestamp"].as_str());
    ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds() > EVENT_TTL_SECS)
}
