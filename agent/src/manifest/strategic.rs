//! Strategic merge patch, as kube-apiserver applies it (`application/strategic-merge-patch+json`,
//! what `kubectl apply`, `edit`, `set image`, `rollout restart` and `cordon` send).
//!
//! A strategic patch is a JSON merge patch whose lists know their elements: a list a Kubernetes
//! type declares `patchStrategy: merge` is merged element by element, by its merge key
//! (containers and env by `name`, ports by `containerPort`, volume mounts by `mountPath`), or
//! as a set when its elements are plain values (finalizers); every other list is replaced.
//! Directives: `$patch: replace | delete | merge` on a map or a list element,
//! `$retainKeys` (the keys a map keeps), `$setElementOrder/<field>` (the order of a merged
//! list) and `$deleteFromPrimitiveList/<field>` (values taken out of a set). `null` removes.
//!
//! What each list does comes from [`PATCH_META`], Kubernetes' struct tags for the types the
//! served kinds use; the same table puts `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key` into the served OpenAPI documents, so the patch kubectl
//! computes and the patch the agent applies read the same rules. Pure functions of data.

use serde_json::{Map, Value};

use super::schema::{REF_PREFIX, Schemas};

/// Kubernetes' patch strategy of a field: `(definition, field, strategy, merge key)`, from the
/// `patchStrategy` and `patchMergeKey` tags of the Go types (k8s.io/api) of the served kinds.
/// A list not named here is replaced by a patch, as in Kubernetes.
pub const PATCH_META: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        None,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        Some("uid"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "merge",
        Some("topologyKey"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    ("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "podIPs",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "hostIPs",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "merge",
        Some("port"),
    ),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", None),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        None,
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
];

/// The lists server-side apply keys by more than their strategic merge key
/// (`+listType=map` with several `+listMapKey` tags in k8s.io/api): a container's or a
/// Service's two ports of one number, TCP and UDP (DNS on 53), are two elements. Every other
/// merged list is keyed for apply as [`PATCH_META`] keys it for patches.
pub const LIST_MAP_KEYS: &[(&str, &str, &[&str])] = &[
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        &["containerPort", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        &["containerPort", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        &["port", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        &["topologyKey", "whenUnsatisfiable"],
    ),
];

/// Defaults Kubernetes' OpenAPI documents give key fields (`+default=`), which an element
/// that leaves the field out is keyed by (structured-merge-diff reads them so).
pub const KEY_DEFAULTS: &[(&str, &str, &str)] = &[
    ("io.k8s.api.core.v1.ContainerPort", "protocol", "TCP"),
    ("io.k8s.api.core.v1.ServicePort", "protocol", "TCP"),
];

/// Writes [`PATCH_META`], [`LIST_MAP_KEYS`] and the key fields' defaults into the
/// definitions as Kubernetes' OpenAPI spells them.
pub fn annotate(defs: &mut Map<String, Value>) {
    for (def, field, keys) in LIST_MAP_KEYS {
        if let Some(p) = property(defs, def, field) {
            p.insert("x-kubernetes-list-type".into(), "map".into());
            p.insert("x-kubernetes-list-map-keys".into(), (*keys).into());
        }
    }
    for (def, field, default) in KEY_DEFAULTS {
        if let Some(p) = property(defs, def, field) {
            p.insert("default".into(), (*default).into());
        }
    }
    for (def, field, strategy, key) in PATCH_META {
        let Some(p) = property(defs, def, field) else {
            continue;
        };
        p.insert("x-kubernetes-patch-strategy".into(), (*strategy).into());
        if let Some(k) = key {
            p.insert("x-kubernetes-patch-merge-key".into(), (*k).into());
        }
    }
}

fn property<'a>(
    defs: &'a mut Map<String, Value>,
    def: &str,
    field: &str,
) -> Option<&'a mut Map<String, Value>> {
    defs.get_mut(def)?
        .get_mut("properties")?
        .get_mut(field)?
        .as_object_mut()
}

/// A patch the rules refuse, in kube-apiserver's words where it has them.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct PatchError(pub String);

/// Where the patch is in the schemas: a definition (by name), or nowhere (maps merge and
/// lists are replaced, as a JSON merge patch does).
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    schemas: &'a Schemas,
    def: Option<&'a Value>,
    /// Lists keyed as server-side apply keys them ([`LIST_MAP_KEYS`]), not as patches do.
    apply: bool,
}

/// What identifies an element of a merged list: one merge key, several (server-side apply's
/// list-map keys, a missing one at its default), or nothing (a
/// set of plain values).
#[derive(Clone, Copy)]
pub(crate) enum Keys<'a> {
    Set,
    One(&'a str),
    Many(&'a [Value]),
}

/// The default of a list-map key field an element leaves out ([`KEY_DEFAULTS`]; every key
/// field with a default is a `protocol`, so the name tells).
pub fn key_default(field: &str) -> Option<Value> {
    KEY_DEFAULTS
        .iter()
        .find(|(_, f, _)| *f == field)
        .map(|(_, _, d)| Value::from(*d))
}

impl<'a> Keys<'a> {
    /// The element's identity, as fieldsV1's `k:` step spells it: its key fields (a missing
    /// one at its default). Err names the key it lacks.
    pub fn id(&self, e: &Map<String, Value>) -> Result<Map<String, Value>, &'a str> {
        let mut id = Map::new();
        match *self {
            Keys::Set => {}
            Keys::One(k) => {
                id.insert(k.into(), e.get(k).ok_or(k)?.clone());
            }
            Keys::Many(keys) => {
                for k in keys.iter().filter_map(Value::as_str) {
                    let v = e.get(k).cloned().or_else(|| key_default(k)).ok_or(k)?;
                    id.insert(k.into(), v);
                }
            }
        }
        Ok(id)
    }

    /// Whether `e` is the element `id` names.
    pub fn is(&self, e: &Value, id: &Map<String, Value>) -> bool {
        e.as_object()
            .and_then(|m| self.id(m).ok())
            .is_some_and(|i| i == *id)
    }

    fn names(&self) -> String {
        match self {
            Keys::Set => String::new(),
            Keys::One(k) => (*k).to_string(),
            Keys::Many(keys) => keys
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// What a field of a definition is: its strategy, merge key, and the definition of its
/// value (of its elements, for a list).
pub(crate) struct Field<'a> {
    pub strategy: &'a str,
    pub key: Keys<'a>,
    pub of: Option<&'a Value>,
    /// A map of arbitrary keys (labels, data), not a struct.
    pub map: bool,
}

impl Field<'_> {
    /// Whether the list merges element by element (by key, or as a set).
    pub fn merges(&self) -> bool {
        self.strategy.split(',').any(|s| s == "merge")
    }
}

impl<'a> At<'a> {
    /// The root of a document of the definition `root` (None: no schema).
    pub fn root(schemas: &'a Schemas, root: Option<&str>, apply: bool) -> At<'a> {
        At {
            schemas,
            def: root.and_then(|r| schemas.defs.get(r)),
            apply,
        }
    }

    pub fn field(&self, name: &str) -> Field<'a> {
        let p = self
            .def
            .and_then(|d| d.get("properties"))
            .and_then(|p| p.get(name));
        let strategy = p
            .and_then(|p| p.get("x-kubernetes-patch-strategy"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let one = p
            .and_then(|p| p.get("x-kubernetes-patch-merge-key"))
            .and_then(Value::as_str);
        let many = p
            .filter(|_| self.apply)
            .and_then(|p| p.get("x-kubernetes-list-map-keys"))
            .and_then(Value::as_array);
        let target = p.map(|p| p.get("items").unwrap_or(p));
        // A `$ref`, alone or as the one member of an `allOf` (beside a description).
        let of = target
            .and_then(|t| {
                t.get("$ref").or_else(|| {
                    t.get("allOf")
                        .and_then(|a| a.get(0))
                        .and_then(|r| r.get("$ref"))
                })
            })
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(REF_PREFIX))
            .and_then(|n| self.schemas.defs.get(n));
        let map = p
            .and_then(|p| p.get("additionalProperties"))
            .is_some_and(Value::is_object);
        let key = match (many, one) {
            (Some(keys), _) => Keys::Many(keys),
            (None, Some(k)) => Keys::One(k),
            (None, None) => Keys::Set,
        };
        Field {
            strategy,
            key,
            of,
            map,
        }
    }

    pub fn to(&self, def: Option<&'a Value>) -> At<'a> {
        At { def, ..*self }
    }
}

const PATCH: &str = "$patch";
const RETAIN: &str = "$retainKeys";
const ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `doc`, an object whose definition is `root` (None: no
/// schema, so lists are replaced). On an error `doc` is left as it was.
pub fn apply(
    schemas: &Schemas,
    root: Option<&str>,
    doc: &mut Value,
    patch: &Value,
) -> Result<(), PatchError> {
    merge(At::root(schemas, root, false), doc, patch)
}

/// Merges a server-side apply configuration into `doc` as [`apply`] merges a patch, with
/// lists keyed by their list-map keys ([`LIST_MAP_KEYS`]).
pub(crate) fn apply_config(
    schemas: &Schemas,
    root: Option<&str>,
    doc: &mut Value,
    config: &Value,
) -> Result<(), PatchError> {
    merge(At::root(schemas, root, true), doc, config)
}

fn merge(at: At, doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let original = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    *doc = Value::Object(merge_map(original, p, at)?);
    Ok(())
}

fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    at: At,
) -> Result<Map<String, Value>, PatchError> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(d)) if d == "replace" => return strip(patch, at),
        Some(Value::String(d)) if d == "delete" => return Ok(Map::new()),
        Some(Value::String(d)) if d == "merge" => {}
        Some(d) => return Err(PatchError(format!("Unknown patch type: {d} in map"))),
    }
    if let Some(keep) = patch.get(RETAIN) {
        let keep: Vec<&str> = keep
            .as_array()
            .and_then(|l| l.iter().map(Value::as_str).collect())
            .ok_or_else(|| {
                PatchError(format!(
                    "{RETAIN} must be a list of field names, not {keep}"
                ))
            })?;
        // A field the patch removes (null) need not be kept.
        for (k, _) in patch
            .iter()
            .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        {
            if !keep.contains(&k.as_str()) {
                return Err(PatchError(format!(
                    "all fields of the patch must be in {RETAIN}: {k} is not in {keep:?}"
                )));
            }
        }
        original.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM) {
            let Value::Array(gone) = v else {
                return Err(PatchError(format!("{k} must be a list")));
            };
            if let Some(Value::Array(l)) = original.get_mut(field) {
                l.retain(|x| !gone.contains(x));
            }
        }
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            original.remove(k);
            continue;
        }
        let f = at.field(k);
        let merged = match (original.remove(k), v) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                Value::Object(merge_map(o, p, at.to(f.of))?)
            }
            (None, Value::Object(p)) => Value::Object(merge_map(Map::new(), p, at.to(f.of))?),
            (o, Value::Array(p)) if f.merges() => {
                let o = match o {
                    Some(Value::Array(o)) => o,
                    _ => Vec::new(),
                };
                Value::Array(merge_list(o, p, k, f.key, at.to(f.of))?)
            }
            (_, Value::Array(p)) => Value::Array(strip_list(p, at.to(f.of))?),
            (_, v) => v.clone(),
        };
        original.insert(k.clone(), merged);
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(ORDER) {
            let Value::Array(order) = v else {
                return Err(PatchError(format!("{k} must be a list")));
            };
            if let Some(Value::Array(l)) = original.get_mut(field) {
                reorder(l, order, at.field(field).key);
            }
        }
    }
    Ok(original)
}

/// A value as a patch gives it where nothing was: the directives taken out.
fn strip(patch: &Map<String, Value>, at: At) -> Result<Map<String, Value>, PatchError> {
    let mut p = patch.clone();
    p.remove(PATCH);
    merge_map(Map::new(), &p, at)
}

fn strip_list(patch: &[Value], at: At) -> Result<Vec<Value>, PatchError> {
    patch
        .iter()
        .filter(|e| !is_directive(e))
        .map(|e| match e {
            Value::Object(m) => Ok(Value::Object(strip(m, at)?)),
            e => Ok(e.clone()),
        })
        .collect()
}

fn is_directive(e: &Value) -> bool {
    e.as_object()
        .is_some_and(|m| m.len() == 1 && m.contains_key(PATCH))
}

fn merge_list(
    mut original: Vec<Value>,
    patch: &[Value],
    field: &str,
    key: Keys,
    at: At,
) -> Result<Vec<Value>, PatchError> {
    if patch
        .iter()
        .any(|e| e.get(PATCH).and_then(Value::as_str) == Some("replace"))
    {
        return strip_list(patch, at);
    }
    if let Keys::Set = key {
        // A set of plain values: the patch's values join the list, each once.
        for e in patch {
            if e.is_object() {
                return Err(PatchError(format!(
                    "{field}: a list merged as a set holds plain values, not {e}"
                )));
            }
            if !original.contains(e) {
                original.push(e.clone());
            }
        }
        return Ok(original);
    };
    for e in patch {
        let Value::Object(m) = e else {
            return Err(PatchError(format!(
                "{field}: an element must be an object with the merge key {:?}, not {e}",
                key.names()
            )));
        };
        let id = key.id(m).map_err(|k| {
            PatchError(format!("map: {e} does not contain declared merge key: {k}"))
        })?;
        let pos = original.iter().position(|o| key.is(o, &id));
        match m.get(PATCH).and_then(Value::as_str) {
            Some("delete") => {
                original.retain(|o| !key.is(o, &id));
            }
            _ => match pos {
                Some(i) => {
                    let Value::Object(o) = std::mem::take(&mut original[i]) else {
                        unreachable!("matched by key, so an object");
                    };
                    original[i] = Value::Object(merge_map(o, m, at)?);
                }
                None => original.push(Value::Object(merge_map(Map::new(), m, at)?)),
            },
        }
    }
    Ok(original)
}

/// Puts the elements `order` names first, in its order; the others keep theirs, after them.
fn reorder(list: &mut [Value], order: &[Value], key: Keys) {
    let id = |e: &Value| -> Value {
        match (key, e) {
            (Keys::Set, e) => e.clone(),
            (_, Value::Object(m)) => key.id(m).map(Value::Object).unwrap_or(Value::Null),
            _ => Value::Null,
        }
    };
    let rank = |e: &Value| {
        let i = id(e);
        order.iter().position(|o| id(o) == i).unwrap_or(order.len())
    };
    list.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::schema::schemas;
    use serde_json::json;

    const DEPLOYMENT: Option<&str> = Some("io.k8s.api.apps.v1.Deployment");

    fn patched(root: Option<&str>, mut doc: Value, patch: Value) -> Value {
        apply(schemas(), root, &mut doc, &patch).unwrap();
        doc
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "finalizers": ["a"]},
            "spec": {"replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx:1",
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 80}]},
                    {"name": "side", "image": "busybox"}]}}}})
    }

    #[test]
    fn every_listed_field_is_a_field_of_its_definition() {
        for (def, field, strategy, key) in PATCH_META {
            let d = schemas()
                .defs
                .get(*def)
                .unwrap_or_else(|| panic!("{def} not generated"));
            let p = &d["properties"][*field];
            assert!(p.is_object(), "{def} has no field {field}");
            assert_eq!(p["x-kubernetes-patch-strategy"], *strategy, "{def}.{field}");
            if let Some(k) = key {
                assert_eq!(p["x-kubernetes-patch-merge-key"], *k);
                let item = p["items"]["$ref"]
                    .as_str()
                    .and_then(|r| r.strip_prefix(REF_PREFIX));
                let item = schemas().defs.get(item.unwrap()).unwrap();
                assert!(
                    item["properties"][*k].is_object(),
                    "{def}.{field}: no {k} in its elements"
                );
            }
        }
    }

    #[test]
    fn every_list_map_key_and_key_default_is_a_field_of_its_definition() {
        for (def, field, keys) in LIST_MAP_KEYS {
            let p = &schemas().defs[*def]["properties"][*field];
            assert_eq!(
                p["x-kubernetes-list-map-keys"],
                json!(keys),
                "{def}.{field}"
            );
            let item = p["items"]["$ref"].as_str().unwrap();
            let item = &schemas().defs[item.strip_prefix(REF_PREFIX).unwrap()];
            for k in *keys {
                assert!(item["properties"][*k].is_object(), "{def}.{field}: no {k}");
            }
        }
        for (def, field, default) in KEY_DEFAULTS {
            assert_eq!(
                schemas().defs[*def]["properties"][*field]["default"],
                *default
            );
        }
    }

    #[test]
    fn containers_and_env_merge_by_name_and_other_lists_are_replaced() {
        let d = patched(
            DEPLOYMENT,
            deployment(),
            json!({"spec": {"template": {"spec": {
            "containers": [{"name": "web", "image": "nginx:2", "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]}],
            "tolerations": [{"key": "k", "operator": "Exists"}]}}}}),
        );
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["image"], "nginx:2");
        assert_eq!(
            c[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "two"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(c[0]["ports"], json!([{"containerPort": 80}]));
        assert_eq!(c[1], json!({"name": "side", "image": "busybox"}));
        // Without a schema (scale, or an unknown kind) a list is replaced, as a merge patch does.
        let d = patched(
            None,
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "x"}]}}}}),
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"],
            json!([{"name": "x"}])
        );
    }

    #[test]
    fn directives_delete_replace_and_order_elements() {
        let d = patched(
            DEPLOYMENT,
            deployment(),
            json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "web"}],
            "containers": [{"name": "web", "env": [{"name": "A", "$patch": "delete"}]}]}}}}),
        );
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["name"], "side");
        assert_eq!(c[1]["env"], json!([{"name": "B", "value": "2"}]));
        let d = patched(
            DEPLOYMENT,
            deployment(),
            json!({"spec": {"template": {"spec": {
            "containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}}}}),
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "x"}])
        );
        let d = patched(
            DEPLOYMENT,
            deployment(),
            json!({"spec": {"template": {"$patch": "replace", "spec": {"containers": []}}}}),
        );
        assert_eq!(d["spec"]["template"], json!({"spec": {"containers": []}}));
        let d = patched(
            DEPLOYMENT,
            deployment(),
            json!({"spec": {"template": {"$patch": "delete"}}}),
        );
        assert_eq!(d["spec"]["template"], json!({}));
    }

    #[test]
    fn retain_keys_clears_a_union_and_sets_merge_as_sets() {
        let d = patched(
            DEPLOYMENT,
            deployment(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        );
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        let e = apply(
            schemas(),
            DEPLOYMENT,
            &mut deployment(),
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        )
        .unwrap_err();
        assert!(e.0.contains("rollingUpdate"), "{e}");
        let d = patched(
            DEPLOYMENT,
            deployment(),
            json!({"metadata": {"finalizers": ["b", "a"]}}),
        );
        assert_eq!(d["metadata"]["finalizers"], json!(["a", "b"]));
        let d = patched(
            DEPLOYMENT,
            deployment(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(d["metadata"]["finalizers"], json!([]));
    }

    #[test]
    fn an_element_without_its_merge_key_is_refused_and_nothing_changes() {
        let mut d = deployment();
        let e = apply(
            schemas(),
            DEPLOYMENT,
            &mut d,
            &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
        )
        .unwrap_err();
        assert!(
            e.0.contains("does not contain declared merge key: name"),
            "{e}"
        );
        assert_eq!(d, deployment());
        assert!(
            apply(
                schemas(),
                DEPLOYMENT,
                &mut d,
                &json!({"spec": {"$patch": "explode"}})
            )
            .is_err()
        );
        assert!(apply(schemas(), DEPLOYMENT, &mut d, &json!([1])).is_err());
        assert_eq!(d, deployment());
    }

    #[test]
    fn what_kubectl_set_image_rollout_restart_and_cordon_send() {
        let d = patched(
            DEPLOYMENT,
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox:2"}]}}}}),
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][1]["image"],
            "busybox:2"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1"
        );
        let d = patched(
            DEPLOYMENT,
            d,
            json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-02T12:00:00Z"}}}}}),
        );
        assert_eq!(
            d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            "2026-12-02T12:00:00Z"
        );
        let n = patched(
            Some("io.k8s.api.core.v1.Node"),
            json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.0.0.0/24"}}),
            json!({"spec": {"unschedulable": true}}),
        );
        assert_eq!(
            n["spec"],
            json!({"podCIDR": "10.0.0.0/24", "unschedulable": true})
        );
    }
}
