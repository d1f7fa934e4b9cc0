//! HorizontalPodAutoscalers: the target, the replica range, resource metrics and the scaling
//! behaviour, with Kubernetes' messages.

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscaler, MetricTarget};

use super::*;

/// The kinds Flotilla can scale through `/scale`.
const SCALABLE: [&str; 3] = ["Deployment", "ReplicaSet", "ReplicationController"];
/// The resources each node measures for its pods.
const MEASURED: [&str; 2] = ["cpu", "memory"];

/// Validates a HorizontalPodAutoscaler.
pub(super) fn horizontal_pod_autoscaler(e: &mut Errors, o: &HorizontalPodAutoscaler) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    let Some(spec) = &o.spec else {
        e.add("spec", "Required value");
        return;
    };
    let r = &spec.scale_target_ref;
    if r.kind.is_empty() {
        e.add("spec.scaleTargetRef.kind", "Required value");
    } else if !SCALABLE.contains(&r.kind.as_str()) {
        e.add(
            "spec.scaleTargetRef.kind",
            format!(
                "{:?}: scaling a {} is not supported by Flotilla yet (Deployment, ReplicaSet and ReplicationController are)",
                r.kind, r.kind
            ),
        );
    }
    if r.name.is_empty() {
        e.add("spec.scaleTargetRef.name", "Required value");
    } else if let Some(msg) = dns_subdomain_error(&r.name) {
        e.add(
            "spec.scaleTargetRef.name",
            format!("Invalid value: {:?}: {msg}", r.name),
        );
    }
    let min = spec.min_replicas.unwrap_or(1);
    if min < 1 {
        e.add(
            "spec.minReplicas",
            format!("Invalid value: {min}: must be greater than or equal to 1"),
        );
    }
    if spec.max_replicas < 1 {
        e.add(
            "spec.maxReplicas",
            format!(
                "Invalid value: {}: must be greater than 0",
                spec.max_replicas
            ),
        );
    } else if spec.max_replicas < min {
        e.add(
            "spec.maxReplicas",
            format!(
                "Invalid value: {}: must be greater than or equal to `minReplicas`",
                spec.max_replicas
            ),
        );
    }
    for (i, m) in items(&spec.metrics).iter().enumerate() {
        let p = format!("spec.metrics[{i}]");
        let types = [
            "Object",
            "Pods",
            "Resource",
            "ContainerResource",
            "External",
        ];
        if m.type_.is_empty() {
            e.add(
                format!("{p}.type"),
                "Required value: must specify a metric source type",
            );
            continue;
        }
        if !types.contains(&m.type_.as_str()) {
            e.add(
                format!("{p}.type"),
                format!("Unsupported value: {:?}: supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"", m.type_),
            );
            continue;
        }
        if m.type_ != "Resource" {
            e.add(
                format!("{p}.type"),
                format!("{:?}: metrics of this type are not supported by Flotilla yet (Resource metrics are)", m.type_),
            );
            continue;
        }
        let Some(res) = &m.resource else {
            e.add(
                format!("{p}.resource"),
                "Required value: must populate information for the given metric source",
            );
            continue;
        };
        let p = format!("{p}.resource");
        if res.name.is_empty() {
            e.add(
                format!("{p}.name"),
                "Required value: must specify a resource name",
            );
        } else if !MEASURED.contains(&res.name.as_str()) {
            e.add(
                format!("{p}.name"),
                format!("{:?}: Flotilla measures cpu and memory only", res.name),
            );
        }
        target(e, &format!("{p}.target"), &res.target);
    }
    if let Some(b) = &spec.behavior {
        rules(e, "spec.behavior.scaleUp", b.scale_up.as_ref());
        rules(e, "spec.behavior.scaleDown", b.scale_down.as_ref());
    }
}

/// A resource metric's target: a utilization or an average value, one of them.
fn target(e: &mut Errors, p: &str, t: &MetricTarget) {
    match t.type_.as_str() {
        "Utilization" | "AverageValue" => {}
        "Value" => {
            e.add(
                format!("{p}.type"),
                "Invalid value: \"Value\": a resource metric takes Utilization or AverageValue",
            );
            return;
        }
        "" => {
            e.add(
                format!("{p}.type"),
                "Required value: must specify a metric target type",
            );
            return;
        }
        other => {
            e.add(
                format!("{p}.type"),
                format!("Unsupported value: {other:?}: supported values: \"AverageValue\", \"Utilization\", \"Value\""),
            );
            return;
        }
    }
    if t.value.is_some() {
        e.add(
            format!("{p}.value"),
            "Forbidden: may not set a total value for a resource metric",
        );
    }
    match (t.average_utilization, &t.average_value) {
        (None, None) => e.add(
            format!("{p}.averageUtilization"),
            "Required value: must set either a target raw value or a target utilization",
        ),
        (Some(_), Some(_)) => e.add(
            format!("{p}.averageValue"),
            "Forbidden: may not set both a target raw value and a target utilization",
        ),
        (Some(u), None) => {
            if t.type_ != "Utilization" {
                e.add(
                    format!("{p}.averageUtilization"),
                    "Forbidden: the target type is AverageValue",
                );
            } else if u <= 0 {
                e.add(
                    format!("{p}.averageUtilization"),
                    format!("Invalid value: {u}: must be greater than 0"),
                );
            }
        }
        (None, Some(v)) => {
            if t.type_ != "AverageValue" {
                e.add(
                    format!("{p}.averageValue"),
                    "Forbidden: the target type is Utilization",
                );
            } else {
                match quantity::parse_milli(&v.0) {
                    Ok(n) if n > 0 => {}
                    Ok(_) => e.add(
                        format!("{p}.averageValue"),
                        format!("Invalid value: {:?}: must be positive", v.0),
                    ),
                    Err(msg) => e.add(format!("{p}.averageValue"), msg),
                }
            }
        }
    }
}

/// One direction's scaling rules.
fn rules(e: &mut Errors, p: &str, r: Option<&HPAScalingRules>) {
    let Some(r) = r else { return };
    if let Some(w) = r.stabilization_window_seconds
        && !(0..=3600).contains(&w)
    {
        e.add(
            format!("{p}.stabilizationWindowSeconds"),
            format!("Invalid value: {w}: must be greater than or equal to zero and less than or equal to 3600"),
        );
    }
    if let Some(s) = r.select_policy.as_deref()
        && !["Max", "Min", "Disabled"].contains(&s)
    {
        e.add(
            format!("{p}.selectPolicy"),
            format!("Unsupported value: {s:?}: supported values: \"Disabled\", \"Max\", \"Min\""),
        );
    }
    for (i, pol) in items(&r.policies).iter().enumerate() {
        let pp = format!("{p}.policies[{i}]");
        if !["Pods", "Percent"].contains(&pol.type_.as_str()) {
            e.add(
                format!("{pp}.type"),
                format!(
                    "Unsupported value: {:?}: supported values: \"Percent\", \"Pods\"",
                    pol.type_
                ),
            );
        }
        if pol.value <= 0 {
            e.add(
                format!("{pp}.value"),
                format!("Invalid value: {}: must be greater than zero", pol.value),
            );
        }
        if pol.period_seconds <= 0 {
            e.add(
                format!("{pp}.periodSeconds"),
                format!(
                    "Invalid value: {}: must be greater than zero",
                    pol.period_seconds
                ),
            );
        } else if pol.period_seconds > 1800 {
            e.add(
                format!("{pp}.periodSeconds"),
                format!(
                    "Invalid value: {}: must be less than or equal to 1800",
                    pol.period_seconds
                ),
            );
        }
    }
}
