//! Parsing Kubernetes resource paths into what they name. Pure, so it is tested on its own.
//!
//! ```text
//! /api/v1/pods                                  all pods (every namespace)
//! /api/v1/namespaces/{ns}/pods[/{name}[/{sub}]] pods in one namespace
//! /api/v1/namespaces[/{name}]                   namespaces (cluster-scoped)
//! /apis/apps/v1/namespaces/{ns}/deployments     the same shape under a group
//! ```

use crate::manifest::kinds::{self, KindInfo};

/// What a resource path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub info: &'static KindInfo,
    /// `None` for cluster-scoped kinds and for lists across all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// `status`, `scale`, `log`, `exec`.
    pub sub: Option<String>,
}

/// Parses `path`; `None` when it names no known resource.
pub fn parse(path: &str) -> Option<ResourcePath> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..] => (Some(ns.to_string()), prepend(plural, rest)),
        _ => (None, rest.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    let info = kinds::by_plural(group, plural)?;
    if info.version() != version {
        return None;
    }
    if namespace.is_some() && !info.namespaced {
        return None;
    }
    // Namespaced objects by name need a namespace; a bare `/api/v1/pods/x` is not valid.
    if info.namespaced && namespace.is_none() && name.is_some() {
        return None;
    }
    Some(ResourcePath {
        info,
        namespace,
        name,
        sub,
    })
}

fn prepend<'a>(first: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![first];
    v.extend_from_slice(rest);
    v
}

/// The path of an object (or of a list, without `name`).
pub fn object_path(info: &KindInfo, namespace: Option<&str>, name: Option<&str>) -> String {
    let mut p = info.api_prefix();
    if let (true, Some(ns)) = (info.namespaced, namespace) {
        p.push_str("/namespaces/");
        p.push_str(ns);
    }
    p.push('/');
    p.push_str(info.plural);
    if let Some(n) = name {
        p.push('/');
        p.push_str(n);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::type_complexity)]
    fn check(path: &str, want: Option<(&str, Option<&str>, Option<&str>, Option<&str>)>) {
        let got = parse(path).map(|r| (r.info.kind, r.namespace, r.name, r.sub));
        let want = want.map(|(k, ns, n, s)| {
            (
                k,
                ns.map(String::from),
                n.map(String::from),
                s.map(String::from),
            )
        });
        assert_eq!(got, want, "{path}");
    }

    #[test]
    fn resource_paths() {
        check("/api/v1/pods", Some(("Pod", None, None, None)));
        check(
            "/api/v1/namespaces/default/pods",
            Some(("Pod", Some("default"), None, None)),
        );
        check(
            "/api/v1/namespaces/default/pods/web-1",
            Some(("Pod", Some("default"), Some("web-1"), None)),
        );
        check(
            "/api/v1/namespaces/default/pods/web-1/status",
            Some(("Pod", Some("default"), Some("web-1"), Some("status"))),
        );
        check("/api/v1/namespaces", Some(("Namespace", None, None, None)));
        check(
            "/api/v1/namespaces/kube-system",
            Some(("Namespace", None, Some("kube-system"), None)),
        );
        check(
            "/apis/apps/v1/namespaces/prod/deployments/web",
            Some(("Deployment", Some("prod"), Some("web"), None)),
        );
        check(
            "/apis/apps/v1/deployments",
            Some(("Deployment", None, None, None)),
        );
        check(
            "/apis/batch/v1/namespaces/a/jobs",
            Some(("Job", Some("a"), None, None)),
        );
        check("/api/v1/nodes/n1", Some(("Node", None, Some("n1"), None)));
        check("/api/v1/pods/web-1", None);
        check("/api/v2/pods", None);
        check("/apis/apps/v1/pods", None);
        check("/api/v1/namespaces/a/nodes", None);
        check("/api/v1/widgets", None);
        check("/healthz", None);
    }

    #[test]
    fn object_paths() {
        let dep = kinds::by_kind("Deployment").unwrap();
        assert_eq!(
            object_path(dep, Some("a"), Some("web")),
            "/apis/apps/v1/namespaces/a/deployments/web"
        );
        let ns = kinds::by_kind("Namespace").unwrap();
        assert_eq!(
            object_path(ns, Some("ignored"), Some("a")),
            "/api/v1/namespaces/a"
        );
        let pod = kinds::by_kind("Pod").unwrap();
        assert_eq!(object_path(pod, None, None), "/api/v1/pods");
    }
}
