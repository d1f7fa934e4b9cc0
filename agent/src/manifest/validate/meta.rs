//! Object metadata: names, namespaces, labels and annotations, and the name rules other
//! checks share (RFC 1123 labels and subdomains, qualified names, port names).

use super::*;

/// Validates a Namespace.
pub(super) fn namespace(e: &mut Errors, o: &Namespace) {
    meta(e, &o.metadata, NameRule::Label, false);
}

#[derive(Clone, Copy)]
pub(super) enum NameRule {
    /// RFC 1123 label: at most 63 characters, no dots.
    Label,
    /// RFC 1123 subdomain: at most 253 characters, dots allowed.
    Subdomain,
}

pub(super) fn meta(e: &mut Errors, m: &ObjectMeta, rule: NameRule, namespaced: bool) {
    let name = m.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        if m.generate_name.is_none() {
            e.add("metadata.name", "required");
        }
    } else {
        let err = match rule {
            NameRule::Label => dns_label_error(name),
            NameRule::Subdomain => dns_subdomain_error(name),
        };
        if let Some(err) = err {
            e.add("metadata.name", format!("{name:?} {err}"));
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
    labels(e, "metadata.labels", strings(&m.labels));
    let annotations = strings(&m.annotations);
    for k in annotations.keys() {
        if let Some(err) = label_key_error(k) {
            e.add(format!("metadata.annotations[{k}]"), format!("key {err}"));
        }
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > 256 * 1024 {
        e.add(
            "metadata.annotations",
            "may not be larger than 256 KiB in all",
        );
    }
}

pub(super) fn labels(e: &mut Errors, path: &str, l: &BTreeMap<String, String>) {
    for (k, v) in l {
        if let Some(err) = label_key_error(k) {
            e.add(format!("{path}[{k}]"), format!("key {err}"));
        }
        if let Some(err) = label_value_error(v) {
            e.add(format!("{path}[{k}]"), format!("value {v:?} {err}"));
        }
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

pub(super) fn qualified_name_error(n: &str) -> Option<String> {
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
