//! Events: short records of what controllers, the scheduler and nodes did to an object, shown by
//! `describe` and `get events`, and removed after [`EVENT_TTL_SECS`].

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

/// An event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// How long events are kept (Kubernetes keeps them one hour by default).
pub const EVENT_TTL_SECS: i64 = 3600;

/// The present as an event's timestamp.
pub fn now() -> Time {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Time(Timestamp::from_second(secs).unwrap_or_default())
}

/// An Event about the object `about` names, with a generated name (`NAME.` and a suffix the
/// writer adds, see [`named`]).
pub fn event(
    about: &ObjectReference,
    kind: EventKind,
    reason: &str,
    message: &str,
    now: &Time,
    component: &str,
) -> Event {
    let namespace = about.namespace.clone().unwrap_or_else(|| "default".into());
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", about.name.as_deref().unwrap_or("object"))),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            namespace: Some(namespace),
            ..about.clone()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(
            match kind {
                EventKind::Normal => "Normal",
                EventKind::Warning => "Warning",
            }
            .into(),
        ),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        count: Some(1),
        ..Default::default()
    }
}

/// The event with its name filled in from its `generateName` and `suffix`, when it has none.
pub fn named(mut e: Event, suffix: &str) -> Event {
    if e.metadata.name.as_deref().unwrap_or("").is_empty() {
        let prefix = e.metadata.generate_name.as_deref().unwrap_or("event.");
        e.metadata.name = Some(format!("{prefix}{suffix}"));
    }
    e
}

/// Whether an event is older than the TTL at `now`.
pub fn expired(ev: &Event, now: Timestamp) -> bool {
    let at = ev
        .last_timestamp
        .as_ref()
        .or(ev.metadata.creation_timestamp.as_ref());
    at.is_some_and(|t| now.as_second() - t.0.as_second() > EVENT_TTL_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_ref() -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some("web-1".into()),
            namespace: Some("shop".into()),
            uid: Some("u1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn an_event_names_its_object_and_reads_as_kubernetes_writes_it() {
        let t = Time("2026-12-03T10:00:00Z".parse().unwrap());
        let e = named(
            event(
                &pod_ref(),
                EventKind::Warning,
                "BackOff",
                "restarting",
                &t,
                "kubelet",
            ),
            "abc",
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Event");
        assert_eq!(v["metadata"]["name"], "web-1.abc");
        assert_eq!(v["metadata"]["namespace"], "shop");
        assert_eq!(v["involvedObject"]["uid"], "u1");
        assert_eq!(v["involvedObject"]["kind"], "Pod");
        assert_eq!(v["type"], "Warning");
        assert_eq!(v["source"]["component"], "kubelet");
        assert_eq!(v["lastTimestamp"], "2026-12-03T10:00:00Z");
        assert_eq!(v["count"], 1);
    }

    #[test]
    fn events_expire_after_an_hour() {
        let t = Time("2026-12-03T10:00:00Z".parse().unwrap());
        let e = event(&pod_ref(), EventKind::Normal, "Pulled", "", &t, "kubelet");
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(!expired(&e, at("2026-12-03T10:59:59Z")));
        assert!(expired(&e, at("2026-12-03T11:00:01Z")));
    }
}
