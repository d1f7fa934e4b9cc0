//! Strict decoding that finds every problem of a document in one pass of the user's.
//!
//! serde stops at the first error, and a struct that ignores unknown fields says nothing of
//! them. [`decode_all`] wraps the decoder twice: `serde_ignored` reports each field the type
//! does not have, with its path, and `serde_path_to_error` gives the path of a type error. On
//! a type error (or a missing field) a stand-in of the expected type is put in place of the
//! bad value in a copy of the document (an empty string, 0, an empty map ...: the first the
//! decoder takes), and the decode runs again, so later errors are found too. Only the first
//! error at each place is reported. Pure functions of data.
//!
//! [`super::decode`] runs it twice per document: with Kubernetes' own type of the kind
//! (k8s-openapi), so a field Kubernetes does not know is an *unknown field*, and with
//! Flotilla's typed subset, so a field Kubernetes knows but Flotilla does not implement is
//! *not supported*, rather than either being dropped.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::FieldError;

/// Decodes that give up after this many prunings (a document with this many bad values is
/// reported up to here).
const MAX_TRIES: usize = 64;

/// One step of a path: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A path as Kubernetes spells it: `spec.containers[0].ports[1].containerPort`.
fn show(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn ignored_segs(p: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
    use serde_ignored::Path;
    match p {
        Path::Root => {}
        Path::Seq { parent, index } => {
            ignored_segs(parent, out);
            out.push(Seg::Index(*index));
        }
        Path::Map { parent, key } => {
            ignored_segs(parent, out);
            out.push(Seg::Key(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_segs(parent, out),
    }
}

fn error_segs(p: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    p.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// Puts `with` where `segs` points (a missing key is added to its map). `false` when the
/// parents are not there.
fn put(v: &mut Value, segs: &[Seg], with: Value) -> bool {
    let Some((last, parents)) = segs.split_last() else {
        *v = with;
        return true;
    };
    let mut cur = v;
    for s in parents {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(c) => c,
                None => return false,
            },
            (Seg::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(c) => c,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Seg::Key(k), Value::Object(m)) => {
            m.insert(k.clone(), with);
            true
        }
        (Seg::Index(i), Value::Array(a)) if *i < a.len() => {
            a[*i] = with;
            true
        }
        _ => false,
    }
}

/// Values to put in place of a bad (or missing) one so that decoding goes on, the one the
/// message expects first: each is tried in turn until the decoder takes one.
fn stand_ins(msg: &str) -> Vec<Value> {
    let expected = msg.rsplit("expected ").next().unwrap_or("");
    let guess = if expected.contains("string") {
        Value::from("")
    } else if expected.contains("bool") {
        Value::from(false)
    } else if expected.contains("sequence") || expected.contains("list") {
        Value::Array(Vec::new())
    } else if expected.contains("struct") || expected.contains("map") {
        Value::Object(Default::default())
    } else {
        Value::from(0)
    };
    let mut all = vec![
        guess,
        Value::from(""),
        Value::from(0),
        Value::Object(Default::default()),
        Value::Array(Vec::new()),
        Value::from(false),
        Value::Null,
    ];
    all.dedup();
    all
}

/// The field a "missing field `x`" error names.
fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// serde's message without the list of every expected field that follows an unknown one.
fn message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.split_once(", expected") {
        Some((head, _)) if head.starts_with("unknown field") => head.to_string(),
        _ => msg,
    }
}

/// What one decode found.
#[derive(Debug)]
pub struct Decoded<T> {
    /// The value, decoded from the document with stand-ins for its bad parts; `None` only
    /// if the document could not be decoded at all.
    pub value: Option<T>,
    /// The paths of the fields `T` does not have.
    pub ignored: Vec<String>,
    /// Type errors, each with its path.
    pub errors: Vec<FieldError>,
}

/// Decodes `doc` as `T`, finding every ignored field and every type error (see the module).
pub fn decode_all<T: DeserializeOwned>(doc: &Value) -> Decoded<T> {
    let mut v = doc.clone();
    let mut errors = Vec::new();
    // Each place a stand-in was put, and how many were tried there.
    let mut tried: Vec<(Vec<Seg>, usize)> = Vec::new();
    for _ in 0..MAX_TRIES {
        let mut ignored = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let de = serde_path_to_error::Deserializer::new(&v, &mut track);
        let r: Result<T, _> = serde_ignored::deserialize(de, |p| {
            let mut segs = Vec::new();
            ignored_segs(&p, &mut segs);
            ignored.push(show(&segs));
        });
        let e = match r {
            Ok(t) => {
                return Decoded {
                    value: Some(t),
                    ignored,
                    errors,
                };
            }
            Err(e) => e,
        };
        let at = error_segs(&track.path());
        let msg = message(&e);
        let mut target = at.clone();
        if let Some(field) = missing_field(&msg) {
            target.push(Seg::Key(field));
        }
        let n = match tried.iter_mut().find(|(p, _)| *p == target) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                // The first error at a place is the user's; later ones there, and those
                // inside a stand-in, are the stand-ins'.
                let inside_a_stand_in = tried
                    .iter()
                    .any(|(p, _)| p.len() <= target.len() && *p == target[..p.len()]);
                if !inside_a_stand_in {
                    errors.push(FieldError::new(show(&at), msg.clone()));
                }
                tried.push((target.clone(), 0));
                0
            }
        };
        let candidates = stand_ins(&msg);
        let placed = match candidates.get(n) {
            Some(c) => put(&mut v, &target, c.clone()),
            None => false,
        };
        if !placed {
            return Decoded {
                value: None,
                ignored: Vec::new(),
                errors,
            };
        }
    }
    Decoded {
        value: None,
        ignored: Vec::new(),
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Port {
        container_port: i32,
        name: Option<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct C {
        name: String,
        #[serde(default)]
        ports: Vec<Port>,
        #[serde(default)]
        args: Vec<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Spec {
        replicas: Option<i32>,
        containers: Vec<C>,
    }

    #[test]
    fn every_unknown_field_and_type_error_at_once() {
        let doc = json!({
            "replicas": "three",
            "colour": "red",
            "containers": [
                {"name": "a", "imagee": "x", "ports": [{"containerPort": "http"}, {"containerPort": 80, "nmae": "p"}]},
                {"name": 7, "args": ["ok", 5]},
            ],
        });
        let d = decode_all::<Spec>(&doc);
        let errs: Vec<String> = d.errors.iter().map(ToString::to_string).collect();
        // In the document's key order (JSON maps are sorted).
        assert_eq!(
            errs,
            [
                "containers[0].ports[0].containerPort: invalid type: string \"http\", expected i32",
                "containers[1].args[1]: invalid type: integer `5`, expected a string",
                "containers[1].name: invalid type: integer `7`, expected a string",
                "replicas: invalid type: string \"three\", expected i32",
            ]
        );
        let mut ignored = d.ignored.clone();
        ignored.sort();
        assert_eq!(
            ignored,
            [
                "colour",
                "containers[0].imagee",
                "containers[0].ports[1].nmae"
            ]
        );
        assert!(d.value.is_some());
    }

    #[test]
    fn a_clean_document_decodes_as_it_is() {
        let d = decode_all::<Spec>(&json!({"containers": [{"name": "a"}]}));
        assert!(d.errors.is_empty() && d.ignored.is_empty());
        assert_eq!(d.value.unwrap().containers[0].name, "a");
        // Not an object at all: one error, not one per field the stand-in lacks.
        let d = decode_all::<Spec>(&json!("text"));
        assert_eq!(d.errors.len(), 1, "{:?}", d.errors);
    }
}
