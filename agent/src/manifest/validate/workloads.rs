//! ReplicaSets, Deployments, DaemonSets and Jobs: replicas, selectors against templates,
//! update strategies.

use super::*;

/// Validates a ReplicaSet.
pub(super) fn replica_set(e: &mut Errors, o: &ReplicaSet) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    replicas(e, o.spec.replicas);
    non_negative(e, "spec.minReadySeconds", o.spec.min_ready_seconds);
    template(
        e,
        o.spec.selector.as_ref(),
        &o.spec.template,
        Some(&["Always"]),
    );
}

/// Validates a Deployment.
pub(super) fn deployment(e: &mut Errors, o: &Deployment) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    replicas(e, o.spec.replicas);
    non_negative(e, "spec.minReadySeconds", o.spec.min_ready_seconds);
    non_negative(
        e,
        "spec.revisionHistoryLimit",
        o.spec.revision_history_limit,
    );
    if let Some(p) = o.spec.progress_deadline_seconds
        && p <= o.spec.min_ready_seconds.unwrap_or(0)
    {
        e.add(
            "spec.progressDeadlineSeconds",
            "must be greater than minReadySeconds",
        );
    }
    template(
        e,
        o.spec.selector.as_ref(),
        &o.spec.template,
        Some(&["Always"]),
    );
    if let Some(s) = &o.spec.strategy {
        strategy(e, "spec.strategy", s, &["RollingUpdate", "Recreate"], true);
    }
}

/// Validates a DaemonSet.
pub(super) fn daemon_set(e: &mut Errors, o: &DaemonSet) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    template(
        e,
        o.spec.selector.as_ref(),
        &o.spec.template,
        Some(&["Always"]),
    );
    if let Some(s) = &o.spec.update_strategy {
        strategy(
            e,
            "spec.updateStrategy",
            s,
            &["RollingUpdate", "OnDelete"],
            false,
        );
    }
}

/// Validates a Job.
pub(super) fn job(e: &mut Errors, o: &Job) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    non_negative(e, "spec.completions", o.spec.completions);
    non_negative(e, "spec.parallelism", o.spec.parallelism);
    non_negative(e, "spec.backoffLimit", o.spec.backoff_limit);
    if let Some(d) = o.spec.active_deadline_seconds
        && d <= 0
    {
        e.add("spec.activeDeadlineSeconds", "must be greater than 0");
    }
    if o.spec.template.spec.restart_policy.is_none() {
        e.add(
            "spec.template.spec.restartPolicy",
            "required for a Job: \"OnFailure\" or \"Never\"",
        );
    }
    if o.spec.selector.is_some() && o.spec.manual_selector != Some(true) {
        e.add(
            "spec.selector",
            "is generated for a Job; set manualSelector: true to give your own",
        );
    }
    let sel = if o.spec.manual_selector == Some(true) {
        o.spec.selector.as_ref()
    } else {
        None
    };
    labels(
        e,
        "spec.template.metadata.labels",
        &o.spec.template.metadata.labels,
    );
    if let Some(sel) = sel {
        selector_matches_template(e, sel, &o.spec.template);
    }
    pod_spec(
        e,
        "spec.template.spec",
        &o.spec.template.spec,
        Some(&["OnFailure", "Never"]),
    );
}

pub(super) fn replicas(e: &mut Errors, r: Option<i64>) {
    if let Some(r) = r
        && r < 0
    {
        e.add(
            "spec.replicas",
            format!("{r} must be greater than or equal to 0"),
        );
    }
}

pub(super) fn template(
    e: &mut Errors,
    sel: Option<&LabelSelector>,
    t: &PodTemplateSpec,
    restart: Option<&[&str]>,
) {
    labels(e, "spec.template.metadata.labels", &t.metadata.labels);
    match sel {
        None => e.add("spec.selector", "required"),
        Some(sel) => selector_matches_template(e, sel, t),
    }
    pod_spec(e, "spec.template.spec", &t.spec, restart);
}

pub(super) fn selector_matches_template(e: &mut Errors, sel: &LabelSelector, t: &PodTemplateSpec) {
    match Selector::from_label_selector(sel) {
        Err(err) => e.add("spec.selector", err),
        Ok(s) if s.is_empty() => e.add("spec.selector", "must not be empty"),
        Ok(s) if !s.matches(&t.metadata.labels) => e.add(
            "spec.template.metadata.labels",
            format!(
                "selector {s:?} does not match the template's labels",
                s = s.to_string()
            ),
        ),
        Ok(_) => {}
    }
}

pub(super) fn strategy(
    e: &mut Errors,
    path: &str,
    s: &DeploymentStrategy,
    types: &[&str],
    surge: bool,
) {
    let ty = s.type_.as_deref().unwrap_or("RollingUpdate");
    if !types.contains(&ty) {
        e.add(
            format!("{path}.type"),
            format!("{ty:?} is not one of {}", types.join(", ")),
        );
    }
    let Some(ru) = &s.rolling_update else { return };
    if ty != "RollingUpdate" {
        e.add(
            format!("{path}.rollingUpdate"),
            format!("not allowed with type {ty:?}"),
        );
        return;
    }
    let su = ru
        .max_surge
        .as_ref()
        .map(|v| int_or_percent(e, &format!("{path}.rollingUpdate.maxSurge"), v));
    let un = ru
        .max_unavailable
        .as_ref()
        .map(|v| int_or_percent(e, &format!("{path}.rollingUpdate.maxUnavailable"), v));
    if !surge && ru.max_surge.is_some() && un == Some(Some(0)) && su == Some(Some(0)) {
        e.add(
            format!("{path}.rollingUpdate.maxUnavailable"),
            "may not be 0 when maxSurge is 0",
        );
    }
    if surge && su == Some(Some(0)) && un == Some(Some(0)) {
        e.add(
            format!("{path}.rollingUpdate.maxUnavailable"),
            "may not be 0 when maxSurge is 0",
        );
    }
}

/// Checks an int or a percentage and returns its number (the percent for a percentage).
pub(super) fn int_or_percent(e: &mut Errors, path: &str, v: &IntOrString) -> Option<i64> {
    match v {
        IntOrString::Int(i) if *i < 0 => {
            e.add(path, format!("{i} must be greater than or equal to 0"));
            None
        }
        IntOrString::Int(i) => Some(*i),
        IntOrString::Str(s) => match s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) {
            Some(p) if (0..=100).contains(&p) => Some(p),
            _ => {
                e.add(
                    path,
                    format!("{s:?} must be an integer or a percentage such as \"25%\""),
                );
                None
            }
        },
    }
}
