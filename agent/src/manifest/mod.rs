//! Manifests: parsing Kubernetes-style YAML/JSON, validation, defaults.
//!
//! # Layout
//! - [`kinds`]: the table of supported kinds (API paths, short names, scope).
//! - [`types`]: typed structs with Kubernetes' field names; unknown fields are errors.
//! - [`validate`]: semantic checks that report every bad field at once.
//! - [`defaults`]: fills in what Kubernetes fills in.
//! - [`quantity`]: CPU and memory quantities.
//!
//! The flow for one document is `Value -> decode (typed, with field paths) -> validate ->
//! default -> Value`. [`prepare`] runs it; both the CLI (to name the file and document) and the
//! API (the authority) call it, so a manifest is judged the same way in both places.

pub mod defaults;
pub mod kinds;
pub mod quantity;
pub mod types;
pub mod validate;

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

pub use kinds::KindInfo;
use types::*;

/// One problem with one field: `spec.replicas: must be >= 0`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    /// Dotted path with `[i]` for list items, as kubectl prints it.
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem of one document, with where the document came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentErrors {
    /// File name, or `-` for standard input.
    pub source: String,
    /// 1-based index of the document in its file.
    pub document: usize,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for DocumentErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}, document {}: {}", self.source, self.document, e)?;
        }
        Ok(())
    }
}

/// A document read from a file, before it is decoded.
#[derive(Debug, Clone)]
pub struct Document {
    pub source: String,
    pub document: usize,
    pub value: Value,
}

/// A decoded manifest of a supported kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Namespace(Namespace),
    ConfigMap(ConfigMap),
    Secret(Secret),
    Service(Service),
    Pod(Pod),
    ReplicaSet(ReplicaSet),
    Deployment(Deployment),
    DaemonSet(DaemonSet),
    Job(Job),
}

impl Manifest {
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Manifest::Namespace(o) => &o.metadata,
            Manifest::ConfigMap(o) => &o.metadata,
            Manifest::Secret(o) => &o.metadata,
            Manifest::Service(o) => &o.metadata,
            Manifest::Pod(o) => &o.metadata,
            Manifest::ReplicaSet(o) => &o.metadata,
            Manifest::Deployment(o) => &o.metadata,
            Manifest::DaemonSet(o) => &o.metadata,
            Manifest::Job(o) => &o.metadata,
        }
    }

    fn to_value(&self) -> Value {
        let v = match self {
            Manifest::Namespace(o) => serde_json::to_value(o),
            Manifest::ConfigMap(o) => serde_json::to_value(o),
            Manifest::Secret(o) => serde_json::to_value(o),
            Manifest::Service(o) => serde_json::to_value(o),
            Manifest::Pod(o) => serde_json::to_value(o),
            Manifest::ReplicaSet(o) => serde_json::to_value(o),
            Manifest::Deployment(o) => serde_json::to_value(o),
            Manifest::DaemonSet(o) => serde_json::to_value(o),
            Manifest::Job(o) => serde_json::to_value(o),
        };
        strip_empty(v.expect("manifest types always serialise"))
    }
}

/// Splits a YAML or JSON text into documents. `kind: List` documents are expanded into their
/// items (as kubectl does), each keeping the document number of the list.
pub fn split_documents(text: &str, source: &str) -> Result<Vec<Document>, DocumentErrors> {
    let mut out = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(de).map_err(|e| DocumentErrors {
            source: source.to_string(),
            document,
            errors: vec![FieldError::new("", format!("invalid YAML: {e}"))],
        })?;
        match value {
            Value::Null => continue,
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                let items = m
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for item in items {
                    out.push(Document {
                        source: source.to_string(),
                        document,
                        value: item,
                    });
                }
            }
            value => out.push(Document {
                source: source.to_string(),
                document,
                value,
            }),
        }
    }
    Ok(out)
}

/// Says what a JSON value is, for error messages.
pub fn describe_value(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Vec<FieldError>> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let msg = e.inner().to_string();
        // serde lists every expected field after an unknown one; the path already says where.
        let msg = match msg.split_once(", expected") {
            Some((head, _)) if head.starts_with("unknown field") => head.to_string(),
            _ => msg,
        };
        vec![FieldError::new(path, msg)]
    })
}

/// Checks `apiVersion` and `kind`, then decodes into the typed struct of that kind.
pub fn decode(value: Value) -> Result<Manifest, Vec<FieldError>> {
    let Value::Object(map) = &value else {
        return Err(vec![FieldError::new(
            "",
            format!(
                "expected an object with apiVersion and kind, got {}",
                describe_value(&value)
            ),
        )]);
    };
    let kind = match map.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        Some(Value::String(_)) | None => return Err(vec![FieldError::new("kind", "required")]),
        Some(v) => {
            return Err(vec![FieldError::new(
                "kind",
                format!("must be a string, got {}", describe_value(v)),
            )]);
        }
    };
    let info = match kinds::by_kind(&kind) {
        Some(i) if i.user_writable => i,
        Some(_) => {
            return Err(vec![FieldError::new(
                "kind",
                format!("{kind} objects are written by the agents, not applied"),
            )]);
        }
        None => {
            let known: Vec<&str> = kinds::KINDS
                .iter()
                .filter(|k| k.user_writable)
                .map(|k| k.kind)
                .collect();
            return Err(vec![FieldError::new(
                "kind",
                format!("unsupported kind {kind:?}; supported: {}", known.join(", ")),
            )]);
        }
    };
    match map.get("apiVersion").and_then(Value::as_str) {
        None => return Err(vec![FieldError::new("apiVersion", "required")]),
        Some(v) if v != info.api_version => {
            return Err(vec![FieldError::new(
                "apiVersion",
                format!("{kind} is served as {:?}, not {v:?}", info.api_version),
            )]);
        }
        Some(_) => {}
    }
    Ok(match info.kind {
        "Namespace" => Manifest::Namespace(typed(value)?),
        "ConfigMap" => Manifest::ConfigMap(typed(value)?),
        "Secret" => Manifest::Secret(typed(value)?),
        "Service" => Manifest::Service(typed(value)?),
        "Pod" => Manifest::Pod(typed(value)?),
        "ReplicaSet" => Manifest::ReplicaSet(typed(value)?),
        "Deployment" => Manifest::Deployment(typed(value)?),
        "DaemonSet" => Manifest::DaemonSet(typed(value)?),
        "Job" => Manifest::Job(typed(value)?),
        other => unreachable!("kind table has a user-writable kind {other} without a decoder"),
    })
}

/// Decodes, validates and defaults one user-written object, returning it in its stored shape
/// (no `status`, Kubernetes' defaults filled in). Every problem found is returned.
pub fn prepare(value: Value) -> Result<Value, Vec<FieldError>> {
    let mut m = decode(value)?;
    let errors = validate::validate(&m);
    if !errors.is_empty() {
        return Err(errors);
    }
    defaults::apply(&mut m);
    let mut v = m.to_value();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    Ok(v)
}

/// Removes `null`s, empty lists and empty maps, which the typed structs produce for unset
/// fields. `emptyDir: {}` stays: there the empty map is the setting.
pub fn strip_empty(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = strip_empty(v);
                    (k, v)
                })
                .filter(|(k, v)| match v {
                    Value::Null => false,
                    Value::Array(a) => !a.is_empty(),
                    Value::Object(o) => !o.is_empty() || k == "emptyDir",
                    _ => true,
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_empty).collect()),
        v => v,
    }
}

#[cfg(test)]
mod tests;
