//! Semantic validation of decoded manifests. Every problem is collected, so `apply` can list all
//! bad fields of a document at once; the messages follow Kubernetes' wording where it has one.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;

use super::types::*;
use super::{FieldError, Manifest, quantity};
use crate::selector::Selector;

/// Collects errors under a path prefix.
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push(FieldError::new(path, msg));
    }
}

/// Validates one decoded manifest; an empty result means it may be stored.
pub fn validate(m: &Manifest) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());
    match m {
        Manifest::Namespace(o) => {
            meta(&mut e, &o.metadata, NameRule::Label, false);
        }
        Manifest::ConfigMap(o) => {
            meta(&mut e, &o.metadata, NameRule::Subdomain, true);
            let mut size = 0;
            for (k, v) in &o.data {
                config_key(&mut e, &format!("data[{k}]"), k);
                size += k.len() + v.len();
            }
            for (k, v) in &o.binary_data {
                config_key(&mut e, &format!("binaryData[{k}]"), k);
                if o.data.contains_key(k) {
                    e.add(format!("binaryData[{k}]"), "duplicate of a key in data");
                }
                if base64::engine::general_purpose::STANDARD.decode(v).is_err() {
                    e.add(format!("binaryData[{k}]"), "is not valid base64");
                }
                size += k.len() + v.len();
            }
            if size > 1 << 20 {
                e.add(
                    "data",
                    format!("{size} bytes is more than the 1 MiB a ConfigMap may hold"),
                );
            }
        }
        Manifest::Secret(o) => {
            meta(&mut e, &o.metadata, NameRule::Subdomain, true);
            for (k, v) in &o.data {
                config_key(&mut e, &format!("data[{k}]"), k);
                if base64::engine::general_purpose::STANDARD.decode(v).is_err() {
                    e.add(
                        format!("data[{k}]"),
                        "is not valid base64 (use stringData for plain text)",
                    );
                }
            }
            for k in o.string_data.keys() {
                config_key(&mut e, &format!("stringData[{k}]"), k);
            }
        }
        Manifest::Service(o) => {
            meta(&mut e, &o.metadata, NameRule::Label, true);
            service(&mut e, &o.spec);
        }
        Manifest::Pod(o) => {
            meta(&mut e, &o.metadata, NameRule::Subdomain, true);
            pod_spec(&mut e, "spec", &o.spec, None);
        }
        Manifest::ReplicaSet(o) => {
            meta(&mut e, &o.metadata, NameRule::Subdomain, true);
            replicas(&mut e, o.spec.replicas);
            non_negative(&mut e, "spec.minReadySeconds", o.spec.min_ready_seconds);
            template(
                &mut e,
                o.spec.selector.as_ref(),
                &o.spec.template,
                Some(&["Always"]),
            );
        }
        Manifest::Deployment(o) => {
            meta(&mut e, &o.metadata, NameRule::Subdomain, true);
            replicas(&mut e, o.spec.replicas);
            non_negative(&mut e, "spec.minReadySeconds", o.spec.min_ready_seconds);
            non_negative(
                &mut e,
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
                &mut e,
                o.spec.selector.as_ref(),
                &o.spec.template,
                Some(&["Always"]),
            );
            if let Some(s) = &o.spec.strategy {
                strategy(
                    &mut e,
                    "spec.strategy",
                    s,
                    &["RollingUpdate", "Recreate"],
                    true,
                );
            }
        }
        Manifest::DaemonSet(o) => {
            meta(&mut e, &o.metadata, NameRule::Subdomain, true);
            template(
                &mut e,
                o.spec.selector.as_ref(),
                &o.spec.template,
                Some(&["Always"]),
            );
            if let Some(s) = &o.spec.update_strategy {
                strategy(
                    &mut e,
                    "spec.updateStrategy",
                    s,
                    &["RollingUpdate", "OnDelete"],
                    false,
                );
            }
        }
        Manifest::Job(o) => {
            meta(&mut e, &o.metadata, NameRule::Subdomain, true);
            non_negative(&mut e, "spec.completions", o.spec.completions);
            non_negative(&mut e, "spec.parallelism", o.spec.parallelism);
            non_negative(&mut e, "spec.backoffLimit", o.spec.backoff_limit);
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
                &mut e,
                "spec.template.metadata.labels",
                &o.spec.template.metadata.labels,
            );
            if let Some(sel) = sel {
                selector_matches_template(&mut e, sel, &o.spec.template);
            }
            pod_spec(
                &mut e,
                "spec.template.spec",
                &o.spec.template.spec,
                Some(&["OnFailure", "Never"]),
            );
        }
    }
    e.0
}

#[derive(Clone, Copy)]
enum NameRule {
    /// RFC 1123 label: at most 63 characters, no dots.
    Label,
    /// RFC 1123 subdomain: at most 253 characters, dots allowed.
    Subdomain,
}

fn meta(e: &mut Errors, m: &ObjectMeta, rule: NameRule, namespaced: bool) {
    if m.name.is_empty() {
        if m.generate_name.is_none() {
            e.add("metadata.name", "required");
        }
    } else {
        let err = match rule {
            NameRule::Label => dns_label_error(&m.name),
            NameRule::Subdomain => dns_subdomain_error(&m.name),
        };
        if let Some(err) = err {
            e.add("metadata.name", format!("{:?} {err}", m.name));
        }
    }
    if let Some(ns) = &m.namespace {
        if !namespaced {
            e.add(
                "metadata.namespace",
                "not allowed: this kind is not namespaced",
            );
        } else if let Some(err) = dns_label_error(ns) {
            e.add("metadata.namespace", format!("{ns:?} {err}"));
        }
    }
    labels(e, "metadata.labels", &m.labels);
    for k in m.annotations.keys() {
        if let Some(err) = label_key_error(k) {
            e.add(format!("metadata.annotations[{k}]"), format!("key {err}"));
        }
    }
    let size: usize = m.annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > 256 * 1024 {
        e.add(
            "metadata.annotations",
            "may not be larger than 256 KiB in all",
        );
    }
}

fn labels(e: &mut Errors, path: &str, l: &BTreeMap<String, String>) {
    for (k, v) in l {
        if let Some(err) = label_key_error(k) {
            e.add(format!("{path}[{k}]"), format!("key {err}"));
        }
        if let Some(err) = label_value_error(v) {
            e.add(format!("{path}[{k}]"), format!("value {v:?} {err}"));
        }
    }
}

fn replicas(e: &mut Errors, r: Option<i64>) {
    if let Some(r) = r
        && r < 0
    {
        e.add(
            "spec.replicas",
            format!("{r} must be greater than or equal to 0"),
        );
    }
}

fn non_negative(e: &mut Errors, path: &str, v: Option<i64>) {
    if let Some(v) = v
        && v < 0
    {
        e.add(path, format!("{v} must be greater than or equal to 0"));
    }
}

fn template(
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

fn selector_matches_template(e: &mut Errors, sel: &LabelSelector, t: &PodTemplateSpec) {
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

fn strategy(e: &mut Errors, path: &str, s: &DeploymentStrategy, types: &[&str], surge: bool) {
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
fn int_or_percent(e: &mut Errors, path: &str, v: &IntOrString) -> Option<i64> {
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

fn pod_spec(e: &mut Errors, p: &str, s: &PodSpec, restart_allowed: Option<&[&str]>) {
    if s.containers.is_empty() {
        e.add(
            format!("{p}.containers"),
            "required: a pod needs at least one container",
        );
    }
    let policies = ["Always", "OnFailure", "Never"];
    if let Some(rp) = &s.restart_policy {
        if !policies.contains(&rp.as_str()) {
            e.add(
                format!("{p}.restartPolicy"),
                format!("{rp:?} is not one of Always, OnFailure, Never"),
            );
        } else if let Some(allowed) = restart_allowed
            && !allowed.contains(&rp.as_str())
        {
            e.add(
                format!("{p}.restartPolicy"),
                format!("{rp:?} is not allowed here; use {}", allowed.join(" or ")),
            );
        }
    }
    if let Some(g) = s.termination_grace_period_seconds
        && g < 0
    {
        e.add(
            format!("{p}.terminationGracePeriodSeconds"),
            format!("{g} must be greater than or equal to 0"),
        );
    }
    if let Some(d) = s.active_deadline_seconds
        && d <= 0
    {
        e.add(
            format!("{p}.activeDeadlineSeconds"),
            "must be greater than 0",
        );
    }
    if let Some(n) = &s.node_name
        && let Some(err) = dns_subdomain_error(n)
    {
        e.add(format!("{p}.nodeName"), format!("{n:?} {err}"));
    }
    labels(e, &format!("{p}.nodeSelector"), &s.node_selector);
    if let Some(dp) = &s.dns_policy
        && !["ClusterFirst", "Default", "None", "ClusterFirstWithHostNet"].contains(&dp.as_str())
    {
        e.add(
            format!("{p}.dnsPolicy"),
            format!("{dp:?} is not one of ClusterFirst, Default, None, ClusterFirstWithHostNet"),
        );
    }
    for (i, t) in s.tolerations.iter().enumerate() {
        toleration(e, &format!("{p}.tolerations[{i}]"), t);
    }
    if let Some(na) = s.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()) {
        node_affinity(e, &format!("{p}.affinity.nodeAffinity"), na);
    }
    for (i, c) in s.topology_spread_constraints.iter().enumerate() {
        spread_constraint(e, &format!("{p}.topologySpreadConstraints[{i}]"), c);
    }

    // Volumes: unique names, exactly one source each.
    let mut volumes = BTreeSet::new();
    for (i, v) in s.volumes.iter().enumerate() {
        let vp = format!("{p}.volumes[{i}]");
        match dns_label_error(&v.name) {
            _ if v.name.is_empty() => e.add(format!("{vp}.name"), "required"),
            Some(err) => e.add(format!("{vp}.name"), format!("{:?} {err}", v.name)),
            None if !volumes.insert(v.name.as_str()) => e.add(
                format!("{vp}.name"),
                format!("duplicate volume name {:?}", v.name),
            ),
            None => {}
        }
        let sources = [
            v.empty_dir.is_some(),
            v.host_path.is_some(),
            v.config_map.is_some(),
            v.secret.is_some(),
        ];
        match sources.iter().filter(|x| **x).count() {
            0 => e.add(
                &vp,
                "must have one source: emptyDir, hostPath, configMap or secret",
            ),
            1 => {}
            _ => e.add(
                &vp,
                "may have only one source of emptyDir, hostPath, configMap and secret",
            ),
        }
        if let Some(ed) = &v.empty_dir {
            if let Some(m) = &ed.medium
                && !m.is_empty()
                && m != "Memory"
            {
                e.add(
                    format!("{vp}.emptyDir.medium"),
                    format!("{m:?} is not \"\" or \"Memory\""),
                );
            }
            if let Some(q) = &ed.size_limit
                && let Err(err) = quantity::parse_units(&q.0)
            {
                e.add(format!("{vp}.emptyDir.sizeLimit"), err);
            }
        }
        if let Some(hp) = &v.host_path {
            if !hp.path.starts_with('/') {
                e.add(
                    format!("{vp}.hostPath.path"),
                    format!("{:?} must be an absolute path", hp.path),
                );
            }
            let types = [
                "",
                "DirectoryOrCreate",
                "Directory",
                "FileOrCreate",
                "File",
                "Socket",
                "CharDevice",
                "BlockDevice",
            ];
            if let Some(t) = &hp.type_
                && !types.contains(&t.as_str())
            {
                e.add(
                    format!("{vp}.hostPath.type"),
                    format!("{t:?} is not a hostPath type"),
                );
            }
        }
        if let Some(cm) = &v.config_map {
            if cm.name.is_empty() {
                e.add(format!("{vp}.configMap.name"), "required");
            }
            key_paths(e, &format!("{vp}.configMap"), &cm.items, cm.default_mode);
        }
        if let Some(sec) = &v.secret {
            if sec.secret_name.is_empty() {
                e.add(format!("{vp}.secret.secretName"), "required");
            }
            key_paths(e, &format!("{vp}.secret"), &sec.items, sec.default_mode);
        }
    }

    // Containers: names unique across init and app containers; ports unique in the pod.
    let mut names = BTreeSet::new();
    let mut ports: BTreeSet<(i64, String)> = BTreeSet::new();
    let mut host_ports: BTreeSet<(i64, String)> = BTreeSet::new();
    let all = s
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{p}.initContainers[{i}]"), c, true))
        .chain(
            s.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{p}.containers[{i}]"), c, false)),
        );
    for (cp, c, init) in all {
        if c.name.is_empty() {
            e.add(format!("{cp}.name"), "required");
        } else if let Some(err) = dns_label_error(&c.name) {
            e.add(format!("{cp}.name"), format!("{:?} {err}", c.name));
        } else if !names.insert(c.name.clone()) {
            e.add(
                format!("{cp}.name"),
                format!("duplicate container name {:?}", c.name),
            );
        }
        container(e, &cp, c, &volumes, &mut ports, &mut host_ports, init);
    }
}

fn key_paths(e: &mut Errors, p: &str, items: &[KeyToPath], default_mode: Option<i64>) {
    mode(e, &format!("{p}.defaultMode"), default_mode);
    for (i, it) in items.iter().enumerate() {
        if it.key.is_empty() {
            e.add(format!("{p}.items[{i}].key"), "required");
        }
        if it.path.is_empty() || it.path.starts_with('/') || it.path.split('/').any(|s| s == "..") {
            e.add(
                format!("{p}.items[{i}].path"),
                format!("{:?} must be a relative path without '..'", it.path),
            );
        }
        mode(e, &format!("{p}.items[{i}].mode"), it.mode);
    }
}

fn mode(e: &mut Errors, p: &str, m: Option<i64>) {
    if let Some(m) = m
        && !(0..=0o777).contains(&m)
    {
        e.add(
            p,
            format!("{m} must be a file mode between 0 and 0777 (511)"),
        );
    }
}

fn toleration(e: &mut Errors, p: &str, t: &Toleration) {
    let op = t.operator.as_deref().unwrap_or("Equal");
    if !["Equal", "Exists"].contains(&op) {
        e.add(
            format!("{p}.operator"),
            format!("{op:?} is not one of Equal, Exists"),
        );
    }
    if op == "Exists" && t.value.as_deref().is_some_and(|v| !v.is_empty()) {
        e.add(
            format!("{p}.value"),
            "must be empty when operator is Exists",
        );
    }
    if t.key.as_deref().unwrap_or("").is_empty() && op != "Exists" {
        e.add(format!("{p}.operator"), "must be Exists when key is empty");
    }
    if let Some(eff) = &t.effect {
        if !["NoSchedule", "PreferNoSchedule", "NoExecute", ""].contains(&eff.as_str()) {
            e.add(
                format!("{p}.effect"),
                format!("{eff:?} is not one of NoSchedule, PreferNoSchedule, NoExecute"),
            );
        }
        if t.toleration_seconds.is_some() && eff != "NoExecute" {
            e.add(
                format!("{p}.tolerationSeconds"),
                "only allowed with effect NoExecute",
            );
        }
    }
}

fn node_affinity(e: &mut Errors, p: &str, na: &NodeAffinity) {
    if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
        let rp = format!("{p}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms");
        if req.node_selector_terms.is_empty() {
            e.add(&rp, "must have at least one term");
        }
        for (i, t) in req.node_selector_terms.iter().enumerate() {
            node_selector_term(e, &format!("{rp}[{i}]"), t);
        }
    }
    for (i, t) in na
        .preferred_during_scheduling_ignored_during_execution
        .iter()
        .enumerate()
    {
        let tp = format!("{p}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
        if !(1..=100).contains(&t.weight) {
            e.add(
                format!("{tp}.weight"),
                format!("{} is not in 1-100", t.weight),
            );
        }
        node_selector_term(e, &format!("{tp}.preference"), &t.preference);
    }
}

fn node_selector_term(e: &mut Errors, p: &str, t: &NodeSelectorTerm) {
    if t.match_expressions.is_empty() && t.match_fields.is_empty() {
        e.add(p, "must have matchExpressions or matchFields");
    }
    for (i, r) in t.match_expressions.iter().enumerate() {
        let rp = format!("{p}.matchExpressions[{i}]");
        if r.key.is_empty() {
            e.add(format!("{rp}.key"), "required");
        } else if let Some(err) = label_key_error(&r.key) {
            e.add(format!("{rp}.key"), format!("{:?} {err}", r.key));
        }
        match r.operator.as_str() {
            "In" | "NotIn" if r.values.is_empty() => e.add(
                format!("{rp}.values"),
                format!("must be non-empty for {}", r.operator),
            ),
            "Exists" | "DoesNotExist" if !r.values.is_empty() => e.add(
                format!("{rp}.values"),
                format!("must be empty for {}", r.operator),
            ),
            "Gt" | "Lt" if r.values.len() != 1 || r.values[0].parse::<i64>().is_err() => e.add(
                format!("{rp}.values"),
                format!("must be one integer for {}", r.operator),
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            "" => e.add(format!("{rp}.operator"), "required"),
            other => e.add(
                format!("{rp}.operator"),
                format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist, Gt, Lt"),
            ),
        }
    }
    for (i, r) in t.match_fields.iter().enumerate() {
        let rp = format!("{p}.matchFields[{i}]");
        if r.key != "metadata.name" {
            e.add(
                format!("{rp}.key"),
                format!("{:?} is not supported: only metadata.name", r.key),
            );
        }
        if !["In", "NotIn"].contains(&r.operator.as_str()) {
            e.add(
                format!("{rp}.operator"),
                format!("{:?} is not one of In, NotIn", r.operator),
            );
        }
        if r.values.is_empty() {
            e.add(format!("{rp}.values"), "must be non-empty");
        }
    }
}

fn spread_constraint(e: &mut Errors, p: &str, c: &TopologySpreadConstraint) {
    if c.max_skew < 1 {
        e.add(
            format!("{p}.maxSkew"),
            format!("{} must be greater than 0", c.max_skew),
        );
    }
    if c.topology_key.is_empty() {
        e.add(format!("{p}.topologyKey"), "required");
    } else if let Some(err) = label_key_error(&c.topology_key) {
        e.add(
            format!("{p}.topologyKey"),
            format!("{:?} {err}", c.topology_key),
        );
    }
    match c.when_unsatisfiable.as_str() {
        "DoNotSchedule" | "ScheduleAnyway" => {}
        "" => e.add(format!("{p}.whenUnsatisfiable"), "required"),
        other => e.add(
            format!("{p}.whenUnsatisfiable"),
            format!("{other:?} is not one of DoNotSchedule, ScheduleAnyway"),
        ),
    }
    if let Some(ls) = &c.label_selector
        && let Err(err) = Selector::from_label_selector(ls)
    {
        e.add(format!("{p}.labelSelector"), err);
    }
}

fn port_number(e: &mut Errors, p: &str, n: i64) {
    if !(1..=65535).contains(&n) {
        e.add(p, format!("{n} is not in 1-65535"));
    }
}

fn protocol(e: &mut Errors, p: &str, proto: Option<&str>) -> String {
    let proto = proto.unwrap_or("TCP");
    if !["TCP", "UDP", "SCTP"].contains(&proto) {
        e.add(p, format!("{proto:?} is not one of TCP, UDP, SCTP"));
    }
    proto.to_string()
}

#[allow(clippy::too_many_arguments)]
fn container(
    e: &mut Errors,
    cp: &str,
    c: &Container,
    volumes: &BTreeSet<&str>,
    ports: &mut BTreeSet<(i64, String)>,
    host_ports: &mut BTreeSet<(i64, String)>,
    init: bool,
) {
    if c.image.trim().is_empty() {
        e.add(format!("{cp}.image"), "required");
    } else if c.image.chars().any(char::is_whitespace) {
        e.add(
            format!("{cp}.image"),
            format!("{:?} must not contain spaces", c.image),
        );
    }
    if let Some(pp) = &c.image_pull_policy
        && !["Always", "IfNotPresent", "Never"].contains(&pp.as_str())
    {
        e.add(
            format!("{cp}.imagePullPolicy"),
            format!("{pp:?} is not one of Always, IfNotPresent, Never"),
        );
    }
    if let Some(wd) = &c.working_dir
        && !wd.starts_with('/')
    {
        e.add(
            format!("{cp}.workingDir"),
            format!("{wd:?} must be an absolute path"),
        );
    }

    let mut port_names = BTreeSet::new();
    for (i, port) in c.ports.iter().enumerate() {
        let pp = format!("{cp}.ports[{i}]");
        port_number(e, &format!("{pp}.containerPort"), port.container_port);
        let proto = protocol(e, &format!("{pp}.protocol"), port.protocol.as_deref());
        if let Some(name) = &port.name {
            if let Some(err) = port_name_error(name) {
                e.add(format!("{pp}.name"), format!("{name:?} {err}"));
            } else if !port_names.insert(name.clone()) {
                e.add(
                    format!("{pp}.name"),
                    format!("duplicate port name {name:?}"),
                );
            }
        }
        if (1..=65535).contains(&port.container_port)
            && !ports.insert((port.container_port, proto.clone()))
        {
            e.add(
                format!("{pp}.containerPort"),
                format!("duplicate port {}/{proto} in this pod", port.container_port),
            );
        }
        if let Some(hp) = port.host_port {
            port_number(e, &format!("{pp}.hostPort"), hp);
            if !host_ports.insert((hp, proto.clone())) {
                e.add(
                    format!("{pp}.hostPort"),
                    format!("duplicate host port {hp}/{proto} in this pod"),
                );
            }
        }
    }

    for (i, env) in c.env.iter().enumerate() {
        let ep = format!("{cp}.env[{i}]");
        if env.name.is_empty() {
            e.add(format!("{ep}.name"), "required");
        } else if env.name.contains('=') || env.name.chars().any(char::is_control) {
            e.add(
                format!("{ep}.name"),
                format!("{:?} may not contain '=' or control characters", env.name),
            );
        }
        match (&env.value, &env.value_from) {
            (Some(_), Some(_)) => e.add(&ep, "may not have both value and valueFrom"),
            (_, Some(vf)) => {
                let n = [
                    vf.config_map_key_ref.is_some(),
                    vf.secret_key_ref.is_some(),
                    vf.field_ref.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if n != 1 {
                    e.add(
                        format!("{ep}.valueFrom"),
                        "must have exactly one of configMapKeyRef, secretKeyRef, fieldRef",
                    );
                }
                for (what, r) in [
                    ("configMapKeyRef", &vf.config_map_key_ref),
                    ("secretKeyRef", &vf.secret_key_ref),
                ] {
                    if let Some(r) = r {
                        if r.name.is_empty() {
                            e.add(format!("{ep}.valueFrom.{what}.name"), "required");
                        }
                        if r.key.is_empty() {
                            e.add(format!("{ep}.valueFrom.{what}.key"), "required");
                        }
                    }
                }
                if let Some(f) = &vf.field_ref {
                    const FIELDS: &[&str] = &[
                        "metadata.name",
                        "metadata.namespace",
                        "metadata.uid",
                        "spec.nodeName",
                        "spec.serviceAccountName",
                        "status.podIP",
                        "status.hostIP",
                    ];
                    let ok = FIELDS.contains(&f.field_path.as_str())
                        || f.field_path.starts_with("metadata.labels[")
                        || f.field_path.starts_with("metadata.annotations[");
                    if !ok {
                        e.add(
                            format!("{ep}.valueFrom.fieldRef.fieldPath"),
                            format!(
                                "{:?} is not supported; use one of {}",
                                f.field_path,
                                FIELDS.join(", ")
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    for (i, ef) in c.env_from.iter().enumerate() {
        let ep = format!("{cp}.envFrom[{i}]");
        match (&ef.config_map_ref, &ef.secret_ref) {
            (Some(_), Some(_)) | (None, None) => {
                e.add(&ep, "must have exactly one of configMapRef, secretRef")
            }
            (Some(r), None) | (None, Some(r)) if r.name.is_empty() => {
                e.add(&ep, "name of the referenced object is required")
            }
            _ => {}
        }
    }

    resources(e, &format!("{cp}.resources"), &c.resources);

    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let mp = format!("{cp}.volumeMounts[{i}]");
        if m.name.is_empty() {
            e.add(format!("{mp}.name"), "required");
        } else if !volumes.contains(m.name.as_str()) {
            e.add(
                format!("{mp}.name"),
                format!("volume {:?} is not in spec.volumes", m.name),
            );
        }
        if !m.mount_path.starts_with('/') {
            e.add(
                format!("{mp}.mountPath"),
                format!("{:?} must be an absolute path", m.mount_path),
            );
        } else if !mount_paths.insert(m.mount_path.clone()) {
            e.add(
                format!("{mp}.mountPath"),
                format!("duplicate mount path {:?}", m.mount_path),
            );
        }
        if let Some(sp) = &m.sub_path
            && (sp.starts_with('/') || sp.split('/').any(|s| s == ".."))
        {
            e.add(
                format!("{mp}.subPath"),
                format!("{sp:?} must be a relative path without '..'"),
            );
        }
    }

    let named: BTreeSet<&str> = c.ports.iter().filter_map(|p| p.name.as_deref()).collect();
    for (what, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        let Some(pr) = probe else { continue };
        let pp = format!("{cp}.{what}");
        if init {
            e.add(&pp, "not allowed on init containers");
        }
        handler(
            e,
            &pp,
            pr.exec.as_ref(),
            pr.http_get.as_ref(),
            pr.tcp_socket.as_ref(),
            &named,
        );
        for (f, v, min) in [
            ("initialDelaySeconds", pr.initial_delay_seconds, 0),
            ("periodSeconds", pr.period_seconds, 1),
            ("timeoutSeconds", pr.timeout_seconds, 1),
            ("failureThreshold", pr.failure_threshold, 1),
            ("successThreshold", pr.success_threshold, 1),
        ] {
            if let Some(v) = v
                && v < min
            {
                e.add(
                    format!("{pp}.{f}"),
                    format!("{v} must be greater than or equal to {min}"),
                );
            }
        }
        if what != "readinessProbe" && pr.success_threshold.is_some_and(|s| s != 1) {
            e.add(
                format!("{pp}.successThreshold"),
                "must be 1 for liveness and startup probes",
            );
        }
    }
    if let Some(lc) = &c.lifecycle {
        for (what, h) in [("postStart", &lc.post_start), ("preStop", &lc.pre_stop)] {
            if let Some(h) = h {
                let hp = format!("{cp}.lifecycle.{what}");
                handler(
                    e,
                    &hp,
                    h.exec.as_ref(),
                    h.http_get.as_ref(),
                    h.tcp_socket.as_ref(),
                    &named,
                );
            }
        }
    }
    if let Some(sc) = &c.security_context {
        for (f, v) in [
            ("runAsUser", sc.run_as_user),
            ("runAsGroup", sc.run_as_group),
        ] {
            if let Some(v) = v
                && !(0..=i64::from(u32::MAX)).contains(&v)
            {
                e.add(
                    format!("{cp}.securityContext.{f}"),
                    format!("{v} is not a valid id"),
                );
            }
        }
        if sc.privileged == Some(true) {
            e.add(
                format!("{cp}.securityContext.privileged"),
                "privileged containers are not supported",
            );
        }
    }
}

fn handler(
    e: &mut Errors,
    p: &str,
    exec: Option<&ExecAction>,
    http: Option<&HttpGetAction>,
    tcp: Option<&TcpSocketAction>,
    named_ports: &BTreeSet<&str>,
) {
    let n = [exec.is_some(), http.is_some(), tcp.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if n != 1 {
        e.add(p, "must have exactly one of exec, httpGet, tcpSocket");
    }
    if let Some(x) = exec
        && x.command.is_empty()
    {
        e.add(format!("{p}.exec.command"), "required");
    }
    let check_port = |e: &mut Errors, what: &str, port: &IntOrString| match port {
        IntOrString::Int(n) => port_number(e, &format!("{p}.{what}.port"), *n),
        IntOrString::Str(s) if !named_ports.contains(s.as_str()) => e.add(
            format!("{p}.{what}.port"),
            format!("{s:?} is not the name of one of the container's ports"),
        ),
        IntOrString::Str(_) => {}
    };
    if let Some(h) = http {
        check_port(e, "httpGet", &h.port);
        if let Some(s) = &h.scheme
            && s != "HTTP"
            && s != "HTTPS"
        {
            e.add(
                format!("{p}.httpGet.scheme"),
                format!("{s:?} is not one of HTTP, HTTPS"),
            );
        }
    }
    if let Some(t) = tcp {
        check_port(e, "tcpSocket", &t.port);
    }
}

fn resources(e: &mut Errors, p: &str, r: &ResourceRequirements) {
    const KNOWN: &[&str] = &["cpu", "memory", "ephemeral-storage", "pids"];
    let mut parsed = BTreeMap::new();
    for (section, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (k, q) in map {
            let fp = format!("{p}.{section}.{k}");
            if !KNOWN.contains(&k.as_str()) {
                e.add(
                    &fp,
                    format!("unsupported resource; use one of {}", KNOWN.join(", ")),
                );
                continue;
            }
            let v = if k == "cpu" {
                quantity::parse_milli(&q.0)
            } else {
                quantity::parse_units(&q.0)
            };
            match v {
                Ok(v) => {
                    parsed.insert((section, k.as_str()), v);
                }
                Err(err) => e.add(&fp, err),
            }
        }
    }
    for k in KNOWN {
        if let (Some(req), Some(lim)) = (parsed.get(&("requests", *k)), parsed.get(&("limits", *k)))
            && req > lim
        {
            e.add(
                format!("{p}.requests.{k}"),
                format!("must be less than or equal to the {k} limit"),
            );
        }
    }
}

fn service(e: &mut Errors, s: &ServiceSpec) {
    let ty = s.type_.as_deref().unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort"].contains(&ty) {
        e.add(
            "spec.type",
            format!("{ty:?} is not supported; use ClusterIP or NodePort"),
        );
    }
    labels(e, "spec.selector", &s.selector);
    if let Some(ip) = &s.cluster_ip {
        if !ip.is_empty() && ip != "None" && ip.parse::<std::net::Ipv4Addr>().is_err() {
            e.add(
                "spec.clusterIP",
                format!("{ip:?} must be empty, \"None\" or an IPv4 address"),
            );
        }
        if ip == "None" && ty == "NodePort" {
            e.add(
                "spec.clusterIP",
                "a headless service (None) cannot be of type NodePort",
            );
        }
    }
    if s.ports.is_empty() && s.cluster_ip.as_deref() != Some("None") {
        e.add("spec.ports", "required");
    }
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for (i, port) in s.ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        port_number(e, &format!("{pp}.port"), port.port);
        let proto = protocol(e, &format!("{pp}.protocol"), port.protocol.as_deref());
        match &port.name {
            None if s.ports.len() > 1 => e.add(
                format!("{pp}.name"),
                "required when a service has more than one port",
            ),
            None => {}
            Some(n) => {
                if let Some(err) = dns_label_error(n) {
                    e.add(format!("{pp}.name"), format!("{n:?} {err}"));
                } else if !names.insert(n.clone()) {
                    e.add(format!("{pp}.name"), format!("duplicate port name {n:?}"));
                }
            }
        }
        if (1..=65535).contains(&port.port) && !seen.insert((port.port, proto.clone())) {
            e.add(
                format!("{pp}.port"),
                format!("duplicate port {}/{proto}", port.port),
            );
        }
        match &port.target_port {
            Some(IntOrString::Int(n)) => port_number(e, &format!("{pp}.targetPort"), *n),
            Some(IntOrString::Str(n)) => {
                if let Some(err) = port_name_error(n) {
                    e.add(format!("{pp}.targetPort"), format!("{n:?} {err}"));
                }
            }
            None => {}
        }
        if let Some(np) = port.node_port {
            if ty != "NodePort" {
                e.add(
                    format!("{pp}.nodePort"),
                    "only allowed when spec.type is NodePort",
                );
            } else if !(30000..=32767).contains(&np) {
                e.add(
                    format!("{pp}.nodePort"),
                    format!("{np} is not in the NodePort range 30000-32767"),
                );
            } else if !node_ports.insert(np) {
                e.add(format!("{pp}.nodePort"), format!("duplicate nodePort {np}"));
            }
        }
    }
    let aff = s.session_affinity.as_deref().unwrap_or("None");
    if !["None", "ClientIP"].contains(&aff) {
        e.add(
            "spec.sessionAffinity",
            format!("{aff:?} is not one of None, ClientIP"),
        );
    }
    if let Some(t) = s
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
    {
        if aff != "ClientIP" {
            e.add(
                "spec.sessionAffinityConfig",
                "only allowed when sessionAffinity is ClientIP",
            );
        } else if !(1..=86400).contains(&t) {
            e.add(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                format!("{t} is not in 1-86400"),
            );
        }
    }
}

fn config_key(e: &mut Errors, p: &str, k: &str) {
    let ok = !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && k != "."
        && k != ".."
        && !k.starts_with("..");
    if !ok {
        e.add(
            p,
            "key must consist of letters, digits, '-', '_' or '.', at most 253 characters",
        );
    }
}

/// Why `s` is not an RFC 1123 label (lower-case letters, digits and '-', at most 63 characters,
/// starting and ending with a letter or digit), or `None` if it is one.
pub fn dns_label_error(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > 63 {
        return Some(format!("is {} characters, more than 63", s.len()));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some(
            "is not a DNS-1123 label: only lower-case letters, digits and '-' are allowed".into(),
        );
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("is not a DNS-1123 label: must start and end with a letter or digit".into());
    }
    None
}

/// Why `s` is not an RFC 1123 subdomain (labels joined by dots, at most 253 characters).
pub fn dns_subdomain_error(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some(format!("is {} characters, more than 253", s.len()));
    }
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    let ok = s.split('.').all(|l| {
        !l.is_empty()
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    });
    (!ok).then(|| {
        "is not a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit".into()
    })
}

/// Why `s` is not a port name (IANA service name: at most 15 characters, lower-case letters,
/// digits and '-', at least one letter).
pub fn port_name_error(s: &str) -> Option<String> {
    if s.len() > 15 {
        return Some("must be at most 15 characters".into());
    }
    if let Some(e) = dns_label_error(s) {
        return Some(e);
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        return Some("must contain at least one letter".into());
    }
    if s.contains("--") {
        return Some("must not contain '--'".into());
    }
    None
}

/// Why `k` is not a label key (`[prefix/]name`, name at most 63 characters of letters, digits,
/// '-', '_' and '.', starting and ending alphanumeric; prefix a DNS subdomain).
pub fn label_key_error(k: &str) -> Option<String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && let Some(e) = dns_subdomain_error(p)
    {
        return Some(format!("prefix {p:?} {e}"));
    }
    if name.is_empty() {
        return Some("name part must not be empty".into());
    }
    qualified_name_error(name)
}

/// Why `v` is not a label value (empty, or like a key's name part).
pub fn label_value_error(v: &str) -> Option<String> {
    if v.is_empty() {
        None
    } else {
        qualified_name_error(v)
    }
}

fn qualified_name_error(n: &str) -> Option<String> {
    if n.len() > 63 {
        return Some("must be at most 63 characters".into());
    }
    let ok = n
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| {
        "must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            .into()
    })
}
