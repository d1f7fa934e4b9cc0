//! Defaults that Kubernetes fills in, so that a stored object reads as it would there
//! (`kubectl get -o yaml` shows the same fields).

use k8s_openapi::ByteString;
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, PodSpec, PodTemplateSpec, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Manifest;

/// Fills in defaults of a validated manifest.
pub fn apply(m: &mut Manifest) {
    match m {
        Manifest::Namespace(_) | Manifest::ConfigMap(_) => {}
        Manifest::Secret(s) => {
            s.type_.get_or_insert_with(|| "Opaque".into());
            if let Some(plain) = s.string_data.take() {
                let data = s.data.get_or_insert_with(Default::default);
                for (k, v) in plain {
                    data.insert(k, ByteString(v.into_bytes()));
                }
            }
        }
        Manifest::Service(s) => service(s.spec.get_or_insert_with(Default::default)),
        Manifest::Pod(p) => pod_spec(p.spec.get_or_insert_with(Default::default)),
        Manifest::ReplicaSet(rs) => {
            let s = rs.spec.get_or_insert_with(Default::default);
            s.replicas.get_or_insert(1);
            s.min_ready_seconds.get_or_insert(0);
            template(s.template.get_or_insert_with(Default::default));
        }
        Manifest::Deployment(d) => {
            let s = d.spec.get_or_insert_with(Default::default);
            s.replicas.get_or_insert(1);
            s.revision_history_limit.get_or_insert(10);
            s.progress_deadline_seconds.get_or_insert(600);
            s.min_ready_seconds.get_or_insert(0);
            let st = s.strategy.get_or_insert_with(Default::default);
            let ty = st.type_.get_or_insert_with(|| "RollingUpdate".into());
            if ty == "RollingUpdate" {
                let ru = st.rolling_update.get_or_insert_with(Default::default);
                ru.max_surge
                    .get_or_insert(IntOrString::String("25%".into()));
                ru.max_unavailable
                    .get_or_insert(IntOrString::String("25%".into()));
            }
            template(&mut s.template);
        }
        Manifest::DaemonSet(d) => {
            let s = d.spec.get_or_insert_with(Default::default);
            s.revision_history_limit.get_or_insert(10);
            s.min_ready_seconds.get_or_insert(0);
            let st = s.update_strategy.get_or_insert_with(Default::default);
            let ty = st.type_.get_or_insert_with(|| "RollingUpdate".into());
            if ty == "RollingUpdate" {
                let ru = st.rolling_update.get_or_insert_with(Default::default);
                ru.max_surge.get_or_insert(IntOrString::Int(0));
                ru.max_unavailable.get_or_insert(IntOrString::Int(1));
            }
            template(&mut s.template);
        }
        Manifest::ReplicationController(rc) => {
            let s = rc.spec.get_or_insert_with(Default::default);
            s.replicas.get_or_insert(1);
            s.min_ready_seconds.get_or_insert(0);
            let t = s.template.get_or_insert_with(Default::default);
            let labels = t
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            if s.selector.as_ref().is_none_or(|l| l.is_empty()) {
                s.selector = Some(labels.clone());
            }
            if rc.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                rc.metadata.labels = Some(labels);
            }
            template(t);
        }
        Manifest::CronJob(c) => {
            let s = c.spec.get_or_insert_with(Default::default);
            s.concurrency_policy.get_or_insert_with(|| "Allow".into());
            s.suspend.get_or_insert(false);
            s.successful_jobs_history_limit.get_or_insert(3);
            s.failed_jobs_history_limit.get_or_insert(1);
            // The Job's own defaults (completions, selector) come when each Job is made.
            let job = s.job_template.spec.get_or_insert_with(Default::default);
            template(&mut job.template);
        }
        Manifest::HorizontalPodAutoscaler(h) => hpa(h.spec.get_or_insert_with(Default::default)),
        Manifest::Job(j) => {
            let name = j.metadata.name.clone().unwrap_or_default();
            let s = j.spec.get_or_insert_with(Default::default);
            for r in s
                .pod_failure_policy
                .iter_mut()
                .flat_map(|p| p.rules.iter_mut())
            {
                for c in r.on_pod_conditions.iter_mut().flatten() {
                    if c.status.is_empty() {
                        c.status = "True".into();
                    }
                }
            }
            s.completions.get_or_insert(1);
            s.parallelism.get_or_insert(1);
            s.backoff_limit.get_or_insert(6);
            if s.manual_selector != Some(true) {
                s.template
                    .metadata
                    .get_or_insert_with(Default::default)
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert(JOB_NAME_LABEL.into(), name.clone());
                s.selector = Some(LabelSelector {
                    match_labels: Some([(JOB_NAME_LABEL.to_string(), name)].into()),
                    ..Default::default()
                });
            }
            template(&mut s.template);
        }
    }
}

/// The label a Job puts on its pods and selects them by.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

fn template(t: &mut PodTemplateSpec) {
    pod_spec(t.spec.get_or_insert_with(Default::default));
}

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
    for p in s.ports.iter_mut().flatten() {
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
    for c in s.init_containers.iter_mut().flatten() {
        container(c);
    }
    for c in &mut s.containers {
        container(c);
    }
    for v in s.volumes.iter_mut().flatten() {
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
    let latest = is_latest(c.image.as_deref().unwrap_or_default());
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
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
    // As Kubernetes: a limit without a request makes the request equal to the limit.
    if let Some(r) = &mut c.resources
        && let Some(limits) = &r.limits
    {
        let requests = r.requests.get_or_insert_with(Default::default);
        for (k, v) in limits {
            requests.entry(k.clone()).or_insert_with(|| v.clone());
        }
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

fn http_get(h: &mut HTTPGetAction) {
    h.path.get_or_insert_with(|| "/".into());
    h.scheme.get_or_insert_with(|| "HTTP".into());
}

/// An autoscaler's defaults: one replica at least, 80% of requested CPU when no metric is
/// given, and every unset part of a `behavior` filled in.
fn hpa(s: &mut HorizontalPodAutoscalerSpec) {
    s.min_replicas.get_or_insert(1);
    if s.metrics.as_ref().is_none_or(Vec::is_empty) {
        s.metrics = Some(vec![MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(80),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }]);
    }
    if let Some(b) = s.behavior.as_mut() {
        b.scale_up = Some(rules_with_defaults(b.scale_up.as_ref(), true));
        b.scale_down = Some(rules_with_defaults(b.scale_down.as_ref(), false));
    }
}

/// The default scaling rules (Kubernetes' defaults for `behavior`).
pub fn default_up() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".into()),
        policies: Some(vec![
            HPAScalingPolicy {
                type_: "Pods".into(),
                value: 4,
                period_seconds: 15,
            },
            HPAScalingPolicy {
                type_: "Percent".into(),
                value: 100,
                period_seconds: 15,
            },
        ]),
    }
}

pub fn default_down() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: None,
        select_policy: Some("Max".into()),
        policies: Some(vec![HPAScalingPolicy {
            type_: "Percent".into(),
            value: 100,
            period_seconds: 15,
        }]),
    }
}

/// Rules with every unset part defaulted, as Kubernetes' defaulting fills a `behavior`.
pub fn rules_with_defaults(rules: Option<&HPAScalingRules>, up: bool) -> HPAScalingRules {
    let d = if up { default_up() } else { default_down() };
    let Some(r) = rules else { return d };
    HPAScalingRules {
        stabilization_window_seconds: r
            .stabilization_window_seconds
            .or(d.stabilization_window_seconds),
        select_policy: r.select_policy.clone().or(d.select_policy),
        policies: if r.policies.as_ref().is_none_or(Vec::is_empty) {
            d.policies
        } else {
            r.policies.clone()
        },
    }
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
