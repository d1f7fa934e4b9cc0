//! ConfigMaps and Secrets: keys and size. Base64 is checked with the types (the schema's
//! `format: byte`), before the object decodes.

use super::*;

/// Validates a ConfigMap.
pub(super) fn config_map(e: &mut Errors, o: &ConfigMap) {
    meta(e, &o.metadata, NameRule::Subdomain, true);
    let mut size = 0;
    for (k, v) in strings(&o.data) {
        config_key(e, &format!("data[{k}]"), k);
        size += k.len() + v.len();
    }
    for (k, v) in o.binary_data.iter().flatten() {
        config_key(e, &format!("binaryData[{k}]"), k);
        if strings(&o.data).contains_key(k) {
            e.add(format!("binaryData[{k}]"), "duplicate of a key in data");
        }
        size += k.len() + v.0.len();
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
    for k in o.data.iter().flatten().map(|(k, _)| k) {
        config_key(e, &format!("data[{k}]"), k);
    }
    for k in strings(&o.string_data).keys() {
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
