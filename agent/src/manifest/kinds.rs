//! The kinds Flotilla knows: their API group/version, URL plural, short names and scope.
//!
//! One table drives the API router, the CLI's `get KIND` aliases and manifest parsing, so that
//! a kind is added in one place.

/// What the API and the CLI need to know about one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// `Pod`, `Deployment`, ... as written in manifests.
    pub kind: &'static str,
    /// `v1`, `apps/v1`, `batch/v1`.
    pub api_version: &'static str,
    /// Lower-case plural used in URLs: `pods`, `deployments`.
    pub plural: &'static str,
    /// Extra names the CLI accepts (`po`, `deploy`, ...).
    pub short: &'static [&'static str],
    /// Namespaced kinds live under `/namespaces/{ns}/`; cluster-scoped ones do not.
    pub namespaced: bool,
    /// Whether users may write this kind with `apply`. Nodes and events are written by agents.
    pub user_writable: bool,
    /// The name of Kubernetes' schema of the kind (`io.k8s.api.core.v1.Pod`), generated from
    /// k8s-openapi's type by `build.rs`. Decoding checks against it; the OpenAPI documents
    /// serve it.
    pub schema: &'static str,
}

impl KindInfo {
    /// The API group, empty for the core group.
    pub fn group(&self) -> &'static str {
        match self.api_version.split_once('/') {
            Some((g, _)) => g,
            None => "",
        }
    }

    /// The version part of `api_version`.
    pub fn version(&self) -> &'static str {
        match self.api_version.split_once('/') {
            Some((_, v)) => v,
            None => self.api_version,
        }
    }

    /// The path prefix of this kind's API: `/api/v1` or `/apis/apps/v1`.
    pub fn api_prefix(&self) -> String {
        if self.group().is_empty() {
            format!("/api/{}", self.api_version)
        } else {
            format!("/apis/{}", self.api_version)
        }
    }
}

const fn k(
    kind: &'static str,
    api_version: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    user_writable: bool,
    schema: &'static str,
) -> KindInfo {
    KindInfo {
        kind,
        api_version,
        plural,
        short,
        namespaced,
        user_writable,
        schema,
    }
}

/// Every kind, in the order `apply` writes them (namespaces and configuration before workloads).
pub const KINDS: &[KindInfo] = &[
    k(
        "Namespace",
        "v1",
        "namespaces",
        &["ns", "namespace"],
        false,
        true,
        "io.k8s.api.core.v1.Namespace",
    ),
    k(
        "ConfigMap",
        "v1",
        "configmaps",
        &["cm", "configmap"],
        true,
        true,
        "io.k8s.api.core.v1.ConfigMap",
    ),
    k(
        "Secret",
        "v1",
        "secrets",
        &["secret"],
        true,
        true,
        "io.k8s.api.core.v1.Secret",
    ),
    k(
        "Service",
        "v1",
        "services",
        &["svc", "service"],
        true,
        true,
        "io.k8s.api.core.v1.Service",
    ),
    k(
        "Pod",
        "v1",
        "pods",
        &["po", "pod"],
        true,
        true,
        "io.k8s.api.core.v1.Pod",
    ),
    k(
        "ReplicaSet",
        "apps/v1",
        "replicasets",
        &["rs", "replicaset"],
        true,
        true,
        "io.k8s.api.apps.v1.ReplicaSet",
    ),
    k(
        "Deployment",
        "apps/v1",
        "deployments",
        &["deploy", "deployment"],
        true,
        true,
        "io.k8s.api.apps.v1.Deployment",
    ),
    k(
        "DaemonSet",
        "apps/v1",
        "daemonsets",
        &["ds", "daemonset"],
        true,
        true,
        "io.k8s.api.apps.v1.DaemonSet",
    ),
    k(
        "Job",
        "batch/v1",
        "jobs",
        &["job"],
        true,
        true,
        "io.k8s.api.batch.v1.Job",
    ),
    k(
        "Node",
        "v1",
        "nodes",
        &["no", "node"],
        false,
        false,
        "io.k8s.api.core.v1.Node",
    ),
    k(
        "Event",
        "v1",
        "events",
        &["ev", "event"],
        true,
        false,
        "io.k8s.api.core.v1.Event",
    ),
];

/// Finds a kind by its `kind` name (`Deployment`).
pub fn by_kind(kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// Finds a kind by what a user types after `get`: plural, short name or kind, any case.
pub fn by_cli_name(name: &str) -> Option<&'static KindInfo> {
    let n = name.to_ascii_lowercase();
    KINDS.iter().find(|k| {
        k.plural == n || k.kind.eq_ignore_ascii_case(&n) || k.short.iter().any(|s| *s == n)
    })
}

/// Finds a kind by the API group and URL plural.
pub fn by_plural(group: &str, plural: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| k.group() == group && k.plural == plural)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_names_resolve_to_kinds() {
        for (name, kind) in [
            ("po", "Pod"),
            ("pods", "Pod"),
            ("Pod", "Pod"),
            ("deploy", "Deployment"),
            ("svc", "Service"),
            ("ns", "Namespace"),
            ("cm", "ConfigMap"),
            ("ds", "DaemonSet"),
            ("jobs", "Job"),
            ("no", "Node"),
        ] {
            assert_eq!(by_cli_name(name).map(|k| k.kind), Some(kind), "{name}");
        }
        assert!(by_cli_name("widgets").is_none());
    }

    #[test]
    fn api_prefix_follows_group() {
        assert_eq!(by_kind("Pod").unwrap().api_prefix(), "/api/v1");
        assert_eq!(by_kind("Deployment").unwrap().api_prefix(), "/apis/apps/v1");
        assert_eq!(by_plural("batch", "jobs").unwrap().kind, "Job");
    }
}
