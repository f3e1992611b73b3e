//! Field ownership and merging, as the API server does them (the
//! server-side apply docs and the strategic merge patch rules):
//!
//! - a field is named by its path, list items of the lists the API merges
//!   by key (`containers`, `env` and `volumes` by `name`, container `ports`
//!   by `containerPort`, Service `ports` by `port`, ...) by that key's value;
//!   other lists are atomic (one field);
//! - **apply** (`application/apply-patch+yaml`) merges the applied config
//!   into the object (keyed lists item by item), takes ownership of every
//!   field it sets, **removes the fields this manager applied before and no
//!   longer sends** (unless another manager owns them too), and, without
//!   `force`, answers 409 for a field another manager owns with another
//!   value;
//! - **updates** (merge/strategic patches, PUT, POST) never conflict: the
//!   fields they change become theirs alone, and a field they remove is
//!   nobody's (so a Lease released with a strategic patch of nulls can be
//!   applied by another replica at once);
//! - a strategic merge patch merges keyed lists by key (a JSON merge patch
//!   replaces lists); `null` deletes.
//!
//! Not modelled: `managedFields` in the object's metadata, `$patch`
//! directives, set-type lists (`finalizers` is atomic here), the
//! apply-vs-update split of one manager's entries (one entry per manager).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// One step of a field path: a map key, or a keyed list item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    /// An item of a keyed list: (merge key, the item's value of it).
    Item(String, String),
}

pub type Path = Vec<Seg>;

/// Who owns which field of one object: manager → its fields.
pub type Owners = BTreeMap<String, BTreeSet<Path>>;

/// The merge key of list `field` of a `plural` object, when the API
/// merges it by key.
pub fn merge_key(plural: &str, field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "hostAliases" => {
            if field == "hostAliases" {
                "ip"
            } else {
                "name"
            }
        }
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" if plural == "services" => "port",
        "ports" => "containerPort",
        "ownerReferences" => "uid",
        "conditions" => "type",
        _ => return None,
    })
}

fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The item key of each element of `list`, when every element has one.
fn item_keys(list: &[Value], key: &str) -> Option<Vec<String>> {
    list.iter().map(|i| i.get(key).and_then(key_text)).collect()
}

/// The fields a value sets (its leaves), below `prefix`.
fn fields_of(plural: &str, prefix: &Path, v: &Value, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = prefix.clone();
                p.push(Seg::Key(k.clone()));
                match (child, merge_key(plural, k)) {
                    (Value::Array(items), Some(key)) if item_keys(items, key).is_some() => {
                        for item in items {
                            let mut ip = p.clone();
                            let id = item.get(key).and_then(key_text).unwrap_or_default();
                            ip.push(Seg::Item(key.to_owned(), id));
                            fields_of(plural, &ip, item, out);
                        }
                        if items.is_empty() {
                            out.insert(p);
                        }
                    }
                    _ => fields_of(plural, &p, child, out),
                }
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The fields an object (or an applied config) sets that have owners:
/// everything but `apiVersion`, `kind`, `status` and the server's
/// metadata (labels, annotations, ownerReferences and finalizers are owned).
pub fn owned_fields(plural: &str, obj: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    let Some(m) = obj.as_object() else {
        return out;
    };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                let mut meta = Map::new();
                for sub in ["labels", "annotations", "ownerReferences", "finalizers"] {
                    if let Some(x) = v.get(sub) {
                        meta.insert(sub.to_owned(), x.clone());
                    }
                }
                if !meta.is_empty() {
                    fields_of(
                        plural,
                        &vec![Seg::Key("metadata".into())],
                        &Value::Object(meta),
                        &mut out,
                    );
                }
            }
            _ => fields_of(plural, &vec![Seg::Key(k.clone())], v, &mut out),
        }
    }
    out
}

/// The value at `path`, if any.
pub fn at<'a>(obj: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => cur.get(k)?,
            Seg::Item(key, id) => cur
                .as_array()?
                .iter()
                .find(|i| i.get(key).and_then(key_text).as_deref() == Some(id))?,
        };
    }
    Some(cur)
}

/// Removes the field at `path`; a keyed item goes when its key field goes,
/// a map or keyed item left empty by the removal goes too.
pub fn remove(obj: &mut Value, path: &[Seg]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    // The key field of a keyed item: the item itself goes.
    if let (Seg::Key(k), Some(Seg::Item(key, _))) = (last, parent_path.last())
        && k == key
    {
        remove(obj, parent_path);
        return;
    }
    let Some(parent) = at_mut(obj, parent_path) else {
        return;
    };
    match last {
        Seg::Key(k) => {
            if let Some(m) = parent.as_object_mut() {
                m.remove(k);
            }
        }
        Seg::Item(key, id) => {
            if let Some(items) = parent.as_array_mut() {
                items.retain(|i| i.get(key).and_then(key_text).as_deref() != Some(id));
            }
        }
    }
    let empty = match parent {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    // Top-level maps (metadata, spec) stay; emptied ones below them go.
    if empty && parent_path.len() > 1 {
        remove(obj, parent_path);
    }
}

fn at_mut<'a>(obj: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => cur.get_mut(k)?,
            Seg::Item(key, id) => cur
                .as_array_mut()?
                .iter_mut()
                .find(|i| i.get(key).and_then(key_text).as_deref() == Some(id))?,
        };
    }
    Some(cur)
}

/// Merges `patch` into `target`: maps key by key, keyed lists item by item
/// (when `keyed`: apply and strategic merge patches), other lists and
/// scalars replaced; a `null` deletes when `delete_nulls`.
pub fn merge(plural: &str, target: &mut Value, patch: &Value, keyed: bool, delete_nulls: bool) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() && delete_nulls {
                    t.remove(k);
                    continue;
                }
                let key = merge_key(plural, k).filter(|_| keyed);
                match (t.get_mut(k), v, key) {
                    (Some(Value::Array(cur)), Value::Array(items), Some(key))
                        if item_keys(cur, key).is_some() && item_keys(items, key).is_some() =>
                    {
                        for item in items {
                            let id = item.get(key).and_then(key_text);
                            match cur.iter_mut().find(|c| c.get(key).and_then(key_text) == id) {
                                Some(c) => merge(plural, c, item, keyed, delete_nulls),
                                None => cur.push(item.clone()),
                            }
                        }
                    }
                    (Some(existing), _, _) => merge(plural, existing, v, keyed, delete_nulls),
                    (None, _, _) => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// A field another manager owns with another value than `applied` gives.
pub struct Conflict {
    pub manager: String,
    pub field: String,
}

/// Describes a path as the API server does (`.spec.containers[name="x"].image`).
pub fn describe(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => format!(".{k}"),
            Seg::Item(k, v) => format!("[{k}={v:?}]"),
        })
        .collect()
}

/// Server-side apply of `applied` by `manager` onto `current` (None: the
/// object is new). Returns the new object, or the conflicts (without
/// `force`). `owners` is updated.
pub fn apply(
    plural: &str,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    owners: &mut Owners,
) -> Result<Value, Vec<Conflict>> {
    let fields = owned_fields(plural, applied);
    if let Some(current) = current {
        let conflicts: Vec<Conflict> = fields
            .iter()
            .flat_map(|f| {
                owners
                    .iter()
                    .filter(move |(m, owned)| m.as_str() != manager && owned.contains(f))
                    .filter(move |_| at(current, f) != at(applied, f))
                    .map(|(m, _)| Conflict {
                        manager: m.clone(),
                        field: describe(f),
                    })
            })
            .collect();
        if !force && !conflicts.is_empty() {
            return Err(conflicts);
        }
    }
    let mut next = current
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    // The status is not the main resource's: apply leaves it.
    let mut config = applied.clone();
    if let Some(m) = config.as_object_mut() {
        m.remove("status");
    }
    merge(plural, &mut next, &config, true, false);
    // Fields this manager applied before and dropped now, no one else owns.
    let before = owners.remove(manager).unwrap_or_default();
    for dropped in before.difference(&fields) {
        let shared = owners.values().any(|o| o.contains(dropped));
        let reused = fields.iter().any(|f| f.starts_with(dropped));
        if !shared && !reused {
            remove(&mut next, dropped);
        }
    }
    // Forced: a field whose value this manager changed is no one else's
    // (one set to the same value stays shared).
    for owned in owners.values_mut() {
        owned.retain(|f| !fields.contains(f) || current.is_none_or(|c| at(c, f) == at(applied, f)));
    }
    owners.insert(manager.to_owned(), fields);
    owners.retain(|_, o| !o.is_empty());
    Ok(next)
}

/// An update (patch, PUT, create) by `manager` changed `before` into
/// `after`: the fields it changed or added are its alone, the fields gone
/// are nobody's.
pub fn record_update(
    plural: &str,
    before: Option<&Value>,
    after: &Value,
    manager: &str,
    owners: &mut Owners,
) {
    let now = owned_fields(plural, after);
    let changed: BTreeSet<Path> = now
        .iter()
        .filter(|f| before.is_none_or(|b| at(b, f) != at(after, f)))
        .cloned()
        .collect();
    for (m, owned) in owners.iter_mut() {
        owned.retain(|f| now.contains(f) && (m == manager || !changed.contains(f)));
    }
    owners
        .entry(manager.to_owned())
        .or_default()
        .extend(changed);
    owners.retain(|_, o| !o.is_empty());
}
