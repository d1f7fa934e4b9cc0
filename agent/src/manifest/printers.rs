//! kubectl-style tables: columns per kind, rows from objects. Pure functions of data.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Column headers for a kind (`wide` adds kubectl's `-o wide` columns).
pub fn headers(kind: &str, wide: bool) -> Vec<&'static str> {
    let mut h = match kind {
        "Pod" => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "Deployment" => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "ReplicaSet" => vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
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
        _ => vec!["NAME", "AGE"],
    };
    if wide {
        h.extend(match kind {
            "Pod" => vec!["IP", "NODE"],
            "Deployment" | "ReplicaSet" => vec!["CONTAINERS", "IMAGES", "SELECTOR"],
            "Service" => vec!["SELECTOR"],
            "Node" => vec!["INTERNAL-IP", "CONTAINER-RUNTIME"],
            _ => vec![],
        });
    }
    h
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn n(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// kubectl's short ages: `45s`, `3m20s`, `2h`, `5d`.
pub fn age(ts: &Value, now: DateTime<Utc>) -> String {
    let Some(t) = ts
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    else {
        return "<unknown>".into();
    };
    let secs = (now - t.with_timezone(&Utc)).num_seconds().max(0);
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
pub fn pod_status(p: &Value) -> String {
    if !p["metadata"]["deletionTimestamp"].is_null() {
        return "Terminating".into();
    }
    let st = &p["status"];
    let mut reason = st["reason"]
        .as_str()
        .or(st["phase"].as_str())
        .unwrap_or("Pending")
        .to_string();
    for (i, c) in st["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let total = p["spec"]["initContainers"].as_array().map_or(0, Vec::len);
        if c["state"]["terminated"]["exitCode"] == 0 && !c["state"]["terminated"].is_null() {
            continue;
        }
        if let Some(r) = c["state"]["terminated"]["reason"]
            .as_str()
            .or(c["state"]["waiting"]["reason"].as_str())
            && r != "PodInitializing"
        {
            return format!("Init:{r}");
        }
        return format!("Init:{i}/{total}");
    }
    for c in st["containerStatuses"].as_array().into_iter().flatten() {
        if let Some(r) = c["state"]["waiting"]["reason"].as_str() {
            reason = r.to_string();
        } else if let Some(r) = c["state"]["terminated"]["reason"].as_str() {
            reason = r.to_string();
        }
    }
    reason
}

fn ports(svc: &Value) -> String {
    let ps: Vec<String> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match p["nodePort"].as_i64() {
            Some(np) => format!("{}:{}/{}", n(&p["port"]), np, s(&p["protocol"])),
            None => format!("{}/{}", n(&p["port"]), s(&p["protocol"])),
        })
        .collect();
    if ps.is_empty() {
        "<none>".into()
    } else {
        ps.join(",")
    }
}

fn map_str(v: &Value) -> String {
    let parts: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn containers_images(o: &Value) -> (String, String) {
    let cs: Vec<&Value> = o["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    (
        cs.iter()
            .map(|c| s(&c["name"]))
            .collect::<Vec<_>>()
            .join(","),
        cs.iter()
            .map(|c| s(&c["image"]))
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn node_ready(o: &Value) -> String {
    let ready = o["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"] == "True")
        .unwrap_or(false);
    let mut st = if ready {
        "Ready".to_string()
    } else {
        "NotReady".to_string()
    };
    if o["spec"]["unschedulable"] == true {
        st.push_str(",SchedulingDisabled");
    }
    st
}

/// One table row for an object.
pub fn row(kind: &str, o: &Value, now: DateTime<Utc>, wide: bool) -> Vec<String> {
    let name = s(&o["metadata"]["name"]);
    let created = self::age(&o["metadata"]["creationTimestamp"], now);
    let st = &o["status"];
    let mut r = match kind {
        "Pod" => {
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let cs = st["containerStatuses"].as_array();
            let ready = cs
                .into_iter()
                .flatten()
                .filter(|c| c["ready"] == true)
                .count();
            let restarts: i64 = cs
                .into_iter()
                .flatten()
                .map(|c| n(&c["restartCount"]))
                .sum();
            vec![
                name,
                format!("{ready}/{total}"),
                pod_status(o),
                restarts.to_string(),
                created,
            ]
        }
        "Deployment" => vec![
            name,
            format!("{}/{}", n(&st["readyReplicas"]), n(&o["spec"]["replicas"])),
            n(&st["updatedReplicas"]).to_string(),
            n(&st["availableReplicas"]).to_string(),
            created,
        ],
        "ReplicaSet" => vec![
            name,
            n(&o["spec"]["replicas"]).to_string(),
            n(&st["replicas"]).to_string(),
            n(&st["readyReplicas"]).to_string(),
            created,
        ],
        "DaemonSet" => vec![
            name,
            n(&st["desiredNumberScheduled"]).to_string(),
            n(&st["currentNumberScheduled"]).to_string(),
            n(&st["numberReady"]).to_string(),
            n(&st["updatedNumberScheduled"]).to_string(),
            n(&st["numberAvailable"]).to_string(),
            map_str(&o["spec"]["template"]["spec"]["nodeSelector"]),
            created,
        ],
        "Job" => {
            let conds: Vec<&Value> = st["conditions"].as_array().into_iter().flatten().collect();
            let has = |t: &str| {
                conds
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else {
                "Running"
            };
            let duration = match (st["startTime"].as_str(), st["completionTime"].as_str()) {
                (Some(start), Some(end)) => {
                    let end = DateTime::parse_from_rfc3339(end)
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or(now);
                    age(&Value::from(start), end)
                }
                (Some(start), None) => age(&Value::from(start), now),
                _ => String::new(),
            };
            vec![
                name,
                status.into(),
                format!("{}/{}", n(&st["succeeded"]), n(&o["spec"]["completions"])),
                duration,
                created,
            ]
        }
        "Service" => vec![
            name,
            s(&o["spec"]["type"]),
            o["spec"]["clusterIP"]
                .as_str()
                .unwrap_or("<pending>")
                .to_string(),
            "<none>".into(),
            ports(o),
            created,
        ],
        "ConfigMap" => {
            let count = o["data"].as_object().map_or(0, |m| m.len())
                + o["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, count.to_string(), created]
        }
        "Secret" => vec![
            name,
            s(&o["type"]),
            o["data"].as_object().map_or(0, |m| m.len()).to_string(),
            created,
        ],
        "Namespace" => vec![
            name,
            if o["metadata"]["deletionTimestamp"].is_null() {
                "Active".into()
            } else {
                "Terminating".into()
            },
            created,
        ],
        "Node" => {
            let roles: Vec<&str> = o["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .collect();
            vec![
                name,
                node_ready(o),
                if roles.is_empty() {
                    "<none>".into()
                } else {
                    roles.join(",")
                },
                created,
                s(&st["nodeInfo"]["kubeletVersion"]),
            ]
        }
        "Event" => {
            let last = if o["lastTimestamp"].is_null() {
                &o["metadata"]["creationTimestamp"]
            } else {
                &o["lastTimestamp"]
            };
            let io = &o["involvedObject"];
            vec![
                self::age(last, now),
                s(&o["type"]),
                s(&o["reason"]),
                format!("{}/{}", s(&io["kind"]).to_ascii_lowercase(), s(&io["name"])),
                s(&o["message"]),
            ]
        }
        _ => vec![name, created],
    };
    if wide {
        match kind {
            "Pod" => {
                r.push(st["podIP"].as_str().unwrap_or("<none>").to_string());
                r.push(
                    o["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or("<none>")
                        .to_string(),
                );
            }
            "Deployment" | "ReplicaSet" => {
                let (c, i) = containers_images(o);
                r.extend([c, i, map_str(&o["spec"]["selector"]["matchLabels"])]);
            }
            "Service" => r.push(map_str(&o["spec"]["selector"])),
            "Node" => {
                let ip = st["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["type"] == "InternalIP")
                    .map(|a| s(&a["address"]))
                    .unwrap_or_else(|| "<none>".into());
                r.extend([ip, s(&st["nodeInfo"]["containerRuntimeVersion"])]);
            }
            _ => {}
        }
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
            assert_eq!(age(&json!(ts), now()), want, "{ts}");
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
}
