//! Request options: the query parameters each verb takes, and what Flotilla does with each.
//!
//! kube-apiserver defines a fixed set of query parameters per verb ([`kube_params`]). Every one
//! of them is either honoured here or refused with `400 Bad Request` naming it and saying why
//! ([`support`]); a parameter that is no verb's (a typo such as `dryrun`) is refused too. So
//! no option a client sends is silently ignored: a dry run that would have written for real is
//! a refused request instead. [`check`] runs before a handler reads anything.
//!
//! The typed options ([`WriteOptions`], [`DeleteOptions`]) are parsed here as pure functions of
//! the query and body, so their rules have unit tests of their own.

use serde::Deserialize;

use super::ApiError;
use crate::manifest::FieldError;

/// What a request does, as kube-apiserver's verbs name it (subresources `status` and `scale`
/// take the verbs of their object: get and update).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// `pods/log`.
    Log,
    /// `pods/exec`.
    Exec,
    /// `pods/attach`.
    Attach,
    /// `pods/portforward`.
    PortForward,
}

impl Verb {
    pub const ALL: [Verb; 12] = [
        Verb::Get,
        Verb::List,
        Verb::Watch,
        Verb::Create,
        Verb::Update,
        Verb::Patch,
        Verb::Delete,
        Verb::DeleteCollection,
        Verb::Log,
        Verb::Exec,
        Verb::Attach,
        Verb::PortForward,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Log => "get log",
            Verb::Exec => "exec",
            Verb::Attach => "attach",
            Verb::PortForward => "portforward",
        }
    }
}

/// Every query parameter kube-apiserver (v1.32) defines for a verb, as its OpenAPI lists them,
/// plus `timeout` (the request deadline every verb takes, which client-go sends).
pub fn kube_params(v: Verb) -> &'static [&'static str] {
    match v {
        Verb::Get => &["includeObject", "pretty", "resourceVersion", "timeout"],
        Verb::List | Verb::Watch => &[
            "allowWatchBookmarks",
            "continue",
            "fieldSelector",
            "includeObject",
            "labelSelector",
            "limit",
            "pretty",
            "resourceVersion",
            "resourceVersionMatch",
            "sendInitialEvents",
            "timeoutSeconds",
            "watch",
            "timeout",
        ],
        Verb::Create | Verb::Update => &[
            "dryRun",
            "fieldManager",
            "fieldValidation",
            "pretty",
            "timeout",
        ],
        Verb::Patch => &[
            "dryRun",
            "fieldManager",
            "fieldValidation",
            "force",
            "pretty",
            "timeout",
        ],
        Verb::Delete => &[
            "dryRun",
            "gracePeriodSeconds",
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "orphanDependents",
            "pretty",
            "propagationPolicy",
            "timeout",
        ],
        Verb::DeleteCollection => &[
            "continue",
            "dryRun",
            "fieldSelector",
            "gracePeriodSeconds",
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "labelSelector",
            "limit",
            "orphanDependents",
            "pretty",
            "propagationPolicy",
            "resourceVersion",
            "resourceVersionMatch",
            "sendInitialEvents",
            "timeoutSeconds",
            "timeout",
        ],
        Verb::Log => &[
            "container",
            "follow",
            "insecureSkipTLSVerifyBackend",
            "limitBytes",
            "pretty",
            "previous",
            "sinceSeconds",
            "sinceTime",
            "stream",
            "tailLines",
            "timestamps",
            "timeout",
        ],
        Verb::Exec => &[
            "command",
            "container",
            "stderr",
            "stdin",
            "stdout",
            "tty",
            "timeout",
        ],
        Verb::Attach => &["container", "stderr", "stdin", "stdout", "tty", "timeout"],
        Verb::PortForward => &["ports", "timeout"],
    }
}

/// Flotilla's own parameters, beside Kubernetes' ones.
pub fn flotilla_params(v: Verb) -> &'static [&'static str] {
    match v {
        // A linearizable read: the leader is asked how far the log goes first.
        Verb::Get | Verb::List => &["consistent"],
        _ => &[],
    }
}

/// What Flotilla does with one parameter of one verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Honoured,
    /// Refused with this reason.
    Refused(&'static str),
}

/// `None` when `param` is no parameter of `v` at all.
pub fn support(v: Verb, param: &str) -> Option<Support> {
    use Support::*;
    if !kube_params(v).contains(&param) && !flotilla_params(v).contains(&param) {
        return None;
    }
    Some(match (v, param) {
        (_, "timeout") => Honoured,
        (Verb::Get | Verb::List, "consistent") => Honoured,
        (Verb::Get, _) => Honoured,
        (Verb::List | Verb::Watch, "sendInitialEvents") => Refused(
            "the watch-list protocol is not served: list, then watch from the list's resourceVersion",
        ),
        (Verb::Watch, "pretty") => Refused("watch events are sent one compact JSON line each"),
        (Verb::Watch, "limit" | "continue") => {
            Refused("a watch is not paged (limit and continue are for lists)")
        }
        (Verb::List | Verb::Watch, _) => Honoured,
        (Verb::Create | Verb::Update, _) => Honoured,
        (Verb::Patch, _) => Honoured,
        (
            Verb::Delete | Verb::DeleteCollection,
            "ignoreStoreReadErrorWithClusterBreakingPotential",
        ) => Refused(
            "an object the store cannot read is reported, not deleted unread (every replica decodes the same bytes)",
        ),
        (Verb::Delete, _) => Honoured,
        (
            Verb::DeleteCollection,
            "dryRun" | "fieldSelector" | "gracePeriodSeconds" | "labelSelector"
            | "orphanDependents" | "pretty" | "propagationPolicy",
        ) => Honoured,
        (Verb::DeleteCollection, "sendInitialEvents") => {
            Refused("a delete collection does not watch")
        }
        (Verb::DeleteCollection, _) => Refused(
            "a delete collection deletes every selected object in one write; it is not paged or versioned",
        ),
        (
            Verb::Log,
            "container" | "follow" | "previous" | "tailLines" | "timestamps" | "sinceSeconds"
            | "sinceTime" | "limitBytes",
        ) => Honoured,
        (Verb::Log, "pretty") => Refused("logs are plain text"),
        (Verb::Log, "insecureSkipTLSVerifyBackend") => {
            Refused("node-to-node log requests always verify the node's certificate")
        }
        (Verb::Log, _) => {
            Refused("one stream of a container's log is not served yet: both come together")
        }
        (Verb::Exec, "command" | "container" | "stdin" | "stdout" | "stderr" | "tty") => Honoured,
        (Verb::Exec, _) => Honoured,
        (Verb::PortForward, "ports") => Refused(
            "ports belong to the v4.channel.k8s.io port-forward protocol, which is not served (kubectl's SPDY/3.1+portforward.k8s.io is)",
        ),
        (Verb::PortForward, _) => Honoured,
        (Verb::Attach, _) => Honoured,
    })
}

/// The query string as name-value pairs, in order (repeated names kept, as `command`).
pub fn pairs(raw_query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(raw_query.unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("query: {e}")))
}

/// Refuses the request (400) when a parameter is not one of `v`'s, or is one Flotilla does
/// not support, naming it.
pub fn check(v: Verb, pairs: &[(String, String)]) -> Result<(), ApiError> {
    for (name, value) in pairs {
        match support(v, name) {
            Some(Support::Honoured) => {}
            // `false` asks for nothing that needs support.
            Some(Support::Refused(_)) if is_false(value) && is_flag(name) => {}
            Some(Support::Refused(why)) => {
                return Err(ApiError::BadRequest(format!(
                    "query parameter {name:?} is not supported for {}: {why}",
                    v.name()
                )));
            }
            None => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {name:?} for {}",
                    v.name()
                )));
            }
        }
    }
    Ok(())
}

/// Boolean parameters, where `false` is the same as leaving them out.
fn is_flag(name: &str) -> bool {
    matches!(
        name,
        "sendInitialEvents"
            | "pretty"
            | "tty"
            | "insecureSkipTLSVerifyBackend"
            | "ignoreStoreReadErrorWithClusterBreakingPotential"
            | "force"
    )
}

fn is_false(v: &str) -> bool {
    parse_bool(v) == Some(false)
}

/// The last value of `name` in the query.
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A boolean parameter: `true`/`1` or `false`/`0` (absent: `false`).
pub fn flag(pairs: &[(String, String)], name: &str) -> Result<bool, ApiError> {
    match get(pairs, name) {
        None => Ok(false),
        Some("") => Ok(true),
        Some(v) => parse_bool(v)
            .ok_or_else(|| ApiError::BadRequest(format!("{name}: {v:?} is not true or false"))),
    }
}

/// A boolean parameter as kube-apiserver reads one (Go's `strconv.ParseBool`): the Python
/// client sends `watch=True`, client-go `watch=true`, curl users `watch=1`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The request deadline client-go sends as `timeout=32s` (Go's duration syntax, in its common
/// forms: `500ms`, `32s`, `1m0s`, `1h`).
pub fn timeout(pairs: &[(String, String)]) -> Result<Option<std::time::Duration>, ApiError> {
    let Some(t) = get(pairs, "timeout") else {
        return Ok(None);
    };
    crate::node::metrics::parse_go_duration(t)
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest(format!("timeout: {t:?} is not a duration")))
}

/// `dryRun`: `All` is the one value Kubernetes defines; absent means a real write.
pub fn dry_run(values: &[&str], options_kind: &str) -> Result<bool, ApiError> {
    match values {
        [] => Ok(false),
        ["All"] => Ok(true),
        other => Err(invalid_options(
            options_kind,
            vec![FieldError::new(
                "dryRun",
                format!("Unsupported value: {other:?}: supported values: \"All\""),
            )],
        )),
    }
}

/// Every `dryRun` value in the query.
pub fn dry_run_values(pairs: &[(String, String)]) -> Vec<&str> {
    pairs
        .iter()
        .filter(|(n, _)| n == "dryRun")
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The 422 Kubernetes answers for bad options (`CreateOptions.meta.k8s.io "" is invalid`).
pub fn invalid_options(kind: &str, causes: Vec<FieldError>) -> ApiError {
    let list: Vec<String> = causes.iter().map(ToString::to_string).collect();
    ApiError::Invalid {
        summary: format!("{kind}.meta.k8s.io \"\" is invalid: {}", list.join(", ")),
        causes,
        about: None,
    }
}

/// `fieldValidation`, as kube-apiserver: `Strict` (kubectl's default) refuses a field
/// Kubernetes does not know, `Warn` drops it and says so in a `Warning` header, `Ignore`
/// drops it. A field Kubernetes knows and Flotilla does not support is refused under every
/// mode: dropping it would lose what it asks for.
pub fn field_validation(pairs: &[(String, String)]) -> Result<FieldValidation, ApiError> {
    match get(pairs, "fieldValidation") {
        None | Some("Strict") | Some("") => Ok(FieldValidation::Strict),
        Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::BadRequest(format!(
            "fieldValidation: {other:?} is not one of Strict, Warn, Ignore"
        ))),
    }
}

/// The three `fieldValidation` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    #[default]
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn unknown(self) -> crate::manifest::Unknown {
        match self {
            FieldValidation::Strict => crate::manifest::Unknown::Refuse,
            FieldValidation::Warn | FieldValidation::Ignore => crate::manifest::Unknown::Drop,
        }
    }

    /// The `Warning` headers for the unknown fields left out (only under `Warn`).
    pub fn warnings(self, dropped: &[String]) -> Vec<String> {
        if self != FieldValidation::Warn {
            return Vec::new();
        }
        dropped
            .iter()
            .map(|p| format!("299 - \"unknown field \\\"{p}\\\"\""))
            .collect()
    }
}

/// Options of a create or update (`CreateOptions`, `UpdateOptions`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// Who makes the change, recorded in `metadata.managedFields`.
    pub field_manager: String,
    /// What to do with unknown fields (see [`field_validation`]).
    pub validation: FieldValidation,
    /// A server-side apply's whole `managedFields` (every manager's entry), written as they
    /// are instead of the writer's one `Update` entry.
    pub managed: Option<Vec<serde_json::Value>>,
}

impl WriteOptions {
    /// Parses the options of a create or update. `user_agent` names the manager when the
    /// request names none (as kube-apiserver does: the agent's first word, `kubectl`).
    pub fn parse(
        pairs: &[(String, String)],
        options_kind: &str,
        user_agent: Option<&str>,
    ) -> Result<WriteOptions, ApiError> {
        let validation = field_validation(pairs)?;
        let dry_run = dry_run(&dry_run_values(pairs), options_kind)?;
        let field_manager = match get(pairs, "fieldManager") {
            Some(m) => {
                if m.chars().count() > 128 {
                    return Err(invalid_options(
                        options_kind,
                        vec![FieldError::new(
                            "fieldManager",
                            format!("Too long: may not be more than 128 bytes, got {m:?}"),
                        )],
                    ));
                }
                if m.chars().any(|c| c.is_control()) {
                    return Err(invalid_options(
                        options_kind,
                        vec![FieldError::new(
                            "fieldManager",
                            format!("Invalid value: {m:?}: must only contain printable characters"),
                        )],
                    ));
                }
                m.to_string()
            }
            None => default_manager(user_agent),
        };
        Ok(WriteOptions {
            dry_run,
            field_manager,
            validation,
            managed: None,
        })
    }
}

/// kube-apiserver's default manager: the user agent up to its first `/`, at most 128 bytes.
pub fn default_manager(user_agent: Option<&str>) -> String {
    let ua = user_agent.unwrap_or("").split('/').next().unwrap_or("");
    let ua: String = ua.chars().filter(|c| !c.is_control()).take(128).collect();
    if ua.is_empty() { "unknown".into() } else { ua }
}

pub use crate::controller::gc::Propagation;

/// `metav1.Preconditions`: the delete happens only if the object still has these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// The `DeleteOptions` body, with Kubernetes' field names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteBody {
    kind: Option<String>,
    api_version: Option<String>,
    grace_period_seconds: Option<i64>,
    preconditions: Option<Preconditions>,
    orphan_dependents: Option<bool>,
    propagation_policy: Option<String>,
    #[serde(default)]
    dry_run: Vec<String>,
    ignore_store_read_error_with_cluster_breaking_potential: Option<bool>,
}

/// The options of a delete, from the query and the body together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOptions {
    pub dry_run: bool,
    /// `None`: each kind's default (Background for every kind Flotilla serves).
    pub propagation: Option<Propagation>,
    /// `None`: the pod's own `terminationGracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    pub preconditions: Preconditions,
}

impl DeleteOptions {
    /// Parses a delete's options. The body (a `DeleteOptions` object, as kubectl sends) and
    /// the query may both carry options; an option given in both with different values is
    /// refused rather than one of them being dropped.
    pub fn parse(pairs: &[(String, String)], body: &[u8]) -> Result<DeleteOptions, ApiError> {
        let b: DeleteBody = if body.iter().all(u8::is_ascii_whitespace) {
            DeleteBody::default()
        } else {
            let v = super::parse_body(body)?;
            serde_path_to_error::deserialize(v).map_err(|e| {
                ApiError::BadRequest(format!("DeleteOptions: {}: {}", e.path(), e.inner()))
            })?
        };
        if let Some(k) = &b.kind
            && k != "DeleteOptions"
        {
            return Err(ApiError::BadRequest(format!(
                "the body is a {k}, not DeleteOptions"
            )));
        }
        if let Some(v) = &b.api_version
            && !matches!(v.as_str(), "v1" | "meta.k8s.io/v1")
        {
            return Err(ApiError::BadRequest(format!(
                "DeleteOptions of apiVersion {v:?}: only v1 and meta.k8s.io/v1 are served"
            )));
        }
        if b.ignore_store_read_error_with_cluster_breaking_potential == Some(true) {
            return Err(ApiError::BadRequest(
                "ignoreStoreReadErrorWithClusterBreakingPotential is not supported: an object \
                 the store cannot read is reported, not deleted unread"
                    .into(),
            ));
        }
        let both = |name: &str, q: Option<String>, body: Option<String>| match (q, body) {
            (Some(q), Some(b)) if q != b => Err(ApiError::BadRequest(format!(
                "{name} is {q:?} in the query but {b:?} in the DeleteOptions body"
            ))),
            (q, b) => Ok(q.or(b)),
        };
        let mut causes = Vec::new();

        let grace = both(
            "gracePeriodSeconds",
            get(pairs, "gracePeriodSeconds").map(String::from),
            b.grace_period_seconds.map(|g| g.to_string()),
        )?;
        let grace_period_seconds = match grace {
            None => None,
            Some(g) => match g.parse::<i64>() {
                Ok(n) if n >= 0 => Some(n),
                Ok(n) => {
                    causes.push(FieldError::new(
                        "gracePeriodSeconds",
                        format!("Invalid value: {n}: must be greater than or equal to 0"),
                    ));
                    None
                }
                Err(_) => {
                    return Err(ApiError::BadRequest(format!(
                        "gracePeriodSeconds: {g:?} is not a whole number of seconds"
                    )));
                }
            },
        };

        let orphan = both(
            "orphanDependents",
            match get(pairs, "orphanDependents") {
                Some(_) => Some(flag(pairs, "orphanDependents")?.to_string()),
                None => None,
            },
            b.orphan_dependents.map(|o| o.to_string()),
        )?
        .map(|o| o == "true");
        let policy = both(
            "propagationPolicy",
            get(pairs, "propagationPolicy").map(String::from),
            b.propagation_policy.clone(),
        )?;
        let policy = match policy.as_deref() {
            None => None,
            Some("Orphan") => Some(Propagation::Orphan),
            Some("Background") => Some(Propagation::Background),
            Some("Foreground") => Some(Propagation::Foreground),
            Some(other) => {
                causes.push(FieldError::new(
                    "propagationPolicy",
                    format!(
                        "Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
                    ),
                ));
                None
            }
        };
        let propagation = match (orphan, policy) {
            (Some(_), Some(p)) => {
                causes.push(FieldError::new(
                    "propagationPolicy",
                    format!(
                        "Invalid value: {p:?}: orphanDependents and deletionPropagation cannot be both set"
                    ),
                ));
                None
            }
            (Some(true), None) => Some(Propagation::Orphan),
            (Some(false), None) => Some(Propagation::Background),
            (None, p) => p,
        };

        let mut values = dry_run_values(pairs);
        if !b.dry_run.is_empty() {
            if !values.is_empty()
                && values != b.dry_run.iter().map(String::as_str).collect::<Vec<_>>()
            {
                return Err(ApiError::BadRequest(format!(
                    "dryRun is {values:?} in the query but {:?} in the DeleteOptions body",
                    b.dry_run
                )));
            }
            values = b.dry_run.iter().map(String::as_str).collect();
        }
        let dry_run = match dry_run(&values, "DeleteOptions") {
            Ok(d) => d,
            Err(ApiError::Invalid { causes: c, .. }) => {
                causes.extend(c);
                false
            }
            Err(e) => return Err(e),
        };
        if !causes.is_empty() {
            return Err(invalid_options("DeleteOptions", causes));
        }
        Ok(DeleteOptions {
            dry_run,
            propagation,
            grace_period_seconds,
            preconditions: b.preconditions.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        pairs(Some(s)).unwrap()
    }

    fn message(e: ApiError) -> String {
        e.to_string()
    }

    /// Every parameter kube-apiserver defines for every verb is classified: honoured, or
    /// refused with a reason. A parameter added to the lists above without a decision fails
    /// here, and none falls through to being ignored.
    #[test]
    fn every_kube_parameter_of_every_verb_is_honoured_or_refused() {
        for v in Verb::ALL {
            for p in kube_params(v).iter().chain(flotilla_params(v)) {
                assert!(support(v, p).is_some(), "{} {p}", v.name());
            }
        }
        // Spot checks of the decisions users meet first.
        assert_eq!(support(Verb::Create, "dryRun"), Some(Support::Honoured));
        assert_eq!(
            support(Verb::Delete, "propagationPolicy"),
            Some(Support::Honoured)
        );
        assert_eq!(support(Verb::List, "limit"), Some(Support::Honoured));
        assert!(matches!(
            support(Verb::List, "sendInitialEvents"),
            Some(Support::Refused(_))
        ));
        assert_eq!(support(Verb::Get, "dryRun"), None);
    }

    #[test]
    fn unknown_and_unsupported_parameters_are_refused_by_name() {
        let e = message(check(Verb::Create, &q("dryrun=All")).unwrap_err());
        assert_eq!(e, "unknown query parameter \"dryrun\" for create");
        let e = message(check(Verb::List, &q("sendInitialEvents=true&watch=1")).unwrap_err());
        assert!(
            e.starts_with("query parameter \"sendInitialEvents\" is not supported for list"),
            "{e}"
        );
        let e = message(
            check(
                Verb::Delete,
                &q("ignoreStoreReadErrorWithClusterBreakingPotential=true"),
            )
            .unwrap_err(),
        );
        assert!(
            e.contains("ignoreStoreReadErrorWithClusterBreakingPotential"),
            "{e}"
        );
        // Asking for nothing (false) is no request for an unsupported option.
        check(Verb::List, &q("sendInitialEvents=false&limit=500")).unwrap();
        check(
            Verb::Create,
            &q("fieldManager=kubectl-create&fieldValidation=Strict&dryRun=All"),
        )
        .unwrap();
        check(Verb::Get, &q("consistent=true&timeout=32s")).unwrap();
        check(Verb::Exec, &q("command=ls&tty=true&stdin=True")).unwrap();
        check(Verb::Attach, &q("container=c&stdin=true&stdout=true")).unwrap();
        let e = check(Verb::PortForward, &q("ports=8080")).unwrap_err();
        assert!(e.to_string().contains("v4.channel.k8s.io"), "{e}");
        assert!(
            flag(&q("watch=True"), "watch").unwrap(),
            "Go's ParseBool forms"
        );
        assert!(!flag(&q("watch=F"), "watch").unwrap());
        assert!(flag(&q("watch=yes"), "watch").is_err());
    }

    #[test]
    fn dry_run_takes_all_only() {
        assert!(!dry_run(&[], "CreateOptions").unwrap());
        assert!(dry_run(&["All"], "CreateOptions").unwrap());
        let e = message(dry_run(&["Yes"], "CreateOptions").unwrap_err());
        assert_eq!(
            e,
            "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: [\"Yes\"]: supported values: \"All\""
        );
    }

    #[test]
    fn write_options_name_the_manager() {
        let o =
            WriteOptions::parse(&q("fieldManager=kubectl-create"), "CreateOptions", None).unwrap();
        assert_eq!(o.field_manager, "kubectl-create");
        assert!(!o.dry_run);
        let o = WriteOptions::parse(
            &q("dryRun=All"),
            "UpdateOptions",
            Some("kubectl/v1.32.4 (linux/amd64) kubernetes/abc"),
        )
        .unwrap();
        assert_eq!(o.field_manager, "kubectl");
        assert!(o.dry_run);
        let long = "m".repeat(129);
        assert!(
            WriteOptions::parse(&q(&format!("fieldManager={long}")), "CreateOptions", None)
                .is_err()
        );
        let o = WriteOptions::parse(&q("fieldValidation=Ignore"), "CreateOptions", None).unwrap();
        assert_eq!(o.validation, FieldValidation::Ignore);
        assert!(o.validation.warnings(&["spec.x".into()]).is_empty());
        let o = WriteOptions::parse(&q("fieldValidation=Warn"), "CreateOptions", None).unwrap();
        assert_eq!(
            o.validation.warnings(&["spec.x".into()]),
            ["299 - \"unknown field \\\"spec.x\\\"\""]
        );
        assert!(WriteOptions::parse(&q("fieldValidation=Lax"), "CreateOptions", None).is_err());
    }

    #[test]
    fn delete_options_from_query_and_body() {
        let o = DeleteOptions::parse(&[], b"").unwrap();
        assert_eq!(o.propagation, None);
        assert!(!o.dry_run);
        // kubectl delete --cascade=orphan --dry-run=server --grace-period=5
        let body = br#"{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":5,"propagationPolicy":"Orphan","dryRun":["All"]}"#;
        let o = DeleteOptions::parse(&[], body).unwrap();
        assert_eq!(o.propagation, Some(Propagation::Orphan));
        assert_eq!(o.grace_period_seconds, Some(5));
        assert!(o.dry_run);
        let o = DeleteOptions::parse(&q("propagationPolicy=Foreground&dryRun=All"), b"").unwrap();
        assert_eq!(o.propagation, Some(Propagation::Foreground));
        assert!(o.dry_run);
        let o = DeleteOptions::parse(&q("orphanDependents=true"), b"").unwrap();
        assert_eq!(o.propagation, Some(Propagation::Orphan));
        let o = DeleteOptions::parse(&[], br#"{"orphanDependents":false}"#).unwrap();
        assert_eq!(o.propagation, Some(Propagation::Background));
        let o = DeleteOptions::parse(
            &[],
            br#"{"preconditions":{"uid":"u1","resourceVersion":"7"}}"#,
        )
        .unwrap();
        assert_eq!(o.preconditions.uid.as_deref(), Some("u1"));
        assert_eq!(o.preconditions.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn bad_delete_options_are_refused_with_the_field() {
        let e = message(DeleteOptions::parse(&q("propagationPolicy=Sometimes"), b"").unwrap_err());
        assert!(
            e.contains("propagationPolicy: Unsupported value: \"Sometimes\""),
            "{e}"
        );
        let e = message(
            DeleteOptions::parse(&q("orphanDependents=true&propagationPolicy=Orphan"), b"")
                .unwrap_err(),
        );
        assert!(e.contains("cannot be both set"), "{e}");
        let e = message(DeleteOptions::parse(&[], br#"{"gracePeriodSeconds":-3}"#).unwrap_err());
        assert!(e.contains("gracePeriodSeconds: Invalid value: -3"), "{e}");
        let e = message(DeleteOptions::parse(&[], br#"{"propagation":"Orphan"}"#).unwrap_err());
        assert!(e.contains("unknown field `propagation`"), "{e}");
        let e = message(
            DeleteOptions::parse(
                &q("propagationPolicy=Orphan"),
                br#"{"propagationPolicy":"Background"}"#,
            )
            .unwrap_err(),
        );
        assert!(e.contains("in the query but"), "{e}");
        let e = message(DeleteOptions::parse(&[], br#"{"dryRun":["Everything"]}"#).unwrap_err());
        assert!(e.contains("dryRun: Unsupported value"), "{e}");
    }
}
