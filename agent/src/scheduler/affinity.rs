//! Where a pod may go and where it would rather go: `nodeSelector` and node affinity, evaluated
//! against a node's labels and name. Pure functions of the typed pod spec; the manifest's
//! validation has already refused malformed terms, so anything odd here simply does not match.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

/// The zone label Kubernetes uses; pods of one owner are spread across its values by default.
pub const ZONE: &str = "topology.kubernetes.io/zone";

fn values(r: &NodeSelectorRequirement) -> impl Iterator<Item = &str> {
    r.values.iter().flatten().map(String::as_str)
}

/// One `matchExpressions` requirement against the node's labels.
fn expression_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let v = labels.get(&r.key);
    let number = |s: &str| s.parse::<i64>().ok();
    let bound = || values(r).next().and_then(number);
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| values(r).any(|x| x == v)),
        "NotIn" => !v.is_some_and(|v| values(r).any(|x| x == v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" => matches!((v.and_then(|v| number(v)), bound()), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((v.and_then(|v| number(v)), bound()), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

/// One `matchFields` requirement (only `metadata.name`) against the node's name.
fn field_matches(r: &NodeSelectorRequirement, name: &str) -> bool {
    if r.key != "metadata.name" {
        return false;
    }
    let listed = values(r).any(|x| x == name);
    match r.operator.as_str() {
        "In" => listed,
        "NotIn" => !listed,
        _ => false,
    }
}

/// A node selector term: every requirement holds. An empty term matches nothing, as in
/// Kubernetes.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    (!exprs.is_empty() || !fields.is_empty())
        && exprs.iter().all(|r| expression_matches(r, labels))
        && fields.iter().all(|r| field_matches(r, name))
}

/// Whether a pod (its `spec`) may run on a node with these labels and this name: its
/// `nodeSelector` and, when it has one, any of its required node affinity terms.
pub fn required_matches(spec: &PodSpec, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|t| term_matches(t, labels, name))
        })
}

/// The summed weights of the pod's preferred node affinity terms this node matches.
pub fn preferred_weight(spec: &PodSpec, labels: &BTreeMap<String, String>, name: &str) -> i64 {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|t| term_matches(&t.preference, labels, name))
        .map(|t| i64::from(t.weight))
        .sum()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::manifest::selector::labels;

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([]);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn required_terms_are_ored_and_their_requirements_anded() {
        let spec = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a", "b"]},
                    {"key": "cores", "operator": "Gt", "values": ["2"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["pi-7"]}]}
            ]}}}}),
        );
        let big_a = labels(&[("zone", "a"), ("cores", "4")]);
        let small_a = labels(&[("zone", "a"), ("cores", "2")]);
        let big_c = labels(&[("zone", "c"), ("cores", "8")]);
        assert!(required_matches(&spec, &big_a, "n1"));
        assert!(!required_matches(&spec, &small_a, "n1"));
        assert!(!required_matches(&spec, &big_c, "n1"));
        assert!(required_matches(&spec, &big_c, "pi-7"));
        assert!(!required_matches(&spec, &labels(&[]), "n1"));
    }

    #[test]
    fn operators_as_kubernetes_defines_them() {
        let l = labels(&[("disk", "ssd"), ("cores", "4")]);
        let m = |op: &str, key: &str, values: &[&str]| {
            expression_matches(
                &serde_json::from_value(json!({"key": key, "operator": op, "values": values}))
                    .unwrap(),
                &l,
            )
        };
        assert!(m("NotIn", "disk", &["hdd"]));
        assert!(m("NotIn", "absent", &["x"]));
        assert!(!m("NotIn", "disk", &["ssd"]));
        assert!(m("Exists", "disk", &[]));
        assert!(m("DoesNotExist", "gpu", &[]));
        assert!(m("Lt", "cores", &["5"]));
        assert!(!m("Lt", "disk", &["5"]), "a non-number never compares");
        assert!(!m("Gt", "absent", &["0"]));
        assert!(!m("Sideways", "disk", &["ssd"]));
    }

    #[test]
    fn node_selector_and_affinity_must_both_hold_and_preferences_add_up() {
        let spec = spec(json!({
        "nodeSelector": {"arch": "arm64"},
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 3, "preference": {"matchExpressions": [{"key": "arch", "operator": "Exists"}]}}
        ]}}}));
        let arm_ssd = labels(&[("arch", "arm64"), ("disk", "ssd")]);
        assert!(required_matches(&spec, &arm_ssd, "n"));
        assert!(!required_matches(&spec, &labels(&[("arch", "amd64")]), "n"));
        assert_eq!(preferred_weight(&spec, &arm_ssd, "n"), 13);
        assert_eq!(
            preferred_weight(&spec, &labels(&[("arch", "arm64")]), "n"),
            3
        );
    }
}
