//! ReplicaSets, Deployments, DaemonSets and Jobs: replicas, selectors against templates,
//! update strategies.

use super::*;
use k8s_openapi::api::batch::v1::{JobSpec, PodFailurePolicy};

/// Validates a ReplicaSet.
pub(super) fn replica_set(e: &mut Errors, o: &ReplicaSet) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    let none = Default::default();
    let spec = o.spec.as_ref().unwrap_or(&none);
    replicas(e, spec.replicas);
    non_negative(e, "spec.minReadySeconds", spec.min_ready_seconds);
    let none = PodTemplateSpec::default();
    template(
        e,
        Some(&spec.selector),
        spec.template.as_ref().unwrap_or(&none),
        Some(&["Always"]),
    );
}

/// Validates a ReplicationController: a ReplicaSet whose selector is a map of labels, which
/// defaults to the template's labels.
pub(super) fn replication_controller(e: &mut Errors, o: &ReplicationController) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    let none = Default::default();
    let spec = o.spec.as_ref().unwrap_or(&none);
    replicas(e, spec.replicas);
    non_negative(e, "spec.minReadySeconds", spec.min_ready_seconds);
    let none = PodTemplateSpec::default();
    let t = spec.template.as_ref().unwrap_or(&none);
    let given = spec.selector.clone().filter(|s| !s.is_empty());
    let sel = LabelSelector {
        match_labels: given
            .or_else(|| Some(template_labels(t).clone()))
            .filter(|l| !l.is_empty()),
        ..Default::default()
    };
    template(e, Some(&sel), t, Some(&["Always"]));
}

/// Validates a Deployment.
pub(super) fn deployment(e: &mut Errors, o: &Deployment) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    let none = Default::default();
    let spec = o.spec.as_ref().unwrap_or(&none);
    replicas(e, spec.replicas);
    non_negative(e, "spec.minReadySeconds", spec.min_ready_seconds);
    non_negative(e, "spec.revisionHistoryLimit", spec.revision_history_limit);
    if let Some(p) = spec.progress_deadline_seconds
        && p <= spec.min_ready_seconds.unwrap_or(0)
    {
        e.add(
            "spec.progressDeadlineSeconds",
            "must be greater than minReadySeconds",
        );
    }
    template(e, Some(&spec.selector), &spec.template, Some(&["Always"]));
    if let Some(s) = &spec.strategy {
        let ru = s
            .rolling_update
            .as_ref()
            .map(|r| (r.max_surge.as_ref(), r.max_unavailable.as_ref()));
        let types = ["RollingUpdate", "Recreate"];
        strategy(e, "spec.strategy", s.type_.as_deref(), ru, &types, true);
    }
}

/// Validates a DaemonSet.
pub(super) fn daemon_set(e: &mut Errors, o: &DaemonSet) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    let none = Default::default();
    let spec = o.spec.as_ref().unwrap_or(&none);
    non_negative(e, "spec.minReadySeconds", spec.min_ready_seconds);
    non_negative(e, "spec.revisionHistoryLimit", spec.revision_history_limit);
    template(e, Some(&spec.selector), &spec.template, Some(&["Always"]));
    if let Some(s) = &spec.update_strategy {
        let ru = s
            .rolling_update
            .as_ref()
            .map(|r| (r.max_surge.as_ref(), r.max_unavailable.as_ref()));
        let types = ["RollingUpdate", "OnDelete"];
        strategy(
            e,
            "spec.updateStrategy",
            s.type_.as_deref(),
            ru,
            &types,
            false,
        );
    }
}

/// Validates a Job.
pub(super) fn job(e: &mut Errors, o: &Job) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    let none = Default::default();
    job_spec(
        e,
        o.spec.as_ref().unwrap_or(&none),
        o.metadata.name.as_deref(),
    );
}

/// Validates a CronJob: its schedule and zone, its limits, and its Job template as a Job's spec.
pub(super) fn cron_job(e: &mut Errors, o: &CronJob) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    let name = o.metadata.name.as_deref().unwrap_or("");
    // Its Jobs are named NAME-<minutes since the epoch>, which must stay a DNS label.
    if name.len() > 52 {
        e.add(
            "metadata.name",
            format!("Invalid value: {name:?}: must be no more than 52 characters"),
        );
    }
    let none = Default::default();
    let spec = o.spec.as_ref().unwrap_or(&none);
    if spec.schedule.is_empty() {
        e.add("spec.schedule", "Required value");
    } else if let Err(err) = crate::manifest::cron::parse_schedule(&spec.schedule) {
        e.add(
            "spec.schedule",
            format!("Invalid value: {:?}: {err}", spec.schedule),
        );
    }
    if let Err(err) = crate::manifest::cron::time_zone(spec.time_zone.as_deref())
        && let Some(tz) = &spec.time_zone
    {
        e.add("spec.timeZone", format!("Invalid value: {tz:?}: {err}"));
    }
    if let Some(p) = spec.concurrency_policy.as_deref()
        && !["Allow", "Forbid", "Replace"].contains(&p)
    {
        e.add(
            "spec.concurrencyPolicy",
            format!(
                "Unsupported value: {p:?}: supported values: \"Allow\", \"Forbid\", \"Replace\""
            ),
        );
    }
    non_negative(
        e,
        "spec.startingDeadlineSeconds",
        spec.starting_deadline_seconds,
    );
    non_negative(
        e,
        "spec.successfulJobsHistoryLimit",
        spec.successful_jobs_history_limit,
    );
    non_negative(
        e,
        "spec.failedJobsHistoryLimit",
        spec.failed_jobs_history_limit,
    );
    let template = &spec.job_template;
    if let Some(m) = &template.metadata {
        labels(e, "spec.jobTemplate.metadata.labels", strings(&m.labels));
        // Each Job takes the template's labels and annotations only (as Kubernetes makes it).
        for (field, set) in [
            ("finalizers", m.finalizers.is_some()),
            ("ownerReferences", m.owner_references.is_some()),
        ] {
            if set {
                e.add(
                    format!("spec.jobTemplate.metadata.{field}"),
                    "not supported by Flotilla: a CronJob's Jobs take only the template's labels and annotations",
                );
            }
        }
    }
    let none = Default::default();
    let job = template.spec.as_ref().unwrap_or(&none);
    if job.manual_selector == Some(true) {
        e.add(
            "spec.jobTemplate.spec.manualSelector",
            "Unsupported value: true: supported values: \"nil\", \"false\"",
        );
    }
    let mut inner = Errors(Vec::new());
    job_spec(&mut inner, job, None);
    for mut err in inner.0 {
        err.path = format!("spec.jobTemplate.{}", err.path);
        e.0.push(err);
    }
}

/// Validates a Job's spec (paths from `spec.`); `name` is the Job's own, whose generated
/// selector an update carries.
fn job_spec(e: &mut Errors, spec: &JobSpec, name: Option<&str>) {
    non_negative(e, "spec.completions", spec.completions);
    non_negative(e, "spec.parallelism", spec.parallelism);
    non_negative(e, "spec.backoffLimit", spec.backoff_limit);
    non_negative(
        e,
        "spec.ttlSecondsAfterFinished",
        spec.ttl_seconds_after_finished,
    );
    if let Some(d) = spec.active_deadline_seconds
        && d <= 0
    {
        e.add("spec.activeDeadlineSeconds", "must be greater than 0");
    }
    let none = PodSpec::default();
    let pod = spec.template.spec.as_ref().unwrap_or(&none);
    match spec.completion_mode.as_deref() {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if spec.completions.is_none() {
                e.add(
                    "spec.completions",
                    "Required value: when completion mode is Indexed",
                );
            }
            for (path, v) in [
                ("spec.completions", spec.completions),
                ("spec.parallelism", spec.parallelism),
            ] {
                if let Some(v) = v
                    && v > 100_000
                {
                    e.add(
                        path,
                        format!("Invalid value: {v}: must be less than or equal to 100000 when completion mode is Indexed"),
                    );
                }
            }
        }
        Some(other) => e.add(
            "spec.completionMode",
            format!("Unsupported value: {other:?}: supported values: \"NonIndexed\", \"Indexed\""),
        ),
    }
    if let Some(policy) = &spec.pod_failure_policy {
        pod_failure_policy(e, policy, pod);
    }
    if pod.restart_policy.is_none() {
        e.add(
            "spec.template.spec.restartPolicy",
            "required for a Job: \"OnFailure\" or \"Never\"",
        );
    }
    // The selector a stored Job carries is the one generated for it: an update keeps it.
    let generated = name.is_some_and(|n| {
        spec.selector.as_ref().is_some_and(|s| {
            s.match_expressions.is_none()
                && s.match_labels.as_ref().is_some_and(|l| {
                    l.len() == 1
                        && l.get(crate::manifest::defaults::JOB_NAME_LABEL)
                            .map(String::as_str)
                            == Some(n)
                })
        })
    });
    if spec.selector.is_some() && spec.manual_selector != Some(true) && !generated {
        e.add(
            "spec.selector",
            "is generated for a Job; set manualSelector: true to give your own",
        );
    }
    let sel = if spec.manual_selector == Some(true) {
        spec.selector.as_ref()
    } else {
        None
    };
    labels(
        e,
        "spec.template.metadata.labels",
        template_labels(&spec.template),
    );
    if let Some(sel) = sel {
        selector_matches_template(e, sel, &spec.template);
    }
    pod_spec(e, "spec.template.spec", pod, Some(&["OnFailure", "Never"]));
}

/// The labels of a pod template (none when it has no metadata).
fn template_labels(t: &PodTemplateSpec) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    t.metadata.as_ref().map_or(&EMPTY, |m| strings(&m.labels))
}

pub(super) fn replicas(e: &mut Errors, r: Option<i32>) {
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
    labels(e, "spec.template.metadata.labels", template_labels(t));
    match sel {
        None => e.add("spec.selector", "required"),
        Some(sel) if sel.match_labels.is_none() && sel.match_expressions.is_none() => {
            e.add("spec.selector", "required")
        }
        Some(sel) => selector_matches_template(e, sel, t),
    }
    let none = PodSpec::default();
    pod_spec(
        e,
        "spec.template.spec",
        t.spec.as_ref().unwrap_or(&none),
        restart,
    );
}

pub(super) fn selector_matches_template(e: &mut Errors, sel: &LabelSelector, t: &PodTemplateSpec) {
    match Selector::from_label_selector(sel) {
        Err(err) => e.add("spec.selector", err),
        Ok(s) if s.is_empty() => e.add("spec.selector", "must not be empty"),
        Ok(s) if !s.matches(template_labels(t)) => e.add(
            "spec.template.metadata.labels",
            format!(
                "selector {s:?} does not match the template's labels",
                s = s.to_string()
            ),
        ),
        Ok(_) => {}
    }
}

/// An update strategy: its type, and `rollingUpdate`'s `maxSurge` and `maxUnavailable` if given
/// (Deployments and DaemonSets spell the same fields with two types).
pub(super) fn strategy(
    e: &mut Errors,
    path: &str,
    ty: Option<&str>,
    rolling: Option<(Option<&IntOrString>, Option<&IntOrString>)>,
    types: &[&str],
    surge: bool,
) {
    let ty = ty.unwrap_or("RollingUpdate");
    if !types.contains(&ty) {
        e.add(
            format!("{path}.type"),
            format!("{ty:?} is not one of {}", types.join(", ")),
        );
    }
    let Some((max_surge, max_unavailable)) = rolling else {
        return;
    };
    if ty != "RollingUpdate" {
        e.add(
            format!("{path}.rollingUpdate"),
            format!("not allowed with type {ty:?}"),
        );
        return;
    }
    let su = max_surge.map(|v| int_or_percent(e, &format!("{path}.rollingUpdate.maxSurge"), v));
    let un = max_unavailable
        .map(|v| int_or_percent(e, &format!("{path}.rollingUpdate.maxUnavailable"), v));
    if !surge && max_surge.is_some() && un == Some(Some(0)) && su == Some(Some(0)) {
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
        IntOrString::Int(i) => Some(i64::from(*i)),
        IntOrString::String(s) => match s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) {
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

/// A Job's `podFailurePolicy`, with Kubernetes' rules: Never pods only, one kind of
/// requirement per rule, exit codes that can fail, names of the Job's own containers.
fn pod_failure_policy(e: &mut Errors, policy: &PodFailurePolicy, pod: &PodSpec) {
    let p = "spec.podFailurePolicy";
    if pod.restart_policy.as_deref() != Some("Never") {
        e.add(
            "spec.template.spec.restartPolicy",
            "Unsupported value: only \"Never\" is supported when podFailurePolicy is specified",
        );
    }
    if policy.rules.len() > 20 {
        e.add(
            format!("{p}.rules"),
            format!(
                "Too many: {}: must have at most 20 items",
                policy.rules.len()
            ),
        );
    }
    let names: Vec<&str> = pod
        .containers
        .iter()
        .chain(items(&pod.init_containers))
        .map(|c| c.name.as_str())
        .collect();
    for (i, r) in policy.rules.iter().enumerate() {
        let rp = format!("{p}.rules[{i}]");
        match r.action.as_str() {
            "FailJob" | "Ignore" | "Count" => {}
            "FailIndex" => e.add(
                format!("{rp}.action"),
                "FailIndex needs backoffLimitPerIndex, which is not supported by Flotilla yet",
            ),
            other => e.add(
                format!("{rp}.action"),
                format!("Unsupported value: {other:?}: supported values: \"Count\", \"FailJob\", \"Ignore\""),
            ),
        }
        match (&r.on_exit_codes, &r.on_pod_conditions) {
            (Some(_), Some(_)) | (None, None) => e.add(
                rp.clone(),
                "specifying one of OnExitCodes and OnPodConditions is required",
            ),
            (Some(codes), None) => {
                let cp = format!("{rp}.onExitCodes");
                if !["In", "NotIn"].contains(&codes.operator.as_str()) {
                    e.add(
                        format!("{cp}.operator"),
                        format!(
                            "Unsupported value: {:?}: supported values: \"In\", \"NotIn\"",
                            codes.operator
                        ),
                    );
                }
                if codes.values.is_empty() || codes.values.len() > 255 {
                    e.add(
                        format!("{cp}.values"),
                        "must have between 1 and 255 exit codes",
                    );
                }
                let unique: BTreeSet<i32> = codes.values.iter().copied().collect();
                if unique.len() != codes.values.len() {
                    e.add(
                        format!("{cp}.values"),
                        "Duplicate value: exit codes must be unique",
                    );
                }
                if codes.operator == "In" && codes.values.contains(&0) {
                    e.add(
                        format!("{cp}.values"),
                        "Invalid value: 0: must not be 0 for the In operator",
                    );
                }
                if let Some(n) = &codes.container_name
                    && !names.contains(&n.as_str())
                {
                    e.add(
                        format!("{cp}.containerName"),
                        format!("Invalid value: {n:?}: must be one of the container or initContainer names in the pod template"),
                    );
                }
            }
            (None, Some(patterns)) => {
                for (j, pat) in patterns.iter().enumerate() {
                    if pat.type_ == "DisruptionTarget" {
                        e.add(
                            format!("{rp}.onPodConditions[{j}].type"),
                            "DisruptionTarget is not supported by Flotilla yet: no pod is given that condition",
                        );
                    }
                    // (an empty status is defaulted to True, as Kubernetes)
                    if !["True", "False", "Unknown", ""].contains(&pat.status.as_str()) {
                        e.add(
                            format!("{rp}.onPodConditions[{j}].status"),
                            format!("Unsupported value: {:?}: supported values: \"True\", \"False\", \"Unknown\"", pat.status),
                        );
                    }
                }
            }
        }
    }
}
