//! ConfigMaps and Secrets: keys, base64 and size.

use super::*;

/// Validates a ConfigMap.
pub(super) fn config_map(e: &mut Errors, o: &ConfigMap) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    let mut size = 0;
    for (k, v) in &o.data {
        config_key(e, &format!("data[{k}]"), k);
        size += k.len() + v.len();
    }
    for (k, v) in &o.binary_data {
        config_key(e, &format!("binaryData[{k}]"), k);
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

/// Validates a Secret.
pub(super) fn secret(e: &mut Errors, o: &Secret) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    for (k, v) in &o.data {
        config_key(e, &format!("data[{k}]"), k);
        if base64::engine::general_purpose::STANDARD.decode(v).is_err() {
            e.add(
                format!("data[{k}]"),
                "is not valid base64 (use stringData for plain text)",
            );
        }
    }
    for k in o.string_data.keys() {
        config_key(e, &format!("stringData[{k}]"), k);
    }
}

pub(super) fn config_key(e: &mut Errors, p: &str, k: &str) {
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
