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
    /// Groups a client may ask for by one name (`kubectl get all`), served in discovery.
    pub categories: &'static [&'static str],
    /// Subresources served under an object's path (`status`, `scale`, `log`, `exec`).
    pub subresources: &'static [&'static str],
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

/// What a row leaves out: a namespaced, user-written core kind in no category.
const ROW: KindInfo = KindInfo {
    kind: "",
    api_version: "v1",
    plural: "",
    short: &[],
    categories: &[],
    subresources: &["status"],
    namespaced: true,
    user_writable: true,
    schema: "",
};

/// The `all` category (`kubectl get all`), as Kubernetes puts its workloads and Services in it.
const ALL: &[&str] = &["all"];

/// Every kind, in the order `apply` writes them (namespaces and configuration before workloads).
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: "Namespace",
        plural: "namespaces",
        short: &["ns", "namespace"],
        namespaced: false,
        schema: "io.k8s.api.core.v1.Namespace",
        ..ROW
    },
    KindInfo {
        kind: "ConfigMap",
        plural: "configmaps",
        short: &["cm", "configmap"],
        schema: "io.k8s.api.core.v1.ConfigMap",
        subresources: &[],
        ..ROW
    },
    KindInfo {
        kind: "Secret",
        plural: "secrets",
        short: &["secret"],
        schema: "io.k8s.api.core.v1.Secret",
        subresources: &[],
        ..ROW
    },
    KindInfo {
        kind: "Service",
        plural: "services",
        short: &["svc", "service"],
        categories: ALL,
        schema: "io.k8s.api.core.v1.Service",
        ..ROW
    },
    KindInfo {
        kind: "Pod",
        plural: "pods",
        short: &["po", "pod"],
        categories: ALL,
        schema: "io.k8s.api.core.v1.Pod",
        subresources: &["status", "log", "exec", "eviction"],
        ..ROW
    },
    KindInfo {
        kind: "ReplicaSet",
        api_version: "apps/v1",
        plural: "replicasets",
        short: &["rs", "replicaset"],
        categories: ALL,
        schema: "io.k8s.api.apps.v1.ReplicaSet",
        subresources: &["status", "scale"],
        ..ROW
    },
    KindInfo {
        kind: "Deployment",
        api_version: "apps/v1",
        plural: "deployments",
        short: &["deploy", "deployment"],
        categories: ALL,
        schema: "io.k8s.api.apps.v1.Deployment",
        subresources: &["status", "scale"],
        ..ROW
    },
    KindInfo {
        kind: "DaemonSet",
        api_version: "apps/v1",
        plural: "daemonsets",
        short: &["ds", "daemonset"],
        categories: ALL,
        schema: "io.k8s.api.apps.v1.DaemonSet",
        ..ROW
    },
    KindInfo {
        kind: "Job",
        api_version: "batch/v1",
        plural: "jobs",
        short: &["job"],
        categories: ALL,
        schema: "io.k8s.api.batch.v1.Job",
        ..ROW
    },
    KindInfo {
        kind: "ReplicationController",
        plural: "replicationcontrollers",
        short: &["rc", "replicationcontroller"],
        categories: ALL,
        schema: "io.k8s.api.core.v1.ReplicationController",
        subresources: &["status", "scale"],
        ..ROW
    },
    KindInfo {
        kind: "CronJob",
        api_version: "batch/v1",
        plural: "cronjobs",
        short: &["cj", "cronjob"],
        categories: ALL,
        schema: "io.k8s.api.batch.v1.CronJob",
        subresources: &["status"],
        ..ROW
    },
    KindInfo {
        kind: "HorizontalPodAutoscaler",
        api_version: "autoscaling/v2",
        plural: "horizontalpodautoscalers",
        short: &["hpa", "horizontalpodautoscaler"],
        categories: ALL,
        schema: "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        subresources: &["status"],
        ..ROW
    },
    KindInfo {
        kind: "Node",
        plural: "nodes",
        short: &["no", "node"],
        namespaced: false,
        user_writable: false,
        schema: "io.k8s.api.core.v1.Node",
        ..ROW
    },
    KindInfo {
        kind: "Event",
        plural: "events",
        short: &["ev", "event"],
        user_writable: false,
        schema: "io.k8s.api.core.v1.Event",
        subresources: &[],
        ..ROW
    },
];

/// Kinds that are created and answered, never stored or listed (verb `create` only): who the
/// caller is and what it may do (`api/review.rs`). Discovery lists them beside [`KINDS`];
/// apply does not take them.
pub const REVIEWS: &[KindInfo] = &[
    KindInfo {
        kind: "SelfSubjectAccessReview",
        api_version: "authorization.k8s.io/v1",
        plural: "selfsubjectaccessreviews",
        namespaced: false,
        subresources: &[],
        schema: "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
        ..ROW
    },
    KindInfo {
        kind: "SelfSubjectRulesReview",
        api_version: "authorization.k8s.io/v1",
        plural: "selfsubjectrulesreviews",
        namespaced: false,
        subresources: &[],
        schema: "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
        ..ROW
    },
    KindInfo {
        kind: "SelfSubjectReview",
        api_version: "authentication.k8s.io/v1",
        plural: "selfsubjectreviews",
        namespaced: false,
        subresources: &[],
        schema: "io.k8s.api.authentication.v1.SelfSubjectReview",
        ..ROW
    },
];

/// Kinds measured, not stored: the resource metrics of nodes and pods (`api/metrics.rs`), read
/// only (`get`, `list`). Discovery lists them beside [`KINDS`].
pub const METRICS: &[KindInfo] = &[
    KindInfo {
        kind: "NodeMetrics",
        api_version: "metrics.k8s.io/v1beta1",
        plural: "nodes",
        namespaced: false,
        user_writable: false,
        subresources: &[],
        ..ROW
    },
    KindInfo {
        kind: "PodMetrics",
        api_version: "metrics.k8s.io/v1beta1",
        plural: "pods",
        user_writable: false,
        subresources: &[],
        ..ROW
    },
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
            ("cj", "CronJob"),
            ("rc", "ReplicationController"),
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
