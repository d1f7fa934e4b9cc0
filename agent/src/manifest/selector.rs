//! Label selectors, equality- and set-based, as Kubernetes defines them.
//!
//! `-l 'app=web,tier!=db,env in (prod,stage),!legacy'` and a manifest's
//! `matchLabels`/`matchExpressions` both become a [`Selector`]: a list of requirements that must
//! all hold. Pure functions of data; no I/O.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `key=value` or `key==value`
    Equals,
    /// `key!=value`: also true when the key is absent.
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`: also true when the key is absent.
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
}

/// A JSON map of strings (labels, a nodeSelector) as a `BTreeMap`; anything else is empty.
pub fn string_map(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// One requirement on one label key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.op {
            Op::Equals | Op::In => v.is_some_and(|v| self.values.contains(v)),
            Op::NotEquals | Op::NotIn => !v.is_some_and(|v| self.values.contains(v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
        }
    }
}

/// All requirements must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

impl Selector {
    /// Whether the labels satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses kubectl's `-l` syntax.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(s)? {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("selector {s:?} has an empty requirement"));
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(Selector(reqs))
    }

    /// Converts a label selector's `matchLabels` and `matchExpressions` (k8s-openapi's type, as
    /// every object carries it).
    pub fn from_label_selector(ls: &LabelSelector) -> Result<Selector, String> {
        let mut reqs: Vec<Requirement> = ls
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: Op::Equals,
                values: vec![v.clone()],
            })
            .collect();
        for (i, e) in ls.match_expressions.iter().flatten().enumerate() {
            let op = match e.operator.as_str() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => {
                    return Err(format!(
                        "matchExpressions[{i}].operator: {other:?} is not one of In, NotIn, Exists, DoesNotExist"
                    ));
                }
            };
            let values = e.values.clone().unwrap_or_default();
            let needs_values = matches!(op, Op::In | Op::NotIn);
            if needs_values && values.is_empty() {
                return Err(format!(
                    "matchExpressions[{i}].values: must be non-empty for {}",
                    e.operator
                ));
            }
            if !needs_values && !values.is_empty() {
                return Err(format!(
                    "matchExpressions[{i}].values: must be empty for {}",
                    e.operator
                ));
            }
            reqs.push(Requirement {
                key: e.key.clone(),
                op,
                values,
            });
        }
        Ok(Selector(reqs))
    }

    /// A selector matching exactly these labels (for `spec.selector` of a Service).
    pub fn from_map(m: &BTreeMap<String, String>) -> Selector {
        Selector(
            m.iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    op: Op::Equals,
                    values: vec![v.clone()],
                })
                .collect(),
        )
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r.op {
                Op::Equals => write!(f, "{}={}", r.key, r.values[0])?,
                Op::NotEquals => write!(f, "{}!={}", r.key, r.values[0])?,
                Op::In => write!(f, "{} in ({})", r.key, r.values.join(","))?,
                Op::NotIn => write!(f, "{} notin ({})", r.key, r.values.join(","))?,
                Op::Exists => write!(f, "{}", r.key)?,
                Op::DoesNotExist => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("selector {s:?} has unbalanced parentheses"));
        }
    }
    if depth != 0 {
        return Err(format!("selector {s:?} has unbalanced parentheses"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let req = |key: &str, op, values: Vec<String>| -> Result<Requirement, String> {
        let key = key.trim();
        check_key(key)?;
        for v in &values {
            check_value(v)?;
        }
        Ok(Requirement {
            key: key.to_string(),
            op,
            values,
        })
    };
    if let Some(key) = part.strip_prefix('!') {
        return req(key, Op::DoesNotExist, vec![]);
    }
    if let Some((k, v)) = part.split_once("!=") {
        return req(k, Op::NotEquals, vec![v.trim().to_string()]);
    }
    if let Some((k, v)) = part.split_once("==") {
        return req(k, Op::Equals, vec![v.trim().to_string()]);
    }
    if let Some((k, v)) = part.split_once('=') {
        return req(k, Op::Equals, vec![v.trim().to_string()]);
    }
    if let Some(open) = part.find('(') {
        let head = part[..open].trim();
        let Some(body) = part[open + 1..].trim_end().strip_suffix(')') else {
            return Err(format!("{part:?}: expected ')' at the end"));
        };
        let (key, op) = if let Some(k) = head.strip_suffix(" notin") {
            (k, Op::NotIn)
        } else if let Some(k) = head.strip_suffix(" in") {
            (k, Op::In)
        } else {
            return Err(format!("{part:?}: expected 'in' or 'notin' before '('"));
        };
        let values: Vec<String> = body.split(',').map(|v| v.trim().to_string()).collect();
        if values.iter().any(String::is_empty) {
            return Err(format!("{part:?}: empty value in set"));
        }
        return req(key, op, values);
    }
    req(part, Op::Exists, vec![])
}

fn check_key(key: &str) -> Result<(), String> {
    crate::manifest::validate::label_key_error(key)
        .map_or(Ok(()), |e| Err(format!("label key {key:?}: {e}")))
}

fn check_value(v: &str) -> Result<(), String> {
    crate::manifest::validate::label_value_error(v)
        .map_or(Ok(()), |e| Err(format!("label value {v:?}: {e}")))
}

/// A label map from pairs (for tests).
#[cfg(test)]
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    /// Checks a selector string against label sets: `(labels, expected match)`.
    fn check(sel: &str, cases: &[(&[(&str, &str)], bool)]) {
        let s = Selector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
        for (l, want) in cases {
            assert_eq!(s.matches(&labels(l)), *want, "{sel} against {l:?}");
        }
    }

    #[test]
    fn equality() {
        check(
            "app=web",
            &[
                (&[("app", "web")], true),
                (&[("app", "db")], false),
                (&[], false),
            ],
        );
        check(
            "app==web",
            &[(&[("app", "web")], true), (&[("app", "db")], false)],
        );
        check(
            "app!=web",
            &[
                (&[("app", "web")], false),
                (&[("app", "db")], true),
                (&[], true),
            ],
        );
    }

    #[test]
    fn sets() {
        check(
            "env in (prod, stage)",
            &[
                (&[("env", "prod")], true),
                (&[("env", "stage")], true),
                (&[("env", "dev")], false),
                (&[], false),
            ],
        );
        check(
            "env notin (prod,stage)",
            &[
                (&[("env", "prod")], false),
                (&[("env", "dev")], true),
                (&[], true),
            ],
        );
    }

    #[test]
    fn existence() {
        check("tier", &[(&[("tier", "x")], true), (&[], false)]);
        check("!tier", &[(&[("tier", "x")], false), (&[], true)]);
    }

    #[test]
    fn conjunction() {
        check(
            "app=web,env in (prod,stage),!legacy",
            &[
                (&[("app", "web"), ("env", "prod")], true),
                (&[("app", "web"), ("env", "prod"), ("legacy", "1")], false),
                (&[("app", "web"), ("env", "dev")], false),
                (&[("env", "prod")], false),
            ],
        );
    }

    #[test]
    fn empty_selector_matches_everything() {
        check("", &[(&[], true), (&[("a", "b")], true)]);
    }

    #[test]
    fn bad_selectors_are_errors() {
        for s in [
            "app=web,",
            "env in (prod",
            "env in ()",
            "env (a)",
            "-bad=x",
            "app=web!",
            "a,,b",
        ] {
            assert!(Selector::parse(s).is_err(), "{s} should not parse");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "app=web",
            "a!=b",
            "env in (prod,stage)",
            "env notin (x)",
            "k",
            "!k",
            "a=b,!c",
        ] {
            let sel = Selector::parse(s).unwrap();
            assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel);
        }
    }

    #[test]
    fn match_expressions() {
        let ls = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "NotIn".into(),
                values: Some(vec!["dev".into()]),
            }]),
        };
        let s = Selector::from_label_selector(&ls).unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "dev")])));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(
            Selector::from_label_selector(&bad)
                .unwrap_err()
                .contains("non-empty")
        );
    }
}

/// A field selector (`metadata.name=web,spec.nodeName!=n1`): equality on dotted paths of the
/// object, a missing field reading as the empty string, as in Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut out = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (path, eq, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!(
                    "field selector {part:?}: expected FIELD=VALUE or FIELD!=VALUE"
                ));
            };
            out.push((path.trim().to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, obj: &serde_json::Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut v = obj;
            for seg in path.split('.') {
                v = &v[seg];
            }
            let got = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod field_tests {
    use super::FieldSelector;
    use serde_json::json;

    #[test]
    fn field_selectors() {
        let pod = json!({"metadata": {"name": "web-1"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        for (sel, want) in [
            ("metadata.name=web-1", true),
            ("spec.nodeName==n1,status.phase=Running", true),
            ("spec.nodeName!=n1", false),
            ("spec.nodeName=n2", false),
            ("spec.missing=", true),
            ("", true),
        ] {
            assert_eq!(
                FieldSelector::parse(sel).unwrap().matches(&pod),
                want,
                "{sel}"
            );
        }
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
