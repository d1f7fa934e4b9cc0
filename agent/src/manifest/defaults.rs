//! Defaults that Kubernetes fills in, so that a stored object reads as it would there
//! (`kubectl get -o yaml` shows the same fields).

use base64::Engine as _;

use super::Manifest;
use super::types::*;

/// Fills in defaults of a validated manifest.
pub fn apply(m: &mut Manifest) {
    match m {
        Manifest::Namespace(_) | Manifest::ConfigMap(_) => {}
        Manifest::Secret(s) => {
            s.type_.get_or_insert_with(|| "Opaque".into());
            for (k, v) in std::mem::take(&mut s.string_data) {
                s.data
                    .insert(k, base64::engine::general_purpose::STANDARD.encode(v));
            }
        }
        Manifest::Service(s) => service(&mut s.spec),
        Manifest::Pod(p) => pod_spec(&mut p.spec),
        Manifest::ReplicaSet(rs) => {
            rs.spec.replicas.get_or_insert(1);
            rs.spec.min_ready_seconds.get_or_insert(0);
            pod_spec(&mut rs.spec.template.spec);
        }
        Manifest::Deployment(d) => {
            let s = &mut d.spec;
            s.replicas.get_or_insert(1);
            s.revision_history_limit.get_or_insert(10);
            s.progress_deadline_seconds.get_or_insert(600);
            s.min_ready_seconds.get_or_insert(0);
            let st = s.strategy.get_or_insert_with(Default::default);
            let ty = st.type_.get_or_insert_with(|| "RollingUpdate".into());
            if ty == "RollingUpdate" {
                let ru = st.rolling_update.get_or_insert_with(Default::default);
                ru.max_surge.get_or_insert(IntOrString::Str("25%".into()));
                ru.max_unavailable
                    .get_or_insert(IntOrString::Str("25%".into()));
            }
            pod_spec(&mut s.template.spec);
        }
        Manifest::DaemonSet(d) => {
            let s = &mut d.spec;
            s.revision_history_limit.get_or_insert(10);
            s.min_ready_seconds.get_or_insert(0);
            let st = s.update_strategy.get_or_insert_with(Default::default);
            let ty = st.type_.get_or_insert_with(|| "RollingUpdate".into());
            if ty == "RollingUpdate" {
                let ru = st.rolling_update.get_or_insert_with(Default::default);
                ru.max_surge.get_or_insert(IntOrString::Int(0));
                ru.max_unavailable.get_or_insert(IntOrString::Int(1));
            }
            pod_spec(&mut s.template.spec);
        }
        Manifest::Job(j) => {
            let name = j.metadata.name.clone();
            let s = &mut j.spec;
            s.completions.get_or_insert(1);
            s.parallelism.get_or_insert(1);
            s.backoff_limit.get_or_insert(6);
            if s.manual_selector != Some(true) {
                s.template
                    .metadata
                    .labels
                    .insert(JOB_NAME_LABEL.into(), name.clone());
                s.selector = Some(LabelSelector {
                    match_labels: [(JOB_NAME_LABEL.to_string(), name)].into(),
                    ..Default::default()
                });
            }
            pod_spec(&mut s.template.spec);
        }
    }
}

/// The label a Job puts on its pods and selects them by.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

fn service(s: &mut ServiceSpec) {
    s.type_.get_or_insert_with(|| "ClusterIP".into());
    let aff = s.session_affinity.get_or_insert_with(|| "None".into());
    if aff == "ClientIP" {
        let c = s
            .session_affinity_config
            .get_or_insert_with(Default::default);
        let ip = c.client_ip.get_or_insert_with(Default::default);
        ip.timeout_seconds.get_or_insert(10800);
    }
    for p in &mut s.ports {
        p.protocol.get_or_insert_with(|| "TCP".into());
        p.target_port.get_or_insert(IntOrString::Int(p.port));
    }
}

/// Whether an image reference names the `latest` tag (explicitly or by having no tag).
fn is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => true,
        Some((_, tag)) => tag == "latest",
    }
}

fn pod_spec(s: &mut PodSpec) {
    s.restart_policy.get_or_insert_with(|| "Always".into());
    s.termination_grace_period_seconds.get_or_insert(30);
    s.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    for c in s.init_containers.iter_mut().chain(s.containers.iter_mut()) {
        container(c);
    }
    for v in &mut s.volumes {
        if let Some(cm) = &mut v.config_map {
            cm.default_mode.get_or_insert(0o644);
        }
        if let Some(sec) = &mut v.secret {
            sec.default_mode.get_or_insert(0o644);
        }
        if let Some(hp) = &mut v.host_path {
            hp.type_.get_or_insert_with(String::new);
        }
    }
}

fn container(c: &mut Container) {
    let latest = is_latest(&c.image);
    c.image_pull_policy.get_or_insert_with(|| {
        if latest {
            "Always".into()
        } else {
            "IfNotPresent".into()
        }
    });
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    for p in &mut c.ports {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
    // As Kubernetes: a limit without a request makes the request equal to the limit.
    for (k, v) in &c.resources.limits {
        c.resources
            .requests
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    for p in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        p.initial_delay_seconds.get_or_insert(0);
        p.timeout_seconds.get_or_insert(1);
        p.period_seconds.get_or_insert(10);
        p.success_threshold.get_or_insert(1);
        p.failure_threshold.get_or_insert(3);
        if let Some(h) = &mut p.http_get {
            http_get(h);
        }
    }
    if let Some(lc) = &mut c.lifecycle {
        for h in [&mut lc.post_start, &mut lc.pre_stop].into_iter().flatten() {
            if let Some(g) = &mut h.http_get {
                http_get(g);
            }
        }
    }
}

fn http_get(h: &mut HttpGetAction) {
    h.path.get_or_insert_with(|| "/".into());
    h.scheme.get_or_insert_with(|| "HTTP".into());
}

#[cfg(test)]
mod tests {
    use super::is_latest;

    #[test]
    fn latest_tag_detection() {
        assert!(is_latest("busybox"));
        assert!(is_latest("busybox:latest"));
        assert!(is_latest("localhost:5000/busybox"));
        assert!(!is_latest("localhost:5000/busybox:1"));
        assert!(!is_latest("flotilla.local/busybox:1"));
        assert!(!is_latest("busybox@sha256:abc"));
    }
}
