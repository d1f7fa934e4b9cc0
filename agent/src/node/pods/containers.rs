//! A pod's container as the runtime's plain [`ContainerSpec`]: command and args over the
//! image's entrypoint and cmd, env (image, envFrom, env with configMap/secret/field refs and
//! `$(VAR)` expansion), user, volume mounts, limits, and the pod's shared namespaces. Pure:
//! the caller passes every ConfigMap and Secret the pod may name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flotilla_runtime::image::Image;
use flotilla_runtime::spec::{BindMount, ContainerSpec, Resources};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::manifest::lifecycle::{self, items, strings};
use crate::manifest::quantity::{parse_milli, parse_units};

/// Where the pod's things are on this node.
pub struct PodContext<'a> {
    pub pod: &'a Pod,
    /// The pod's spec (a pod without one is not run).
    pub spec: &'a PodSpec,
    pub uid: &'a str,
    pub node: &'a str,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    /// The sandbox's namespace files (net, ipc, uts).
    pub sandbox: &'a flotilla_runtime::sandbox::Sandbox,
    /// The host directory of each volume, by name, and whether it is read-only by nature.
    pub volumes: &'a BTreeMap<String, PathBuf>,
    /// Files every container gets: /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub etc_files: &'a [(PathBuf, &'static str)],
    /// ConfigMaps' and Secrets' data (Secrets decoded) of the pod's namespace, by name.
    pub config_maps: &'a BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// `WEB_SERVICE_HOST` and the like for the Services of the pod's namespace.
    pub service_env: &'a [(String, String)],
}

/// Why a container cannot be made (Kubernetes' `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

/// The cgroup of one instance, under its pod's parent cgroup.
pub fn cgroup_path(uid: &str, id: &str) -> String {
    format!("/flotilla/pod-{uid}/{id}")
}

/// The pod's parent cgroup.
pub fn pod_cgroup(uid: &str) -> String {
    format!("/flotilla/pod-{uid}")
}

/// The runtime id of one instance of a container.
pub fn instance_id(uid: &str, container: &str, attempt: u32) -> String {
    format!("{uid}_{container}_{attempt}")
}

/// Splits an instance id into (pod uid, container, attempt).
pub fn parse_instance_id(id: &str) -> Option<(&str, &str, u32)> {
    let mut parts = id.rsplitn(3, '_');
    let attempt = parts.next()?.parse().ok()?;
    let container = parts.next()?;
    let uid = parts.next()?;
    (!uid.is_empty() && !container.is_empty()).then_some((uid, container, attempt))
}

pub fn container_spec(
    ctx: &PodContext<'_>,
    c: &Container,
    attempt: u32,
    image: &Image,
) -> Result<ContainerSpec, ConfigError> {
    let id = instance_id(ctx.uid, &c.name, attempt);
    let env = environment(ctx, c, &image.env)?;
    let lookup: BTreeMap<&str, &str> = env.iter().filter_map(|e| e.split_once('=')).collect();
    let expand = |v: &String| expand_vars(v, &lookup);
    let (command, given) = (items(&c.command), items(&c.args));
    let (entry, cmd): (Vec<String>, Vec<String>) = match (command.is_empty(), given.is_empty()) {
        (true, true) => (image.entrypoint.clone(), image.cmd.clone()),
        (true, false) => (image.entrypoint.clone(), given.iter().map(expand).collect()),
        (false, _) => (
            command.iter().map(expand).collect(),
            given.iter().map(expand).collect(),
        ),
    };
    let args: Vec<String> = entry.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(ConfigError(format!(
            "container {:?}: no command: the image {} has no entrypoint or cmd and none is given",
            c.name,
            c.image.as_deref().unwrap_or_default()
        )));
    }
    let sc = c.security_context.clone().unwrap_or_default();
    let (mut uid, mut gid) = image
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| parse_user(u, &image.layers))
        .transpose()
        .map_err(|e| ConfigError(format!("container {:?}: {e}", c.name)))?
        .unwrap_or((0, 0));
    if let Some(u) = sc.run_as_user {
        uid = u as u32;
    }
    if let Some(g) = sc.run_as_group {
        gid = g as u32;
    }
    if sc.run_as_non_root == Some(true) && uid == 0 {
        return Err(ConfigError(format!(
            "container {:?} has runAsNonRoot and its user is root",
            c.name
        )));
    }
    let mut mounts = Vec::new();
    for (src, dst) in ctx.etc_files {
        mounts.push(BindMount {
            source: src.clone(),
            destination: dst.to_string(),
            read_only: false,
        });
    }
    for m in items(&c.volume_mounts) {
        let dir = ctx.volumes.get(&m.name).ok_or_else(|| {
            ConfigError(format!(
                "container {:?}: volumeMount {:?} names no volume of the pod",
                c.name, m.name
            ))
        })?;
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                    return Err(ConfigError(format!(
                        "container {:?}: subPath {sub:?} must be a relative path inside the volume",
                        c.name
                    )));
                }
                dir.join(sub)
            }
            None => dir.clone(),
        };
        // ConfigMap and Secret volumes are the node's projection of an object: always
        // read-only inside, as Kubernetes mounts them.
        let projected = items(&ctx.spec.volumes)
            .iter()
            .any(|v| v.name == m.name && (v.config_map.is_some() || v.secret.is_some()));
        mounts.push(BindMount {
            source,
            destination: m.mount_path.clone(),
            read_only: projected || m.read_only.unwrap_or(false),
        });
    }
    let hostname = ctx.spec.hostname.clone().unwrap_or_else(|| {
        lifecycle::name(&ctx.pod.metadata)
            .chars()
            .take(63)
            .collect()
    });
    Ok(ContainerSpec {
        id: id.clone(),
        args,
        env,
        cwd: c
            .working_dir
            .clone()
            .or_else(|| image.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        uid,
        gid,
        additional_gids: vec![],
        hostname: Some(hostname),
        read_only_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        mounts,
        resources: resources(c),
        cgroup_path: cgroup_path(ctx.uid, &id),
        network_ns: Some(ctx.sandbox.net()),
        ipc_ns: Some(ctx.sandbox.ipc()),
        uts_ns: Some(ctx.sandbox.uts()),
        stdin: c.stdin.unwrap_or(false),
    })
}

/// limits.memory -> memory limit; limits.cpu -> CFS quota over a 100 ms period;
/// requests.cpu (or the limit) -> shares, as the kubelet maps them.
pub fn resources(c: &Container) -> Resources {
    let (limits, requests) = c
        .resources
        .as_ref()
        .map_or((None, None), |r| (r.limits.as_ref(), r.requests.as_ref()));
    fn get<'a>(m: Option<&'a BTreeMap<String, Quantity>>, k: &str) -> Option<&'a str> {
        m?.get(k).map(|q| q.0.as_str())
    }
    let mem = get(limits, "memory").and_then(|q| parse_units(q).ok());
    let cpu_limit = get(limits, "cpu").and_then(|q| parse_milli(q).ok());
    let cpu_request = get(requests, "cpu")
        .and_then(|q| parse_milli(q).ok())
        .or(cpu_limit);
    Resources {
        memory_bytes: mem,
        cpu_shares: cpu_request.map(|m| ((m * 1024) / 1000).max(2) as u64),
        cpu_quota_us: cpu_limit.map(|m| (m * 100).max(1000)),
        cpu_period_us: cpu_limit.map(|_| 100_000),
        pids: None,
    }
}

/// The pod's own cgroup limits, as the kubelet sets them: the sum of its app containers'
/// limits, or the largest init container's if that is more (they run one at a time). A
/// resource is limited only when every container limits it.
pub fn pod_limits(spec: &PodSpec) -> flotilla_runtime::cgroups::ParentLimits {
    let sum_or_none = |f: &dyn Fn(&Resources) -> Option<i64>| -> Option<i64> {
        let apps: Option<i64> = spec
            .containers
            .iter()
            .map(|c| f(&resources(c)))
            .sum::<Option<i64>>();
        let init: Option<i64> = items(&spec.init_containers)
            .iter()
            .map(|c| f(&resources(c)))
            .try_fold(0i64, |m, v| v.map(|v| m.max(v)));
        match (apps, init) {
            (Some(a), Some(i)) => Some(a.max(i)),
            (Some(a), None) if items(&spec.init_containers).is_empty() => Some(a),
            _ => None,
        }
    };
    let memory = sum_or_none(&|r| r.memory_bytes);
    let quota = sum_or_none(&|r| r.cpu_quota_us);
    flotilla_runtime::cgroups::ParentLimits {
        memory_bytes: memory,
        cpu_quota_us: quota,
        cpu_period_us: quota.map(|_| 100_000),
    }
}

/// The container's environment, in Kubernetes' order: the image's, the Services', then
/// envFrom, then env
/// (later wins), with `$(VAR)` in values expanded from what came before.
fn environment(
    ctx: &PodContext<'_>,
    c: &Container,
    image_env: &[String],
) -> Result<Vec<String>, ConfigError> {
    let mut vars: Vec<(String, String)> = image_env
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = vars.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            vars.push((k, v));
        }
    };
    // Services' variables come before the pod's own, which may override them.
    if ctx.spec.enable_service_links != Some(false) {
        for (k, v) in ctx.service_env {
            set(&mut vars, k.clone(), v.clone());
        }
    }
    let missing = |what: &str, name: &str| {
        ConfigError(format!("container {:?}: {what} {name:?} not found", c.name))
    };
    for from in items(&c.env_from) {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (source, (name, optional), what) = if let Some(r) = &from.config_map_ref {
            (ctx.config_maps, (&r.name, r.optional), "configmap")
        } else if let Some(r) = &from.secret_ref {
            (ctx.secrets, (&r.name, r.optional), "secret")
        } else {
            continue;
        };
        match source.get(name) {
            Some(data) => {
                for (k, v) in data {
                    set(&mut vars, format!("{prefix}{k}"), v.clone());
                }
            }
            None if optional == Some(true) => {}
            None => return Err(missing(what, name)),
        }
    }
    for e in items(&c.env) {
        let value = if let Some(v) = &e.value {
            let lookup: BTreeMap<&str, &str> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Some(expand_vars(v, &lookup))
        } else if let Some(src) = &e.value_from {
            let key_ref = src
                .config_map_key_ref
                .as_ref()
                .map(|r| ((&r.name, &r.key, r.optional), ctx.config_maps, "configmap"))
                .or_else(|| {
                    src.secret_key_ref
                        .as_ref()
                        .map(|r| ((&r.name, &r.key, r.optional), ctx.secrets, "secret"))
                });
            if let Some(((name, key, optional), source, what)) = key_ref {
                match source.get(name).map(|d| d.get(key)) {
                    Some(Some(v)) => Some(v.clone()),
                    _ if optional == Some(true) => None,
                    None => return Err(missing(what, name)),
                    Some(None) => {
                        return Err(ConfigError(format!(
                            "container {:?}: env {:?}: key {key:?} not found in {what} {name:?}",
                            c.name, e.name
                        )));
                    }
                }
            } else if let Some(f) = &src.field_ref {
                Some(field(ctx, &f.field_path).ok_or_else(|| {
                    ConfigError(format!(
                        "container {:?}: env {:?}: fieldPath {:?} is not supported",
                        c.name, e.name, f.field_path
                    ))
                })?)
            } else {
                None
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            set(&mut vars, e.name.clone(), v);
        }
    }
    Ok(vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

fn field(ctx: &PodContext<'_>, path: &str) -> Option<String> {
    let m = &ctx.pod.metadata;
    Some(match path {
        "metadata.name" => lifecycle::name(m).to_string(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => ctx.uid.to_string(),
        "spec.nodeName" => ctx.node.to_string(),
        "spec.serviceAccountName" => ctx
            .spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        "status.podIP" => ctx.pod_ip.to_string(),
        "status.hostIP" => ctx.host_ip.to_string(),
        p => {
            let key = p
                .strip_prefix("metadata.labels['")
                .map(|k| (k, strings(&m.labels)))
                .or_else(|| {
                    p.strip_prefix("metadata.annotations['")
                        .map(|k| (k, strings(&m.annotations)))
                })?;
            let name = key.0.strip_suffix("']")?;
            key.1.get(name).cloned().unwrap_or_default()
        }
    })
}

/// Kubernetes' `$(VAR)` expansion: known names are replaced, `$$` escapes, unknown references
/// stay as written.
pub fn expand_vars(s: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The image's `USER`: `uid[:gid]` numbers, or names looked up in the image's /etc/passwd and
/// /etc/group (the newest layer holding them).
fn parse_user(user: &str, layers: &[PathBuf]) -> Result<(u32, u32), String> {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let find = |file: &str| -> Option<String> {
        layers
            .iter()
            .rev()
            .map(|l| l.join(file))
            .find(|p| Path::new(p).is_file())
            .and_then(|p| std::fs::read_to_string(p).ok())
    };
    let lookup = |file: &str, name: &str, field: usize| -> Option<(u32, Option<u32>)> {
        find(file)?.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| {
                (
                    f.get(field).and_then(|v| v.parse().ok()).unwrap_or(0),
                    f.get(3).and_then(|v| v.parse().ok()),
                )
            })
        })
    };
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => lookup("etc/passwd", u, 2)
            .ok_or_else(|| format!("user {u:?} of the image is not in its /etc/passwd"))?,
    };
    let gid = if g.is_empty() {
        primary.unwrap_or(0)
    } else {
        match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                lookup("etc/group", g, 2)
                    .ok_or_else(|| format!("group {g:?} of the image is not in its /etc/group"))?
                    .0
            }
        }
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    /// A container from its manifest form.
    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn image() -> Image {
        Image {
            reference: "busybox".into(),
            digest: "sha256:x".into(),
            env: vec!["PATH=/bin".into(), "FROM_IMAGE=1".into()],
            entrypoint: vec![],
            cmd: vec!["sh".into()],
            working_dir: None,
            user: None,
            layers: vec![],
        }
    }

    struct Fixture {
        pod: Pod,
        sandbox: flotilla_runtime::sandbox::Sandbox,
        volumes: BTreeMap<String, PathBuf>,
        cms: BTreeMap<String, BTreeMap<String, String>>,
        secrets: BTreeMap<String, BTreeMap<String, String>>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let pod = Pod {
                metadata: ObjectMeta {
                    name: Some("web-1".into()),
                    namespace: Some("shop".into()),
                    labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                },
                spec: Some(PodSpec::default()),
                ..Default::default()
            };
            let mut cm = BTreeMap::new();
            cm.insert("COLOR".to_string(), "blue".to_string());
            cm.insert("SIZE".to_string(), "xl".to_string());
            let mut sec = BTreeMap::new();
            sec.insert("password".to_string(), "hunter2".to_string());
            Fixture {
                pod,
                sandbox: flotilla_runtime::sandbox::Sandbox { dir: "/sb".into() },
                volumes: [("data".to_string(), PathBuf::from("/pods/u/volumes/data"))].into(),
                cms: [("settings".to_string(), cm)].into(),
                secrets: [("db".to_string(), sec)].into(),
            }
        }
        fn ctx(&self) -> PodContext<'_> {
            PodContext {
                pod: &self.pod,
                spec: self.pod.spec.as_ref().unwrap(),
                uid: "u1",
                node: "n1",
                pod_ip: "10.42.0.7",
                host_ip: "10.99.0.1",
                sandbox: &self.sandbox,
                volumes: &self.volumes,
                etc_files: &[],
                config_maps: &self.cms,
                secrets: &self.secrets,
                service_env: &[],
            }
        }
    }

    fn env_of(s: &ContainerSpec) -> BTreeMap<String, String> {
        s.env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_comes_from_image_envfrom_env_and_fields_in_order() {
        let f = Fixture::new();
        let c = container(json!({
            "name": "app",
            "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "settings"}}],
            "env": [
                {"name": "FROM_IMAGE", "value": "overridden-$(CFG_COLOR)"},
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            ],
            "command": ["echo", "$(POD)", "$$(POD)"],
        }));
        let s = container_spec(&f.ctx(), &c, 3, &image()).unwrap();
        let env = env_of(&s);
        assert_eq!(env["CFG_COLOR"], "blue");
        assert_eq!(env["FROM_IMAGE"], "overridden-blue");
        assert_eq!(env["DB_PASSWORD"], "hunter2");
        assert_eq!(env["POD"], "web-1");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["PATH"], "/bin");
        assert_eq!(s.args, vec!["echo", "web-1", "$(POD)"]);
        assert_eq!(s.id, "u1_app_3");
        assert_eq!(s.cgroup_path, "/flotilla/pod-u1/u1_app_3");
        assert_eq!(s.hostname.as_deref(), Some("web-1"));
        assert_eq!(parse_instance_id(&s.id), Some(("u1", "app", 3)));
    }

    #[test]
    fn field_refs_name_the_pods_place_and_env_from_reads_secrets_and_config_keys() {
        let f = Fixture::new();
        let c = container(json!({
            "name": "app",
            "envFrom": [{"secretRef": {"name": "db"}, "prefix": "DB_"}],
            "env": [
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "SIZE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "SIZE"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": true}}},
            ],
        }));
        let env = env_of(&container_spec(&f.ctx(), &c, 0, &image()).unwrap());
        assert_eq!(
            [
                &env["NS"],
                &env["IP"],
                &env["NODE"],
                &env["HOST"],
                &env["UID"],
                &env["SIZE"],
                &env["DB_password"]
            ],
            [
                "shop",
                "10.42.0.7",
                "n1",
                "10.99.0.1",
                "u1",
                "xl",
                "hunter2"
            ]
        );
        assert!(
            !env.contains_key("OPT"),
            "an optional missing key sets nothing"
        );
    }

    #[test]
    fn missing_references_say_what_is_missing() {
        let f = Fixture::new();
        let mut c = container(json!({
            "name": "app",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "NOPE"}}}],
        }));
        let e = container_spec(&f.ctx(), &c, 0, &image()).unwrap_err();
        assert!(
            e.0.contains("key \"NOPE\" not found in configmap \"settings\""),
            "{e:?}"
        );
        c.env.as_mut().unwrap()[0]
            .value_from
            .as_mut()
            .unwrap()
            .config_map_key_ref
            .as_mut()
            .unwrap()
            .optional = Some(true);
        assert!(!env_of(&container_spec(&f.ctx(), &c, 0, &image()).unwrap()).contains_key("X"));
        c.env = None;
        c.env_from =
            container(json!({"name": "x", "envFrom": [{"secretRef": {"name": "absent"}}]}))
                .env_from;
        let e = container_spec(&f.ctx(), &c, 0, &image()).unwrap_err();
        assert!(e.0.contains("secret \"absent\" not found"), "{e:?}");
    }

    #[test]
    fn commands_mounts_and_limits_map_like_the_kubelet() {
        let f = Fixture::new();
        let mut c = container(json!({
            "name": "app",
            "args": ["-c", "true"],
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true, "subPath": "sub"}],
            "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
        }));
        let mut img = image();
        img.entrypoint = vec!["/bin/sh".into()];
        let s = container_spec(&f.ctx(), &c, 0, &img).unwrap();
        assert_eq!(s.args, vec!["/bin/sh", "-c", "true"]);
        assert_eq!(s.mounts.len(), 1);
        assert_eq!(
            s.mounts[0].source,
            PathBuf::from("/pods/u/volumes/data/sub")
        );
        assert!(s.mounts[0].read_only);
        assert_eq!(s.resources.memory_bytes, Some(64 << 20));
        assert_eq!(s.resources.cpu_quota_us, Some(50_000));
        assert_eq!(s.resources.cpu_shares, Some(512));
        c.volume_mounts.as_mut().unwrap()[0].sub_path = Some("../escape".into());
        assert!(container_spec(&f.ctx(), &c, 0, &img).is_err());
        c.volume_mounts.as_mut().unwrap()[0].name = "nope".into();
        let e = container_spec(&f.ctx(), &c, 0, &img).unwrap_err();
        assert!(e.0.contains("names no volume"), "{e:?}");
    }

    #[test]
    fn pod_limits_sum_the_containers_when_all_have_them() {
        let c = |name: &str, mem: &str, cpu: &str| {
            container(json!({"name": name, "resources": {"limits": {"memory": mem, "cpu": cpu}}}))
        };
        let mut spec = PodSpec {
            containers: vec![c("a", "16Mi", "100m"), c("b", "32Mi", "250m")],
            ..Default::default()
        };
        let l = pod_limits(&spec);
        assert_eq!(l.memory_bytes, Some(48 << 20));
        assert_eq!(
            (l.cpu_quota_us, l.cpu_period_us),
            (Some(35_000), Some(100_000))
        );
        // A bigger init container raises the pod's limit.
        spec.init_containers = Some(vec![c("init", "64Mi", "100m")]);
        assert_eq!(pod_limits(&spec).memory_bytes, Some(64 << 20));
        // A container without a limit leaves the pod unlimited.
        spec.containers.push(Container {
            name: "free".into(),
            ..Default::default()
        });
        assert_eq!(pod_limits(&spec), Default::default());
    }

    #[test]
    fn var_expansion_matches_kubernetes() {
        let v: BTreeMap<&str, &str> = [("A", "1")].into();
        assert_eq!(expand_vars("x$(A)y", &v), "x1y");
        assert_eq!(expand_vars("$(B)", &v), "$(B)");
        assert_eq!(expand_vars("$$(A)", &v), "$(A)");
        assert_eq!(expand_vars("cost $5", &v), "cost $5");
        assert_eq!(expand_vars("$(A", &v), "$(A");
    }
}
