//! kubectl-style tables: columns per kind, rows from objects read as their k8s-openapi types.
//! Pure functions of data.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricSpec, MetricStatus};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Node, Pod, PodStatus, PodTemplateSpec, ReplicationController,
    Secret, Service, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Deserialize;
use serde_json::Value;

use crate::manifest::lifecycle::items;

/// Column headers for a kind (`wide` adds kubectl's `-o wide` columns).
pub fn headers(kind: &str, wide: bool) -> Vec<&'static str> {
    let mut h = match kind {
        "Pod" => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "Deployment" => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "ReplicaSet" | "ReplicationController" => {
            vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
        }
        "DaemonSet" => vec![
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE",
        ],
        "Job" => vec!["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "CronJob" => vec![
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE",
        ],
        "Service" => vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ],
        "ConfigMap" => vec!["NAME", "DATA", "AGE"],
        "Secret" => vec!["NAME", "TYPE", "DATA", "AGE"],
        "Namespace" => vec!["NAME", "STATUS", "AGE"],
        "Node" => vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "Event" => vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "HorizontalPodAutoscaler" => vec![
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE",
        ],
        _ => vec!["NAME", "AGE"],
    };
    if wide {
        h.extend(match kind {
            "Pod" => vec!["IP", "NODE"],
            "Deployment" | "ReplicaSet" | "ReplicationController" | "CronJob" => {
                vec!["CONTAINERS", "IMAGES", "SELECTOR"]
            }
            "Service" => vec!["SELECTOR"],
            "Node" => vec!["INTERNAL-IP", "CONTAINER-RUNTIME"],
            _ => vec![],
        });
    }
    h
}

/// kubectl's short ages: `45s`, `3m20s`, `2h`, `5d`.
pub fn age(t: Option<&Time>, now: DateTime<Utc>) -> String {
    let Some(t) = t.and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0)) else {
        return "<unknown>".into();
    };
    let secs = (now - t).num_seconds().max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match () {
        _ if secs < 120 => format!("{secs}s"),
        _ if m < 10 => format!("{m}m{}s", secs % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if d < 2 => format!("{h}h"),
        _ if d < 8 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

/// What `get pods` prints as STATUS, following kubectl's rules.
pub fn pod_status(p: &Pod) -> String {
    if p.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let none = PodStatus::default();
    let st = p.status.as_ref().unwrap_or(&none);
    let mut reason = st
        .reason
        .clone()
        .or_else(|| st.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    let total = p
        .spec
        .as_ref()
        .map_or(0, |s| items(&s.init_containers).len());
    for (i, c) in items(&st.init_container_statuses).iter().enumerate() {
        let terminated = c.state.as_ref().and_then(|s| s.terminated.as_ref());
        if terminated.is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
        if let Some(r) = terminated
            .and_then(|t| t.reason.as_deref())
            .or(waiting.and_then(|w| w.reason.as_deref()))
            && r != "PodInitializing"
        {
            return format!("Init:{r}");
        }
        return format!("Init:{i}/{total}");
    }
    for c in items(&st.container_statuses) {
        let state = c.state.as_ref();
        if let Some(r) = state.and_then(|s| s.waiting.as_ref()?.reason.clone()) {
            reason = r;
        } else if let Some(r) = state.and_then(|s| s.terminated.as_ref()?.reason.clone()) {
            reason = r;
        }
    }
    reason
}

fn ports(svc: &ServiceSpec) -> String {
    let ps: Vec<String> = items(&svc.ports)
        .iter()
        .map(|p| {
            let proto = p.protocol.as_deref().unwrap_or("");
            match p.node_port {
                Some(np) => format!("{}:{np}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    if ps.is_empty() {
        "<none>".into()
    } else {
        ps.join(",")
    }
}

fn map_str(m: Option<&BTreeMap<String, String>>) -> String {
    let parts: Vec<String> = m
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn containers_images(t: &PodTemplateSpec) -> (String, String) {
    let cs = t
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    (
        cs.iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        cs.iter()
            .map(|c| c.image.as_deref().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn node_ready(n: &Node) -> String {
    let ready = n
        .status
        .as_ref()
        .map(|s| items(&s.conditions))
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let mut st = if ready { "Ready" } else { "NotReady" }.to_string();
    if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        st.push_str(",SchedulingDisabled");
    }
    st
}

/// A ReplicaSet's or ReplicationController's row: NAME DESIRED CURRENT READY AGE, and wide
/// CONTAINERS IMAGES SELECTOR.
fn set_row(
    meta: &ObjectMeta,
    (desired, current, ready): (Option<i32>, i32, Option<i32>),
    template: Option<&PodTemplateSpec>,
    selector: Option<&BTreeMap<String, String>>,
    now: DateTime<Utc>,
    wide: bool,
) -> Vec<String> {
    let mut r = vec![
        name(meta),
        int(desired),
        current.to_string(),
        int(ready),
        age(meta.creation_timestamp.as_ref(), now),
    ];
    if wide {
        let (c, i) = template.map(containers_images).unwrap_or_default();
        r.extend([c, i, map_str(selector)]);
    }
    r
}

fn int(v: Option<i32>) -> String {
    v.unwrap_or(0).to_string()
}

/// One table row for an object (stored JSON, read as its kind's type). An object that does
/// not read as its kind (none should: the store holds what passed the schema) shows its name
/// and age, with the other columns empty.
pub fn row(kind: &str, o: &Value, now: DateTime<Utc>, wide: bool) -> Vec<String> {
    let typed = match kind {
        "Pod" => read(o, |p: Pod| pod_row(&p, now, wide)),
        "Deployment" => read(o, |d: Deployment| {
            let (spec, st) = (d.spec.unwrap_or_default(), d.status.unwrap_or_default());
            let mut r = vec![
                name(&d.metadata),
                format!("{}/{}", int(st.ready_replicas), int(spec.replicas)),
                int(st.updated_replicas),
                int(st.available_replicas),
                age(d.metadata.creation_timestamp.as_ref(), now),
            ];
            if wide {
                let (c, i) = containers_images(&spec.template);
                r.extend([c, i, map_str(spec.selector.match_labels.as_ref())]);
            }
            r
        }),
        "ReplicaSet" => read(o, |rs: ReplicaSet| {
            let (spec, st) = (rs.spec.unwrap_or_default(), rs.status.unwrap_or_default());
            let counts = (spec.replicas, st.replicas, st.ready_replicas);
            let selector = spec.selector.match_labels.as_ref();
            set_row(
                &rs.metadata,
                counts,
                spec.template.as_ref(),
                selector,
                now,
                wide,
            )
        }),
        "DaemonSet" => read(o, |ds: DaemonSet| {
            let (spec, st) = (ds.spec.unwrap_or_default(), ds.status.unwrap_or_default());
            vec![
                name(&ds.metadata),
                st.desired_number_scheduled.to_string(),
                st.current_number_scheduled.to_string(),
                st.number_ready.to_string(),
                int(st.updated_number_scheduled),
                int(st.number_available),
                map_str(
                    spec.template
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_selector.as_ref()),
                ),
                age(ds.metadata.creation_timestamp.as_ref(), now),
            ]
        }),
        "Job" => read(o, |j: Job| {
            let st = j.status.unwrap_or_default();
            let has = |t: &str| {
                items(&st.conditions)
                    .iter()
                    .any(|c| c.type_ == t && c.status == "True")
            };
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if j.metadata.deletion_timestamp.is_some() {
                "Terminating"
            } else if has("Suspended") {
                "Suspended"
            } else {
                "Running"
            };
            let duration = match (&st.start_time, &st.completion_time) {
                (Some(start), Some(end)) => {
                    let end = DateTime::from_timestamp(end.0.as_second(), 0).unwrap_or(now);
                    age(Some(start), end)
                }
                (Some(start), None) => age(Some(start), now),
                _ => String::new(),
            };
            vec![
                name(&j.metadata),
                status.into(),
                format!(
                    "{}/{}",
                    int(st.succeeded),
                    int(j.spec.and_then(|s| s.completions))
                ),
                duration,
                age(j.metadata.creation_timestamp.as_ref(), now),
            ]
        }),
        "ReplicationController" => read(o, |rc: ReplicationController| {
            let (spec, st) = (rc.spec.unwrap_or_default(), rc.status.unwrap_or_default());
            let counts = (spec.replicas, st.replicas, st.ready_replicas);
            let selector = spec.selector.as_ref();
            set_row(
                &rc.metadata,
                counts,
                spec.template.as_ref(),
                selector,
                now,
                wide,
            )
        }),
        "CronJob" => read(o, |cj: CronJob| {
            let (spec, st) = (cj.spec.unwrap_or_default(), cj.status.unwrap_or_default());
            let last = match &st.last_schedule_time {
                Some(t) => age(Some(t), now),
                None => "<none>".into(),
            };
            let mut r = vec![
                name(&cj.metadata),
                spec.schedule.clone(),
                spec.time_zone.clone().unwrap_or_else(|| "<none>".into()),
                if spec.suspend == Some(true) {
                    "True"
                } else {
                    "False"
                }
                .into(),
                items(&st.active).len().to_string(),
                last,
                age(cj.metadata.creation_timestamp.as_ref(), now),
            ];
            if wide {
                let job = spec.job_template.spec.unwrap_or_default();
                let (c, i) = containers_images(&job.template);
                let selector = job.selector.and_then(|s| s.match_labels);
                r.extend([c, i, map_str(selector.as_ref())]);
            }
            r
        }),
        "Service" => read(o, |svc: Service| {
            let spec = svc.spec.unwrap_or_default();
            let mut r = vec![
                name(&svc.metadata),
                spec.type_.clone().unwrap_or_default(),
                spec.cluster_ip
                    .clone()
                    .unwrap_or_else(|| "<pending>".into()),
                "<none>".into(),
                ports(&spec),
                age(svc.metadata.creation_timestamp.as_ref(), now),
            ];
            if wide {
                r.push(map_str(spec.selector.as_ref()));
            }
            r
        }),
        "ConfigMap" => read(o, |cm: ConfigMap| {
            let count = cm.data.as_ref().map_or(0, |m| m.len())
                + cm.binary_data.as_ref().map_or(0, |m| m.len());
            vec![
                name(&cm.metadata),
                count.to_string(),
                age(cm.metadata.creation_timestamp.as_ref(), now),
            ]
        }),
        "Secret" => read(o, |sec: Secret| {
            vec![
                name(&sec.metadata),
                sec.type_.clone().unwrap_or_default(),
                sec.data.as_ref().map_or(0, |m| m.len()).to_string(),
                age(sec.metadata.creation_timestamp.as_ref(), now),
            ]
        }),
        "Namespace" => read(o, |ns: Namespace| {
            let phase = if ns.metadata.deletion_timestamp.is_none() {
                "Active"
            } else {
                "Terminating"
            };
            vec![
                name(&ns.metadata),
                phase.into(),
                age(ns.metadata.creation_timestamp.as_ref(), now),
            ]
        }),
        "Node" => read(o, |n: Node| {
            let roles: Vec<&str> = n
                .metadata
                .labels
                .iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .collect();
            let info = n.status.as_ref().and_then(|s| s.node_info.clone());
            let mut r = vec![
                name(&n.metadata),
                node_ready(&n),
                if roles.is_empty() {
                    "<none>".into()
                } else {
                    roles.join(",")
                },
                age(n.metadata.creation_timestamp.as_ref(), now),
                info.as_ref()
                    .map(|i| i.kubelet_version.clone())
                    .unwrap_or_default(),
            ];
            if wide {
                let ip = n
                    .status
                    .as_ref()
                    .map(|s| items(&s.addresses))
                    .unwrap_or_default()
                    .iter()
                    .find(|a| a.type_ == "InternalIP")
                    .map(|a| a.address.clone())
                    .unwrap_or_else(|| "<none>".into());
                let runtime = info
                    .map(|i| i.container_runtime_version)
                    .unwrap_or_default();
                r.extend([ip, runtime]);
            }
            r
        }),
        "Event" => read(o, |e: Event| {
            let last = e
                .last_timestamp
                .as_ref()
                .or(e.metadata.creation_timestamp.as_ref());
            let io = &e.involved_object;
            vec![
                age(last, now),
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                format!(
                    "{}/{}",
                    io.kind.as_deref().unwrap_or("").to_ascii_lowercase(),
                    io.name.as_deref().unwrap_or("")
                ),
                e.message.clone().unwrap_or_default(),
            ]
        }),
        "HorizontalPodAutoscaler" => read(o, |h: HorizontalPodAutoscaler| {
            let spec = h.spec.unwrap_or_default();
            let st = h.status.unwrap_or_default();
            vec![
                name(&h.metadata),
                format!(
                    "{}/{}",
                    spec.scale_target_ref.kind, spec.scale_target_ref.name
                ),
                hpa_targets(items(&spec.metrics), items(&st.current_metrics)),
                spec.min_replicas.unwrap_or(1).to_string(),
                spec.max_replicas.to_string(),
                int(st.current_replicas),
                age(h.metadata.creation_timestamp.as_ref(), now),
            ]
        }),
        _ => None,
    };
    typed.unwrap_or_else(|| {
        let meta = o
            .get("metadata")
            .and_then(|m| ObjectMeta::deserialize(m).ok())
            .unwrap_or_default();
        let mut r = vec![name(&meta), age(meta.creation_timestamp.as_ref(), now)];
        if let Some(h) = KNOWN.contains(&kind).then(|| headers(kind, wide).len()) {
            // The name first, the age where that kind has it, the rest empty.
            let mut full = vec![String::new(); h];
            full[0] = r.remove(0);
            if let Some(i) = headers(kind, wide).iter().position(|c| *c == "AGE") {
                full[i] = r.remove(0);
            }
            return full;
        }
        r
    })
}

/// The kinds with their own columns.
const KNOWN: &[&str] = &[
    "Pod",
    "Deployment",
    "ReplicaSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
    "Service",
    "ConfigMap",
    "Secret",
    "Namespace",
    "Node",
    "Event",
    "HorizontalPodAutoscaler",
];

/// An autoscaler's TARGETS column as kubectl prints it: `cpu: 42%/50%` per resource metric
/// (`<unknown>` before it is measured), two at most, then `+ N more...`.
fn hpa_targets(specs: &[MetricSpec], statuses: &[MetricStatus]) -> String {
    if specs.is_empty() {
        return "<none>".into();
    }
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let Some(r) = &spec.resource else {
            list.push("<unknown>".to_string());
            continue;
        };
        let current = statuses.get(i).and_then(|s| s.resource.as_ref());
        if let Some(v) = &r.target.average_value {
            let cur = current
                .and_then(|c| c.current.average_value.as_ref())
                .map_or("<unknown>".to_string(), |q| q.0.clone());
            list.push(format!("{}: {cur}/{}", r.name, v.0));
        } else {
            let cur = current
                .and_then(|c| c.current.average_utilization)
                .map_or("<unknown>".to_string(), |u| format!("{u}%"));
            let target = r
                .target
                .average_utilization
                .map_or("<auto>".to_string(), |u| format!("{u}%"));
            list.push(format!("{}: {cur}/{target}", r.name));
        }
        if list.len() > 2 {
            list.truncate(2);
            return format!("{} + {} more...", list.join(", "), specs.len() - 2);
        }
    }
    list.join(", ")
}

/// `o` read as `T` (borrowing the JSON, without copying it), then `f` of it.
fn read<T: serde::de::DeserializeOwned>(
    o: &Value,
    f: impl FnOnce(T) -> Vec<String>,
) -> Option<Vec<String>> {
    T::deserialize(o).ok().map(f)
}

fn name(m: &ObjectMeta) -> String {
    m.name.clone().unwrap_or_default()
}

fn pod_row(p: &Pod, now: DateTime<Utc>, wide: bool) -> Vec<String> {
    let total = p.spec.as_ref().map_or(0, |s| s.containers.len());
    let cs = p
        .status
        .as_ref()
        .map(|s| items(&s.container_statuses))
        .unwrap_or_default();
    let ready = cs.iter().filter(|c| c.ready).count();
    let restarts: i64 = cs.iter().map(|c| i64::from(c.restart_count)).sum();
    let mut r = vec![
        name(&p.metadata),
        format!("{ready}/{total}"),
        pod_status(p),
        restarts.to_string(),
        age(p.metadata.creation_timestamp.as_ref(), now),
    ];
    if wide {
        r.push(
            p.status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_else(|| "<none>".into()),
        );
        r.push(
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "<none>".into()),
        );
    }
    r
}

/// Aligns rows under headers with three spaces between columns, as kubectl does.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push('\n');
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn ages() {
        for (ts, want) in [
            ("2026-01-01T11:59:15Z", "45s"),
            ("2026-01-01T11:56:40Z", "3m20s"),
            ("2026-01-01T10:00:00Z", "120m"),
            ("2026-01-01T07:30:00Z", "4h30m"),
            ("2025-12-30T12:00:00Z", "2d0h"),
            ("2025-12-01T12:00:00Z", "31d"),
        ] {
            assert_eq!(age(Some(&Time(ts.parse().unwrap())), now()), want, "{ts}");
        }
    }

    #[test]
    fn pod_rows_follow_kubectl() {
        let pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": "2026-01-01T11:59:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        });
        assert_eq!(
            row("Pod", &pod, now(), true),
            vec![
                "web-1",
                "1/2",
                "CrashLoopBackOff",
                "3",
                "60s",
                "10.42.0.5",
                "n1"
            ]
        );
        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            row("Pod", &pending, now(), false)[1..3],
            ["0/1".to_string(), "Pending".to_string()]
        );
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["NAME", "AGE"],
            &[
                vec!["a-long-name".into(), "1s".into()],
                vec!["b".into(), "10m".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME          AGE\na-long-name   1s\nb             10m\n"
        );
    }

    #[test]
    fn service_ports() {
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.43.0.7", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}, "metadata": {"name": "web"}});
        assert_eq!(
            row("Service", &svc, now(), false)[1..5],
            ["NodePort", "10.43.0.7", "<none>", "80:30080/TCP"].map(String::from)
        );
    }

    #[test]
    fn other_kinds_read_as_their_types() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2026-01-01T11:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "true"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.0.2.7"}],
                "nodeInfo": {"kubeletVersion": "v1.31.0", "containerRuntimeVersion": "flotilla://0.1",
                    "architecture": "", "bootID": "", "kernelVersion": "", "kubeProxyVersion": "",
                    "machineID": "", "operatingSystem": "", "osImage": "", "systemUUID": ""}
            }
        });
        assert_eq!(
            row("Node", &node, now(), true),
            [
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane",
                "60m",
                "v1.31.0",
                "192.0.2.7",
                "flotilla://0.1"
            ]
        );
        let job = json!({
            "metadata": {"name": "pi"}, "spec": {"completions": 3, "template": {}},
            "status": {"succeeded": 3, "startTime": "2026-01-01T11:00:00Z",
                "completionTime": "2026-01-01T11:00:42Z",
                "conditions": [{"type": "Complete", "status": "True"}]}
        });
        assert_eq!(
            row("Job", &job, now(), false)[..4],
            ["pi", "Complete", "3/3", "42s"]
        );
        let deploy = json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            row("Deployment", &deploy, now(), true),
            [
                "web",
                "2/3",
                "3",
                "2",
                "<unknown>",
                "nginx",
                "nginx:1.27",
                "app=web"
            ]
        );
        let event = json!({
            "metadata": {"name": "e", "creationTimestamp": "2026-01-01T11:59:00Z"},
            "involvedObject": {"kind": "Pod", "name": "web-1"},
            "type": "Warning", "reason": "BackOff", "message": "Back-off restarting"
        });
        assert_eq!(
            row("Event", &event, now(), false),
            [
                "60s",
                "Warning",
                "BackOff",
                "pod/web-1",
                "Back-off restarting"
            ]
        );
        let init = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "state": {"waiting": {"reason": "PodInitializing"}}}
            ]}
        });
        assert_eq!(row("Pod", &init, now(), false)[2], "Init:1/2");
        let mut going = init.clone();
        going["metadata"]["deletionTimestamp"] = json!("2026-01-01T11:59:59Z");
        assert_eq!(row("Pod", &going, now(), false)[2], "Terminating");
        // An object that does not read as its kind still shows its name.
        let odd = json!({"metadata": {"name": "odd"}, "spec": {"replicas": "many"}});
        assert_eq!(
            row("Deployment", &odd, now(), false),
            ["odd", "", "", "", "<unknown>"]
        );
    }
}
