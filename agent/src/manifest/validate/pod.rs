//! Pods and pod templates: containers, ports, probes and hooks, volumes, resources,
//! tolerations, affinity and spread constraints.

use super::*;

/// Validates a Pod.
pub(super) fn pod(e: &mut Errors, o: &Pod) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    let none = PodSpec::default();
    pod_spec(e, "spec", o.spec.as_ref().unwrap_or(&none), None);
}

pub(super) fn pod_spec(e: &mut Errors, p: &str, s: &PodSpec, restart_allowed: Option<&[&str]>) {
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
    labels(e, &format!("{p}.nodeSelector"), strings(&s.node_selector));
    // Accepted fields that would otherwise do nothing are refused until they work.
    if s.host_network == Some(true) {
        e.add(
            format!("{p}.hostNetwork"),
            "true is not supported by Flotilla yet: pods run in their own network namespace",
        );
    }
    if let Some(n) = s.priority
        && n != 0
    {
        e.add(
            format!("{p}.priority"),
            format!("Forbidden: the integer value of priority ({n}) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"),
        );
    }
    if s.dns_policy.as_deref() == Some("None") {
        e.add(
            format!("{p}.dnsPolicy"),
            "\"None\" needs dnsConfig, which is not supported by Flotilla yet",
        );
    }
    if let Some(dp) = &s.dns_policy
        && !["ClusterFirst", "Default", "None", "ClusterFirstWithHostNet"].contains(&dp.as_str())
    {
        e.add(
            format!("{p}.dnsPolicy"),
            format!("{dp:?} is not one of ClusterFirst, Default, None, ClusterFirstWithHostNet"),
        );
    }
    for (i, t) in items(&s.tolerations).iter().enumerate() {
        toleration(e, &format!("{p}.tolerations[{i}]"), t);
    }
    if let Some(na) = s.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()) {
        node_affinity(e, &format!("{p}.affinity.nodeAffinity"), na);
    }
    for (i, c) in items(&s.topology_spread_constraints).iter().enumerate() {
        spread_constraint(e, &format!("{p}.topologySpreadConstraints[{i}]"), c);
    }

    // Volumes: unique names, exactly one source each.
    let mut volumes = BTreeSet::new();
    for (i, v) in items(&s.volumes).iter().enumerate() {
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
            key_paths(
                e,
                &format!("{vp}.configMap"),
                items(&cm.items),
                cm.default_mode,
            );
        }
        if let Some(sec) = &v.secret {
            if sec.secret_name.as_deref().unwrap_or_default().is_empty() {
                e.add(format!("{vp}.secret.secretName"), "required");
            }
            key_paths(
                e,
                &format!("{vp}.secret"),
                items(&sec.items),
                sec.default_mode,
            );
        }
    }

    // Containers: names unique across init and app containers; ports unique in the pod.
    let mut names = BTreeSet::new();
    let mut ports: BTreeSet<(i32, String)> = BTreeSet::new();
    let mut host_ports: BTreeSet<(i32, String)> = BTreeSet::new();
    let all = items(&s.init_containers)
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
        // A preStop pause must end within the grace period (Kubernetes 1.31's rule).
        let grace = s.termination_grace_period_seconds.unwrap_or(30);
        if let Some(sl) = c
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref()?.sleep.as_ref())
            && (sl.seconds <= 0 || sl.seconds > grace)
        {
            e.add(
                format!("{cp}.lifecycle.preStop.sleep.seconds"),
                format!(
                    "Invalid value: {}: must be greater than 0 and less than terminationGracePeriodSeconds ({grace})",
                    sl.seconds
                ),
            );
        }
    }
}

pub(super) fn key_paths(e: &mut Errors, p: &str, keys: &[KeyToPath], default_mode: Option<i32>) {
    mode(e, &format!("{p}.defaultMode"), default_mode);
    for (i, it) in keys.iter().enumerate() {
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

pub(super) fn mode(e: &mut Errors, p: &str, m: Option<i32>) {
    if let Some(m) = m
        && !(0..=0o777).contains(&m)
    {
        e.add(
            p,
            format!("{m} must be a file mode between 0 and 0777 (511)"),
        );
    }
}

pub(super) fn toleration(e: &mut Errors, p: &str, t: &Toleration) {
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

pub(super) fn node_affinity(e: &mut Errors, p: &str, na: &NodeAffinity) {
    if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
        let rp = format!("{p}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms");
        if req.node_selector_terms.is_empty() {
            e.add(&rp, "must have at least one term");
        }
        for (i, t) in req.node_selector_terms.iter().enumerate() {
            node_selector_term(e, &format!("{rp}[{i}]"), t);
        }
    }
    let preferred = items(&na.preferred_during_scheduling_ignored_during_execution);
    for (i, t) in preferred.iter().enumerate() {
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

pub(super) fn node_selector_term(e: &mut Errors, p: &str, t: &NodeSelectorTerm) {
    let (exprs, fields) = (items(&t.match_expressions), items(&t.match_fields));
    if exprs.is_empty() && fields.is_empty() {
        e.add(p, "must have matchExpressions or matchFields");
    }
    for (i, r) in exprs.iter().enumerate() {
        let rp = format!("{p}.matchExpressions[{i}]");
        let values = items(&r.values);
        if r.key.is_empty() {
            e.add(format!("{rp}.key"), "required");
        } else if let Some(err) = label_key_error(&r.key) {
            e.add(format!("{rp}.key"), format!("{:?} {err}", r.key));
        }
        match r.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => e.add(
                format!("{rp}.values"),
                format!("must be non-empty for {}", r.operator),
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => e.add(
                format!("{rp}.values"),
                format!("must be empty for {}", r.operator),
            ),
            "Gt" | "Lt" if values.len() != 1 || values[0].parse::<i64>().is_err() => e.add(
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
    for (i, r) in fields.iter().enumerate() {
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
        if items(&r.values).is_empty() {
            e.add(format!("{rp}.values"), "must be non-empty");
        }
    }
}

pub(super) fn spread_constraint(e: &mut Errors, p: &str, c: &TopologySpreadConstraint) {
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

#[allow(clippy::too_many_arguments)]
pub(super) fn container(
    e: &mut Errors,
    cp: &str,
    c: &Container,
    volumes: &BTreeSet<&str>,
    ports: &mut BTreeSet<(i32, String)>,
    host_ports: &mut BTreeSet<(i32, String)>,
    init: bool,
) {
    let image = c.image.as_deref().unwrap_or_default();
    if image.trim().is_empty() {
        e.add(format!("{cp}.image"), "required");
    } else if image.chars().any(char::is_whitespace) {
        e.add(
            format!("{cp}.image"),
            format!("{image:?} must not contain spaces"),
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

    if c.tty == Some(true) {
        e.add(
            format!("{cp}.tty"),
            "a terminal for the container's own process is not supported (stdin: true and kubectl attach -i are; kubectl exec -t gives a terminal)",
        );
    }

    let mut port_names = BTreeSet::new();
    for (i, port) in items(&c.ports).iter().enumerate() {
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

    for (i, env) in items(&c.env).iter().enumerate() {
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
                let refs = [
                    (
                        "configMapKeyRef",
                        vf.config_map_key_ref.as_ref().map(|r| (&r.name, &r.key)),
                    ),
                    (
                        "secretKeyRef",
                        vf.secret_key_ref.as_ref().map(|r| (&r.name, &r.key)),
                    ),
                ];
                for (what, r) in refs {
                    if let Some((name, key)) = r {
                        if name.is_empty() {
                            e.add(format!("{ep}.valueFrom.{what}.name"), "required");
                        }
                        if key.is_empty() {
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
    for (i, ef) in items(&c.env_from).iter().enumerate() {
        let ep = format!("{cp}.envFrom[{i}]");
        let names = (
            ef.config_map_ref.as_ref().map(|r| &r.name),
            ef.secret_ref.as_ref().map(|r| &r.name),
        );
        match names {
            (Some(_), Some(_)) | (None, None) => {
                e.add(&ep, "must have exactly one of configMapRef, secretRef")
            }
            (Some(name), None) | (None, Some(name)) if name.is_empty() => {
                e.add(&ep, "name of the referenced object is required")
            }
            _ => {}
        }
    }

    if let Some(r) = &c.resources {
        resources(e, &format!("{cp}.resources"), r);
    }

    let mut mount_paths = BTreeSet::new();
    for (i, m) in items(&c.volume_mounts).iter().enumerate() {
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

    let named: BTreeSet<&str> = items(&c.ports)
        .iter()
        .filter_map(|p| p.name.as_deref())
        .collect();
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
            None,
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
                    Some(h.sleep.is_some()),
                    &named,
                );
            }
        }
    }
    if let Some(p) = c.termination_message_policy.as_deref()
        && !["File", "FallbackToLogsOnError"].contains(&p)
    {
        e.add(
            format!("{cp}.terminationMessagePolicy"),
            format!(
                "Unsupported value: {p:?}: supported values: \"File\", \"FallbackToLogsOnError\""
            ),
        );
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
        if sc.allow_privilege_escalation == Some(true) {
            e.add(
                format!("{cp}.securityContext.allowPrivilegeEscalation"),
                "true is not supported by Flotilla yet: containers run with no_new_privs",
            );
        }
    }
}

pub(super) fn handler(
    e: &mut Errors,
    p: &str,
    exec: Option<&ExecAction>,
    http: Option<&HTTPGetAction>,
    tcp: Option<&TCPSocketAction>,
    // A lifecycle hook's `sleep` (whether set); `None` for probes, which have none.
    sleep: Option<bool>,
    named_ports: &BTreeSet<&str>,
) {
    let n = [
        exec.is_some(),
        http.is_some(),
        tcp.is_some(),
        sleep == Some(true),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if n != 1 {
        let kinds = if sleep.is_some() {
            "exec, httpGet, tcpSocket, sleep"
        } else {
            "exec, httpGet, tcpSocket"
        };
        e.add(p, format!("must have exactly one of {kinds}"));
    }
    if let Some(x) = exec
        && items(&x.command).is_empty()
    {
        e.add(format!("{p}.exec.command"), "required");
    }
    let check_port = |e: &mut Errors, what: &str, port: &IntOrString| match port {
        IntOrString::Int(n) => port_number(e, &format!("{p}.{what}.port"), *n),
        IntOrString::String(s) if !named_ports.contains(s.as_str()) => e.add(
            format!("{p}.{what}.port"),
            format!("{s:?} is not the name of one of the container's ports"),
        ),
        IntOrString::String(_) => {}
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

pub(super) fn resources(e: &mut Errors, p: &str, r: &ResourceRequirements) {
    const KNOWN: &[&str] = &["cpu", "memory", "ephemeral-storage", "pids"];
    let mut parsed = BTreeMap::new();
    for (section, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (k, q) in map.iter().flatten() {
            let fp = format!("{p}.{section}[{k}]");
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
                format!("{p}.requests[{k}]"),
                format!("must be less than or equal to the {k} limit"),
            );
        }
    }
}
