//! PATCH of an object, its `status` or its `scale`: JSON merge patch (RFC 7386) and JSON patch
//! (RFC 6902), by the `json-patch` crate, applied to the stored object and written as an
//! update carrying the object's `resourceVersion`, so a write between the read and the write
//! is a conflict; the patch is then applied again to the newer object, as kube-apiserver
//! retries. Strategic merge patch is [`crate::manifest::strategic`]'s; server-side apply is
//! refused (415) until served. [`apply`] is a pure function of data.

use serde_json::Value;

use super::ApiError;

/// The kind of patch a request's `Content-Type` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`: maps merge, `null` removes, anything else replaces.
    Merge,
    /// `application/json-patch+json`: a list of add, remove, replace, move, copy, test.
    Json,
    /// `application/strategic-merge-patch+json`: a merge patch whose lists merge by their
    /// Kubernetes merge keys, with `$patch` and the other directives.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply of a manager's configuration
    /// ([`crate::manifest::managed`]).
    Apply,
}

/// Media types kube-apiserver takes for PATCH, and whether Flotilla serves each.
const MEDIA: &[(&str, Option<PatchType>)] = &[
    ("application/merge-patch+json", Some(PatchType::Merge)),
    ("application/json-patch+json", Some(PatchType::Json)),
    (
        "application/strategic-merge-patch+json",
        Some(PatchType::Strategic),
    ),
    ("application/apply-patch+yaml", Some(PatchType::Apply)),
];

/// The patch type of a `Content-Type` value.
pub fn patch_type(content_type: Option<&str>) -> Result<PatchType, ApiError> {
    let ct = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match MEDIA.iter().find(|(m, _)| *m == ct) {
        Some((_, Some(t))) => Ok(*t),
        Some((m, None)) => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - {m} is not served by Flotilla yet (server-side apply: use kubectl apply without --server-side); accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
        ))),
        None => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            MEDIA.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Applies `body` (a patch of type `t`) to `doc`, an object of the definition `schema` (a
/// strategic patch merges lists by what that definition says). A patch that is not JSON, or
/// one that cannot apply (a missing path, a failed `test`, an element without its merge key),
/// changes nothing.
pub fn apply(
    t: PatchType,
    doc: &mut Value,
    body: &[u8],
    schema: Option<&str>,
) -> Result<(), ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the patch is not JSON: {e}")))?;
    match t {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            json_patch::merge(doc, &patch);
            Ok(())
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::BadRequest(format!("the JSON patch is not valid: {e}")))?;
            let mut out = doc.clone();
            json_patch::patch(&mut out, &ops).map_err(|e| ApiError::Invalid {
                summary: format!("the JSON patch could not be applied: {e}"),
                causes: Vec::new(),
                about: None,
            })?;
            *doc = out;
            Ok(())
        }
        PatchType::Apply => Err(ApiError::BadRequest(
            "an apply patch is applied with its field ownership (server_apply), not here".into(),
        )),
        PatchType::Strategic => crate::manifest::strategic::apply(
            crate::manifest::schema::schemas(),
            schema,
            doc,
            &patch,
        )
        .map_err(|e| ApiError::Invalid {
            summary: format!("the strategic merge patch could not be applied: {e}"),
            causes: Vec::new(),
            about: None,
        }),
    }
}

/// Keeps the stored object's identity through a patch: the patch may name a
/// `resourceVersion` (a precondition, as with kube-apiserver); otherwise the stored one is
/// written back, so the update conflicts if the object changed since it was read.
pub fn keep_identity(patched: &mut Value, stored: &Value) {
    if patched["metadata"]["resourceVersion"].is_null() {
        patched["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
    }
    for f in ["apiVersion", "kind"] {
        if patched[f].is_null() {
            patched[f] = stored[f].clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(t: PatchType, doc: &mut Value, body: &[u8]) -> Result<(), ApiError> {
        super::apply(t, doc, body, None)
    }

    fn cm() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "resourceVersion": "7", "labels": {"a": "1", "b": "2"}},
            "data": {"x": "1", "y": "2"}})
    }

    #[test]
    fn a_merge_patch_merges_maps_removes_nulls_and_replaces_lists() {
        let mut d = cm();
        apply(
            PatchType::Merge,
            &mut d,
            br#"{"metadata": {"labels": {"a": null, "c": "3"}}, "data": {"y": "two"}}"#,
        )
        .unwrap();
        assert_eq!(d["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(d["data"], json!({"x": "1", "y": "two"}));
        let mut p = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        apply(
            PatchType::Merge,
            &mut p,
            br#"{"spec": {"containers": [{"name": "c"}]}}"#,
        )
        .unwrap();
        assert_eq!(p["spec"]["containers"], json!([{"name": "c"}]));
        assert!(apply(PatchType::Merge, &mut p, b"[1]").is_err());
        assert!(apply(PatchType::Merge, &mut p, b"{not json").is_err());
    }

    #[test]
    fn a_json_patch_applies_all_its_operations_or_none() {
        let mut d = cm();
        apply(
            PatchType::Json,
            &mut d,
            br#"[{"op": "replace", "path": "/data/x", "value": "one"},
                 {"op": "add", "path": "/metadata/labels/c", "value": "3"},
                 {"op": "remove", "path": "/metadata/labels/a"}]"#,
        )
        .unwrap();
        assert_eq!(d["data"]["x"], "one");
        assert_eq!(d["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        // A failed test leaves the object as it was, even after an operation that applied.
        let before = d.clone();
        let e = apply(
            PatchType::Json,
            &mut d,
            br#"[{"op": "replace", "path": "/data/x", "value": "uno"},
                 {"op": "test", "path": "/data/y", "value": "nope"}]"#,
        )
        .unwrap_err();
        assert!(matches!(e, ApiError::Invalid { .. }), "{e}");
        assert_eq!(d, before);
        assert!(apply(PatchType::Json, &mut d, br#"[{"op": "explode"}]"#).is_err());
    }

    #[test]
    fn media_types_are_told_apart() {
        assert_eq!(
            patch_type(Some("application/merge-patch+json; charset=utf-8")).unwrap(),
            PatchType::Merge
        );
        assert_eq!(
            patch_type(Some("application/json-patch+json")).unwrap(),
            PatchType::Json
        );
        assert_eq!(
            patch_type(Some("application/strategic-merge-patch+json")).unwrap(),
            PatchType::Strategic
        );
        assert_eq!(
            patch_type(Some("application/apply-patch+yaml")).unwrap(),
            PatchType::Apply
        );
        assert!(patch_type(None).is_err());
    }

    #[test]
    fn the_stored_resource_version_guards_the_write_unless_the_patch_names_one() {
        let stored = cm();
        let mut p = json!({"metadata": {"name": "c"}, "data": {}});
        keep_identity(&mut p, &stored);
        assert_eq!(p["metadata"]["resourceVersion"], "7");
        assert_eq!(p["kind"], "ConfigMap");
        let mut p = json!({"metadata": {"name": "c", "resourceVersion": "3"}});
        keep_identity(&mut p, &stored);
        assert_eq!(p["metadata"]["resourceVersion"], "3");
    }
}
