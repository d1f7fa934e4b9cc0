//! Server-side apply's field ownership (`application/apply-patch+yaml`), as kube-apiserver's
//! structured-merge-diff has it: each manager owns a set of fields, written in
//! `metadata.managedFields[].fieldsV1` (`f:` a field, `k:{...}` a list element by its key,
//! `v:` an element of a set, `.` the node itself). An apply sets the fields the manager's
//! configuration names, removes the fields it named last time and no longer does (unless
//! another manager owns them too), and refuses a field another manager owns with a
//! different value (a conflict) unless forced, which moves the field to the applier. Updates
//! (every other write) give their writer the fields they changed, taken from the others.
//!
//! Which list is keyed by what comes from the same tables as strategic merge patch
//! ([`super::strategic::PATCH_META`], [`super::strategic::LIST_MAP_KEYS`]): containers and
//! env by `name`, a container's ports by `containerPort` and `protocol` (TCP when left out),
//! finalizers as a set; other lists are atomic (owned whole). Pure functions
//! of data.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::schema::Schemas;
use super::strategic::{At, Keys, key_default};

/// One step of a field path, in fieldsV1's spelling (`f:spec`, `k:{"name":"web"}`, `v:"x"`).
pub type Step = String;
/// A field path from the object's root.
pub type Path = Vec<Step>;

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(pub BTreeSet<Path>);

/// The fields an object names: every field it sets, with the fields the store and the
/// identity own left out (`apiVersion`, `kind`, `status`, and `metadata`'s name, namespace
/// and system fields).
pub fn fields_of(schemas: &Schemas, root: Option<&str>, obj: &Value) -> FieldSet {
    let mut out = BTreeSet::new();
    let Value::Object(m) = obj else {
        return FieldSet(out);
    };
    let at = At::root(schemas, root, true);
    let mut top = m.clone();
    for k in ["apiVersion", "kind", "status"] {
        top.remove(k);
    }
    if let Some(Value::Object(meta)) = top.get_mut("metadata") {
        for k in SYSTEM_METADATA {
            meta.remove(*k);
        }
        if meta.is_empty() {
            top.remove("metadata");
        }
    }
    walk_map(&top, at, &mut Vec::new(), &mut out);
    FieldSet(out)
}

/// What of `metadata` is not a user's to own.
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

fn walk_map(m: &Map<String, Value>, at: At, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    for (k, v) in m {
        let f = at.field(k);
        prefix.push(format!("f:{k}"));
        match v {
            Value::Object(child) => {
                // A map of the user's keys (labels, data, limits) is owned itself, as its
                // entries are; a struct only through its fields, unless it is empty.
                if f.map || child.is_empty() {
                    out.insert(prefix.clone());
                }
                walk_map(child, at.to(f.of), prefix, out);
            }
            Value::Array(items) if f.merges() => {
                for e in items {
                    let (step, fields) = match (f.key, e) {
                        (Keys::Set, e) => (value_step(e), None),
                        (key, Value::Object(em)) => match key.id(em) {
                            Ok(id) => (format!("k:{}", Value::Object(id)), Some(em)),
                            Err(_) => continue,
                        },
                        (_, e) => (value_step(e), None),
                    };
                    prefix.push(step);
                    out.insert(prefix.clone());
                    if let Some(em) = fields {
                        walk_map(em, at.to(f.of), prefix, out);
                    }
                    prefix.pop();
                }
            }
            // Atomic lists and plain values are owned whole.
            _ => {
                out.insert(prefix.clone());
            }
        }
        prefix.pop();
    }
}

fn value_step(v: &Value) -> Step {
    format!("v:{v}")
}

impl FieldSet {
    /// The paths that carry a value of their own (no path of the set below them): what a
    /// conflict compares.
    pub fn leaves(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().filter(|p| {
            !self
                .0
                .range::<Path, _>((std::ops::Bound::Excluded(*p), std::ops::Bound::Unbounded))
                .next()
                .is_some_and(|q| q.starts_with(p))
        })
    }

    /// The set in `metadata.managedFields[].fieldsV1`'s shape.
    pub fn to_v1(&self) -> Value {
        let mut root = Map::new();
        for p in &self.0 {
            let mut node = &mut root;
            for s in p {
                node = node
                    .entry(s.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .expect("made as objects");
            }
        }
        // A path of the set that also has paths below it is marked with `.`.
        fn mark(v: &mut Map<String, Value>, owned: &BTreeSet<Path>, at: &mut Path) {
            for (k, child) in v.iter_mut() {
                if k == "." {
                    continue;
                }
                at.push(k.clone());
                let c = child.as_object_mut().expect("made as objects");
                if !c.is_empty() && owned.contains(at) {
                    c.insert(".".into(), Value::Object(Map::new()));
                }
                mark(c, owned, at);
                at.pop();
            }
        }
        mark(&mut root, &self.0, &mut Vec::new());
        Value::Object(root)
    }

    /// The set a `fieldsV1` value writes (anything else is an empty set).
    pub fn from_v1(v: &Value) -> FieldSet {
        fn walk(m: &Map<String, Value>, at: &mut Path, out: &mut BTreeSet<Path>) {
            for (k, child) in m {
                if k == "." {
                    out.insert(at.clone());
                    continue;
                }
                at.push(k.clone());
                match child.as_object() {
                    Some(c) if !c.is_empty() => walk(c, at, out),
                    _ => {
                        out.insert(at.clone());
                    }
                }
                at.pop();
            }
        }
        let mut out = BTreeSet::new();
        if let Some(m) = v.as_object() {
            walk(m, &mut Vec::new(), &mut out);
        }
        FieldSet(out)
    }

    fn remove_under(&mut self, p: &Path) {
        self.0.retain(|q| !q.starts_with(p));
    }

    fn owns_under(&self, p: &Path) -> bool {
        self.0.iter().any(|q| q.starts_with(p))
    }
}

/// The value at a path of `obj`, if it has one.
pub fn get<'a>(obj: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut v = obj;
    for s in path {
        v = step_into(v, s)?;
    }
    Some(v)
}

fn step_into<'a>(v: &'a Value, s: &str) -> Option<&'a Value> {
    if let Some(f) = s.strip_prefix("f:") {
        return v.get(f);
    }
    let items = v.as_array()?;
    if let Some(k) = s.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(k).ok()?;
        // A key field the element leaves out is at its default (`protocol`: TCP).
        return items.iter().find(|e| {
            want.iter()
                .all(|(k, x)| e.get(k).cloned().or_else(|| key_default(k)).as_ref() == Some(x))
        });
    }
    let want: Value = serde_json::from_str(s.strip_prefix("v:")?).ok()?;
    items.iter().find(|e| **e == want)
}

/// Removes the field at `path` from `obj` (nothing when it is not there).
pub fn remove(obj: &mut Value, path: &[Step]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut v = obj;
    for s in parent {
        let next = match step_index(v, s) {
            Some(Ix::Key(k)) => v.get_mut(&k),
            Some(Ix::At(i)) => v.get_mut(i),
            None => None,
        };
        let Some(n) = next else { return };
        v = n;
    }
    match step_index(v, last) {
        Some(Ix::Key(k)) => {
            if let Some(m) = v.as_object_mut() {
                m.remove(&k);
            }
        }
        Some(Ix::At(i)) => {
            if let Some(a) = v.as_array_mut() {
                a.remove(i);
            }
        }
        None => {}
    }
}

enum Ix {
    Key(String),
    At(usize),
}

fn step_index(v: &Value, s: &str) -> Option<Ix> {
    if let Some(f) = s.strip_prefix("f:") {
        return Some(Ix::Key(f.to_string()));
    }
    let target = step_into(v, s)?;
    v.as_array()?
        .iter()
        .position(|e| std::ptr::eq(e, target))
        .map(Ix::At)
}

/// A path as kube-apiserver prints it in a conflict: `.spec.containers[name="web"].image`.
pub fn display(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = step.strip_prefix("k:") {
            let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let keys: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", keys.join(",")));
        } else if let Some(v) = step.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    pub fn from_json(v: &Value) -> Entry {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        Entry {
            manager: s("manager"),
            operation: s("operation"),
            api_version: s("apiVersion"),
            time: s("time"),
            subresource: v["subresource"].as_str().map(String::from),
            fields: FieldSet::from_v1(&v["fieldsV1"]),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), self.manager.clone().into());
        m.insert("operation".into(), self.operation.clone().into());
        m.insert("apiVersion".into(), self.api_version.clone().into());
        m.insert("time".into(), self.time.clone().into());
        // Always there, `{}` when empty: kubectl reads every entry's fieldsV1 (a missing one
        // crashes its apply).
        m.insert("fieldsType".into(), "FieldsV1".into());
        m.insert("fieldsV1".into(), self.fields.to_v1());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), s.clone().into());
        }
        Value::Object(m)
    }

    fn is(&self, manager: &str, operation: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.is_none()
    }
}

/// The entries of an object's `metadata.managedFields`.
pub fn entries_of(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Entry::from_json)
        .collect()
}

/// The entries of `obj`, each `k:` step keyed as [`fields_of`] keys it now: entries written
/// before a list was keyed by all its list-map keys (ports by `containerPort` alone) are
/// re-keyed from the element they name in `obj`, so an upgraded agent's apply sees them as
/// the same fields rather than fields to remove.
fn current_entries(schemas: &Schemas, root: Option<&str>, obj: &Value) -> Vec<Entry> {
    let mut entries = entries_of(obj);
    for e in &mut entries {
        let paths = std::mem::take(&mut e.fields.0);
        e.fields.0 = paths
            .into_iter()
            .map(|p| rekey(At::root(schemas, root, true), obj, p))
            .collect();
    }
    entries
}

fn rekey(mut at: At, obj: &Value, path: Path) -> Path {
    let mut v = Some(obj);
    let mut key = Keys::Set;
    let mut out = Vec::with_capacity(path.len());
    for step in path {
        if let Some(name) = step.strip_prefix("f:") {
            let f = at.field(name);
            at = at.to(f.of);
            key = f.key;
            v = v.and_then(|x| x.get(name));
            out.push(step);
            continue;
        }
        let elem = v.and_then(|x| step_into(x, &step));
        let step = match (key, elem) {
            (Keys::Many(_), Some(Value::Object(m))) if step.starts_with("k:") => match key.id(m) {
                Ok(id) => format!("k:{}", Value::Object(id)),
                Err(_) => step,
            },
            _ => step,
        };
        v = elem;
        out.push(step);
    }
    out
}

/// A field another manager owns with another value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: Path,
}

impl Conflict {
    /// kube-apiserver's words for it.
    pub fn message(&self) -> String {
        format!(
            "conflict with {:?} using {}",
            self.manager, self.api_version
        )
    }
}

/// Why an apply changed nothing.
#[derive(Debug)]
pub enum ApplyError {
    /// Fields other managers own with other values (and the apply was not forced).
    Conflicts(Vec<Conflict>),
    /// The configuration does not merge into the object (a list element without one of its
    /// keys), with the reason.
    Merge(super::strategic::PatchError),
}

impl ApplyError {
    /// The conflicts, if that is why.
    pub fn conflicts(&self) -> &[Conflict] {
        match self {
            ApplyError::Conflicts(c) => c,
            ApplyError::Merge(_) => &[],
        }
    }
}

/// Who applies, and how.
pub struct Applier<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub now: &'a str,
    pub force: bool,
}

/// Applies `config` (the manager's whole intent for the object) to `live` (None: the object
/// is new), an object of the definition `root`; returns the object with its
/// `metadata.managedFields`, or why not (nothing changed).
pub fn apply(
    schemas: &Schemas,
    root: Option<&str>,
    live: Option<&Value>,
    config: &Value,
    who: &Applier,
) -> Result<Value, ApplyError> {
    let empty = Value::Object(Map::new());
    let live_v = live.unwrap_or(&empty);
    let mut entries = live
        .map(|l| current_entries(schemas, root, l))
        .unwrap_or_default();
    let wanted = fields_of(schemas, root, config);
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !e.is(who.manager, "Apply")) {
        for p in wanted.leaves() {
            if e.fields.0.contains(p) && get(live_v, p) != get(config, p) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    path: p.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !who.force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for c in &conflicts {
        for e in entries.iter_mut().filter(|e| e.manager == c.manager) {
            e.fields.remove_under(&c.path);
        }
    }
    // The configuration merged in, lists by their keys.
    let mut obj = live_v.clone();
    let mut patch = config.clone();
    if let Some(m) = patch.as_object_mut() {
        m.remove("status");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            meta.remove("managedFields");
            meta.remove("resourceVersion");
        }
    }
    super::strategic::apply_config(schemas, root, &mut obj, &patch).map_err(ApplyError::Merge)?;
    // What this manager applied last time and no longer names goes, unless another owns it.
    let before = entries
        .iter()
        .find(|e| e.is(who.manager, "Apply"))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut gone: Vec<&Path> = before
        .0
        .iter()
        .filter(|p| !wanted.0.iter().any(|q| q.starts_with(p)))
        .collect();
    // Shallowest first: an element no one else owns goes whole (its fields with it, found by
    // its key while it still has it); one that stays loses only the fields no one keeps.
    gone.sort_by_key(|p| p.len());
    for p in gone {
        let kept = entries
            .iter()
            .filter(|e| !e.is(who.manager, "Apply"))
            .any(|e| e.fields.owns_under(p));
        if !kept {
            remove(&mut obj, p);
        }
    }
    entries.retain(|e| !e.is(who.manager, "Apply"));
    // Another manager left with no field keeps its entry, emptied (see `updated`).
    entries.push(Entry {
        manager: who.manager.to_string(),
        operation: "Apply".into(),
        api_version: who.api_version.to_string(),
        time: who.now.to_string(),
        subresource: None,
        fields: wanted,
    });
    obj["metadata"]["managedFields"] = Value::Array(entries.iter().map(Entry::to_json).collect());
    Ok(obj)
}

/// Who makes an update (any write but an apply), for [`updated`].
pub struct Updater<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub now: &'a str,
    /// The subresource written (`scale`, `status`), as Kubernetes records it.
    pub subresource: Option<&'a str>,
}

/// The fields an update by `who` changed, from `before` (None: created) to `after`: given to
/// the writer's `Update` entry (of its subresource) and taken from the others'. Fields
/// `after` no longer has leave every set. Returns the new `managedFields`.
pub fn updated(
    schemas: &Schemas,
    root: Option<&str>,
    before: Option<&Value>,
    after: &Value,
    who: &Updater,
) -> Vec<Value> {
    let is_writer = |e: &Entry| {
        e.manager == who.manager
            && e.operation == "Update"
            && e.subresource.as_deref() == who.subresource
    };
    let empty = Value::Object(Map::new());
    let before_v = before.unwrap_or(&empty);
    let mut entries = before
        .map(|b| current_entries(schemas, root, b))
        .unwrap_or_default();
    let now_set = fields_of(schemas, root, after);
    let changed: BTreeSet<Path> = now_set
        .leaves()
        .filter(|p| get(before_v, p) != get(after, p))
        .cloned()
        .collect();
    for e in entries.iter_mut() {
        let writer = is_writer(e);
        e.fields.0.retain(|p| {
            now_set.0.contains(p) && (writer || !changed.iter().any(|c| p.starts_with(c)))
        });
    }
    // The writer owns what it changed, with the nodes above it that the set marks.
    let mut mine: BTreeSet<Path> = changed.clone();
    for c in &changed {
        for n in 1..c.len() {
            let up = c[..n].to_vec();
            if now_set.0.contains(&up) {
                mine.insert(up);
            }
        }
    }
    match entries.iter_mut().find(|e| is_writer(e)) {
        Some(e) => {
            e.fields.0.extend(mine);
            e.time = who.now.to_string();
            e.api_version = who.api_version.to_string();
        }
        None if !mine.is_empty() || before.is_none() => entries.push(Entry {
            manager: who.manager.to_string(),
            operation: "Update".into(),
            api_version: who.api_version.to_string(),
            time: who.now.to_string(),
            subresource: who.subresource.map(str::to_string),
            fields: FieldSet(mine),
        }),
        None => {}
    }
    // A manager left with no field keeps its entry, emptied: the store merges entries by
    // manager, operation and subresource, so a dropped one would come back with its fields.
    entries.iter().map(Entry::to_json).collect()
}

#[cfg(test)]
#[path = "managed_tests.rs"]
mod tests;
