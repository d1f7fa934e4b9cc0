//! Manifests: parsing Kubernetes-style YAML/JSON, validation, defaults.
//!
//! # Layout
//! - [`kinds`]: the table of supported kinds (API paths, short names, scope).
//! - [`schema`]: Kubernetes' schemas of the served kinds; strict checking against them.
//! - [`validate`]: semantic checks that report every bad field at once.
//! - [`defaults`]: fills in what Kubernetes fills in.
//! - [`quantity`]: CPU and memory quantities.
//!
//! The flow for one document is `Value -> schema check (every unknown, unsupported and mistyped
//! field, with its path) -> k8s-openapi's type -> validate -> default -> Value`. [`prepare`] runs it; both the CLI (to name the file and document) and the
//! API (the authority) call it, so a manifest is judged the same way in both places.

pub mod cron;
pub mod defaults;
pub mod events;
pub mod kinds;
pub mod lifecycle;
pub mod managed;
pub mod printers;
pub mod quantity;
pub mod schema;
pub mod selector;
pub mod strategic;
pub mod validate;

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Pod, ReplicationController, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
pub use kinds::KindInfo;

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

/// A decoded manifest of a user-writable kind, in k8s-openapi's type. (Every variant is a few
/// kilobytes and a manifest lives for one request: not boxed.)
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
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
    CronJob(CronJob),
    ReplicationController(ReplicationController),
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
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
            Manifest::CronJob(o) => &o.metadata,
            Manifest::ReplicationController(o) => &o.metadata,
            Manifest::HorizontalPodAutoscaler(o) => &o.metadata,
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
            Manifest::CronJob(o) => serde_json::to_value(o),
            Manifest::ReplicationController(o) => serde_json::to_value(o),
            Manifest::HorizontalPodAutoscaler(o) => serde_json::to_value(o),
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

/// What to do with a field Kubernetes does not know (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// An error, as every other problem (`Strict`, kubectl's default).
    Refuse,
    /// Left out of the object and named in the answer (`Warn`, `Ignore`): Kubernetes would
    /// not use it either. A field Kubernetes knows and Flotilla does not support is refused
    /// whatever the mode.
    Drop,
}

/// A decoded manifest and the unknown fields left out of it (only with [`Unknown::Drop`]).
pub struct Decoded {
    pub manifest: Manifest,
    pub dropped: Vec<String>,
}

/// Checks `apiVersion` and `kind`, then decodes into the typed struct of that kind,
/// refusing unknown fields.
pub fn decode(value: Value) -> Result<Manifest, Vec<FieldError>> {
    match decode_with(value, Unknown::Refuse) {
        (Some(d), errors) if errors.is_empty() => Ok(d.manifest),
        (_, errors) => Err(errors),
    }
}

/// [`decode`] with a choice for unknown fields. Returns what decoded (from the document less
/// its bad parts) and every problem found; the object is good only without problems.
pub fn decode_with(mut value: Value, unknown: Unknown) -> (Option<Decoded>, Vec<FieldError>) {
    let Value::Object(map) = &mut value else {
        return (
            None,
            vec![FieldError::new(
                "",
                format!(
                    "expected an object with apiVersion and kind, got {}",
                    describe_value(&value)
                ),
            )],
        );
    };
    // A user's write carries no status (kube-apiserver ignores it on the object's own path).
    map.remove("status");
    let kind = match map.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        Some(Value::String(_)) | None => return (None, vec![FieldError::new("kind", "required")]),
        Some(v) => {
            return (
                None,
                vec![FieldError::new(
                    "kind",
                    format!("must be a string, got {}", describe_value(v)),
                )],
            );
        }
    };
    let info = match kinds::by_kind(&kind) {
        Some(i) if i.user_writable => i,
        Some(_) => {
            return (
                None,
                vec![FieldError::new(
                    "kind",
                    format!("{kind} objects are written by the agents, not applied"),
                )],
            );
        }
        None => {
            let known: Vec<&str> = kinds::KINDS
                .iter()
                .filter(|k| k.user_writable)
                .map(|k| k.kind)
                .collect();
            return (
                None,
                vec![FieldError::new(
                    "kind",
                    format!("unsupported kind {kind:?}; supported: {}", known.join(", ")),
                )],
            );
        }
    };
    match map.get("apiVersion").and_then(Value::as_str) {
        None => return (None, vec![FieldError::new("apiVersion", "required")]),
        Some(v) if v != info.api_version => {
            return (
                None,
                vec![FieldError::new(
                    "apiVersion",
                    format!("{kind} is served as {:?}, not {v:?}", info.api_version),
                )],
            );
        }
        Some(_) => {}
    }
    // Against Kubernetes' schema: unknown, unsupported and mistyped fields, all at once,
    // and what is left decodes.
    let checked = schema::check(info, &mut value, unknown);
    macro_rules! of {
        ($variant:ident) => {
            // Through `&Value`, as `lifecycle::decode`: one decoder per kind, not two.
            Deserialize::deserialize(&value).map(Manifest::$variant)
        };
    }
    let manifest = match info.kind {
        "Namespace" => of!(Namespace),
        "ConfigMap" => of!(ConfigMap),
        "Secret" => of!(Secret),
        "Service" => of!(Service),
        "Pod" => of!(Pod),
        "ReplicaSet" => of!(ReplicaSet),
        "Deployment" => of!(Deployment),
        "DaemonSet" => of!(DaemonSet),
        "Job" => of!(Job),
        "CronJob" => of!(CronJob),
        "ReplicationController" => of!(ReplicationController),
        "HorizontalPodAutoscaler" => of!(HorizontalPodAutoscaler),
        other => unreachable!("kind table has a user-writable kind {other} without a decoder"),
    };
    let mut errors = checked.errors;
    match manifest {
        Ok(manifest) => (
            Some(Decoded {
                manifest,
                dropped: checked.dropped,
            }),
            errors,
        ),
        Err(e) => {
            // The schema check leaves a decodable document; say so if it did not.
            errors.push(FieldError::new("", e.to_string()));
            (None, errors)
        }
    }
}

/// Whether two field paths are the same field or one lies inside the other (a map key may be
/// written `data[k]` or `data.k`).
fn related(a: &str, b: &str) -> bool {
    let norm = |p: &str| {
        let mut out = String::with_capacity(p.len());
        let mut rest = p;
        while let Some(i) = rest.find('[') {
            out.push_str(&rest[..i]);
            let Some(j) = rest[i..].find(']') else {
                break;
            };
            let key = &rest[i + 1..i + j];
            if key.chars().all(|c| c.is_ascii_digit()) {
                out.push_str(&rest[i..=i + j]);
            } else {
                out.push('.');
                out.push_str(key);
            }
            rest = &rest[i + j + 1..];
        }
        out.push_str(rest);
        out
    };
    let (a, b) = (norm(a), norm(b));
    let inside = |x: &str, y: &str| {
        x == y || (x.starts_with(y) && matches!(x.as_bytes().get(y.len()), Some(b'.' | b'[')))
    };
    inside(&a, &b) || inside(&b, &a)
}

/// Decodes, validates and defaults one user-written object, returning it in its stored shape
/// (no `status`, Kubernetes' defaults filled in). Every problem found is returned: decoding
/// problems and the validation problems of the rest of the document, together.
pub fn prepare(value: Value) -> Result<Value, Vec<FieldError>> {
    prepare_with(value, Unknown::Refuse).map(|(v, _)| v)
}

/// [`prepare`] with a choice for unknown fields; returns the object and the unknown fields
/// left out of it.
pub fn prepare_with(
    value: Value,
    unknown: Unknown,
) -> Result<(Value, Vec<String>), Vec<FieldError>> {
    let (decoded, mut errors) = decode_with(value, unknown);
    let Some(mut d) = decoded else {
        return Err(errors);
    };
    let invalid = validate::validate(&d.manifest);
    // Where decoding found a problem, validation saw the document without that part.
    let seen: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
    errors.extend(
        invalid
            .into_iter()
            .filter(|e| !seen.iter().any(|p| !p.is_empty() && related(&e.path, p))),
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    defaults::apply(&mut d.manifest);
    let mut v = d.manifest.to_value();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    Ok((v, d.dropped))
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
